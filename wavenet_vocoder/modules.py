"""Building blocks of the WaveNet vocoder: weight-normalised convolutions and the gated residual layer."""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run PyTorch CPU operators single-threaded for the duration (restored afterwards).

    Step-by-step generation issues thousands of tiny operators per second; with several
    intra-op threads each one ends in a barrier, and on a loaded machine a barrier waiting for a
    descheduled thread costs milliseconds (measured on 2 busy cores: 2.6 samples/s with 2
    threads, 74 with 1). Threads started inside inherit the setting.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def conv1d(in_channels: int, out_channels: int, kernel_size: int, *, dilation: int = 1, bias: bool = True,
           dropout: float = 0.0, std_mul: float = 1.0, use_weight_norm: bool = True) -> nn.Conv1d:
    """A Conv1d without padding, initialised for a ReLU/gated network under dropout.

    The weights start at N(0, std_mul * (1 - dropout) / (kernel_size * in_channels)) so the
    activation variance is kept through the stack (Gehring et al. 2017's rule for weight-normalised
    convolutions); biases start at zero.
    """
    conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
    std = math.sqrt(std_mul * (1.0 - dropout) / (kernel_size * in_channels))
    nn.init.normal_(conv.weight, mean=0.0, std=std)
    if bias:
        nn.init.zeros_(conv.bias)
    return weight_norm(conv) if use_weight_norm else conv


def remove_weight_norm_(module: nn.Module) -> None:
    """Fold every weight-norm parametrisation under ``module`` into a plain weight, in place."""
    for m in module.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


class ResidualConv1dGLU(nn.Module):
    """One WaveNet layer: dilated causal conv, gated activation, residual and skip 1x1 convs.

    ``tanh(a + c_a + g_a) * sigmoid(b + c_b + g_b)`` where (a, b) are the two halves of the
    dilated convolution's ``gate_channels`` outputs and c, g the local / global conditioning
    projections. The residual output is ``(x + out) * sqrt(0.5)``, which keeps its variance
    from growing with depth.
    """

    def __init__(self, residual_channels: int, gate_channels: int, skip_out_channels: int, kernel_size: int,
                 dilation: int, dropout: float, cin_channels: int = 0, gin_channels: int = 0,
                 use_weight_norm: bool = True) -> None:
        super().__init__()
        if gate_channels % 2 != 0:
            raise ValueError(f"gate_channels must be even (tanh and sigmoid halves), got {gate_channels}")
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.dropout = dropout
        self.conv = conv1d(residual_channels, gate_channels, kernel_size, dilation=dilation, dropout=dropout,
                           std_mul=4.0, use_weight_norm=use_weight_norm)
        self.conv1x1c = (conv1d(cin_channels, gate_channels, 1, bias=False, use_weight_norm=use_weight_norm)
                         if cin_channels > 0 else None)
        self.conv1x1g = (conv1d(gin_channels, gate_channels, 1, bias=False, use_weight_norm=use_weight_norm)
                         if gin_channels > 0 else None)
        half = gate_channels // 2
        self.conv1x1_out = conv1d(half, residual_channels, 1, use_weight_norm=use_weight_norm)
        self.conv1x1_skip = conv1d(half, skip_out_channels, 1, use_weight_norm=use_weight_norm)

    @property
    def receptive_span(self) -> int:
        """Past inputs (plus the current one) the dilated conv reads: (k - 1) * dilation + 1."""
        return (self.kernel_size - 1) * self.dilation + 1

    def _gate(self, y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = y.chunk(2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        out = (x + self.conv1x1_out(z)) * math.sqrt(0.5)
        return out, self.conv1x1_skip(z)

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None,
                g: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel (training) pass.

        Args:
            x: (B, residual_channels, T).
            c: (B, cin_channels, T) upsampled local conditioning, or None.
            g: (B, gin_channels, 1) speaker embedding, or None.
        Returns:
            residual output (B, residual_channels, T) and skip output (B, skip_out_channels, T).
        """
        h = F.dropout(x, p=self.dropout, training=self.training)
        h = F.pad(h, ((self.kernel_size - 1) * self.dilation, 0))
        y = self.conv(h)
        if c is not None:
            y = y + self.conv1x1c(c)
        if g is not None:
            y = y + self.conv1x1g(g)
        return self._gate(y, x)

    def incremental_step(self, buffer: torch.Tensor, cond: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One generation step from the layer's input history (eval mode, no dropout).

        The dilated kernel sees every ``dilation``-th entry of the history, so the step is one
        matrix product over those k taps.

        Args:
            buffer: (B, residual_channels, receptive_span) the last inputs, newest last.
            cond: (B, gate_channels) sum of the conditioning projections for this step, or None.
        Returns:
            residual output (B, residual_channels) and skip output (B, skip_out_channels).
        """
        taps = buffer[:, :, ::self.dilation]                      # (B, R, k)
        w = self.conv.weight                                      # (G, R, k)
        y = F.linear(taps.reshape(taps.size(0), -1), w.reshape(w.size(0), -1), self.conv.bias)
        if cond is not None:
            y = y + cond
        a, b = y.chunk(2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        out = F.linear(z, self.conv1x1_out.weight[:, :, 0], self.conv1x1_out.bias)
        return (buffer[:, :, -1] + out) * math.sqrt(0.5), F.linear(z, self.conv1x1_skip.weight[:, :, 0],
                                                                    self.conv1x1_skip.bias)
