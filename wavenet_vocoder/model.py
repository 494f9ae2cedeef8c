"""The WaveNet vocoder (van den Oord et al. 2016; Shen et al. 2018's mixture-of-logistics variant).

Input convention (shared by training and generation): output position ``t`` is the
distribution of the sample that *follows* input position ``t``. To train, feed the waveform
shifted right by one sample (the initial silence of :meth:`WaveNet.initial_input` first) and
score the output against the unshifted waveform; generation feeds each drawn sample back the
same way. The conditioning vector of position ``t`` belongs to the sample being predicted.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from tacowave.audio import mulaw_quantize
from tacowave.hparams import WaveNetConfig
from wavenet_vocoder.mixture import DISTRIBUTIONS, StepNoise, decode_mulaw, output_channels, sample_from_noise
from wavenet_vocoder.modules import ResidualConv1dGLU, conv1d, remove_weight_norm_, single_torch_thread
from wavenet_vocoder.upsample import ConditioningUpsampler


def receptive_field_size(total_layers: int, num_cycles: int, kernel_size: int,
                         dilation: Callable[[int], int] = lambda x: 2 ** x) -> int:
    """Samples one output depends on: (kernel_size - 1) * sum of dilations + 1.

    Layer ``i`` has dilation ``dilation(i % (total_layers // num_cycles))``; e.g. 30 layers in
    3 cycles with kernel 3 see 6139 samples (Parallel WaveNet, Table 4).
    """
    if total_layers % num_cycles != 0:
        raise ValueError(f"total_layers ({total_layers}) must be a multiple of num_cycles ({num_cycles})")
    per_cycle = total_layers // num_cycles
    return (kernel_size - 1) * sum(dilation(i % per_cycle) for i in range(total_layers)) + 1


class WaveNet(nn.Module):
    """Dilated causal convolution stacks with gated activations, residual and skip connections.

    Args:
        cfg: sizes, conditioning and output distribution (``tacowave.hparams.WaveNetConfig``).
        n_speakers: size of the speaker table for global conditioning (used when
            ``cfg.gin_channels > 0``).
    """

    def __init__(self, cfg: WaveNetConfig, n_speakers: int = 1) -> None:
        super().__init__()
        if cfg.output_distribution not in DISTRIBUTIONS:
            raise ValueError(f"output_distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                             f"got {cfg.output_distribution!r}")
        if cfg.layers % cfg.stacks != 0:
            raise ValueError(f"layers ({cfg.layers}) must be a multiple of stacks ({cfg.stacks})")
        if cfg.gin_channels > 0 and n_speakers < 1:
            raise ValueError(f"global conditioning needs n_speakers >= 1, got {n_speakers}")
        self.cfg = dataclasses.replace(cfg, upsample_scales=list(cfg.upsample_scales))
        self.n_speakers = n_speakers
        self.out_channels = output_channels(cfg)
        self.in_channels = cfg.mulaw_channels if cfg.output_distribution == "mulaw" else 1
        wn = cfg.weight_normalization

        self.first_conv = conv1d(self.in_channels, cfg.residual_channels, 1, use_weight_norm=wn)
        per_stack = cfg.layers // cfg.stacks
        self.conv_layers = nn.ModuleList(
            ResidualConv1dGLU(cfg.residual_channels, cfg.gate_channels, cfg.skip_out_channels, cfg.kernel_size,
                              dilation=2 ** (i % per_stack), dropout=cfg.dropout, cin_channels=cfg.cin_channels,
                              gin_channels=cfg.gin_channels, use_weight_norm=wn)
            for i in range(cfg.layers))
        self.last_conv_layers = nn.ModuleList([
            nn.ReLU(),
            conv1d(cfg.skip_out_channels, cfg.skip_out_channels, 1, use_weight_norm=wn),
            nn.ReLU(),
            conv1d(cfg.skip_out_channels, self.out_channels, 1, use_weight_norm=wn),
        ])
        if cfg.gin_channels > 0:
            self.embed_speakers = nn.Embedding(n_speakers, cfg.gin_channels)
            # Small, so that a fresh speaker table shifts the gates only slightly.
            nn.init.normal_(self.embed_speakers.weight, std=0.1)
        else:
            self.embed_speakers = None
        self.upsample_net = (ConditioningUpsampler(cfg.cin_channels, cfg.upsample_scales, cfg.upsample_mode,
                                                   cfg.cin_pad) if cfg.cin_channels > 0 else None)

    # ------------------------------------------------------------------ properties

    @property
    def hop_size(self) -> int:
        """Samples per conditioning frame (1 without local conditioning)."""
        return self.upsample_net.hop_size if self.upsample_net is not None else 1

    @property
    def receptive_field(self) -> int:
        return receptive_field_size(self.cfg.layers, self.cfg.stacks, self.cfg.kernel_size)

    @property
    def local_conditioning(self) -> bool:
        return self.upsample_net is not None

    @property
    def global_conditioning(self) -> bool:
        return self.embed_speakers is not None

    # ------------------------------------------------------------------ helpers

    def initial_input(self, batch_size: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """The input that precedes the first sample: silence, (B, in_channels, 1)."""
        if self.cfg.output_distribution == "mulaw":
            cls = torch.full((batch_size,), int(mulaw_quantize(0.0, self.in_channels)), device=device)
            return F.one_hot(cls, self.in_channels).float().unsqueeze(-1)
        return torch.zeros(batch_size, 1, 1, device=device)

    def upsample(self, c: torch.Tensor) -> torch.Tensor:
        """(B, cin_channels, frames + 2 * cin_pad) mel -> (B, cin_channels, frames * hop_size)."""
        if self.upsample_net is None:
            raise ValueError("this WaveNet has no local conditioning (cin_channels = 0)")
        return self.upsample_net(c)

    def speaker_embedding(self, g: torch.Tensor) -> torch.Tensor:
        """Speaker ids (B,) or (B, 1) -> (B, gin_channels, 1)."""
        if self.embed_speakers is None:
            raise ValueError("this WaveNet has no global conditioning (gin_channels = 0)")
        g = g.reshape(-1).long()
        if g.numel() and (int(g.min()) < 0 or int(g.max()) >= self.n_speakers):
            raise ValueError(f"speaker ids must be in [0, {self.n_speakers}), got {g.tolist()}")
        return self.embed_speakers(g).unsqueeze(-1)

    def check_conditioning(self, c: Optional[torch.Tensor], g: Optional[torch.Tensor]) -> None:
        """Raise a clear error when ``c`` / ``g`` do not match the model's conditioning."""
        if self.local_conditioning and c is None:
            raise ValueError(f"this WaveNet is conditioned on {self.cfg.cin_channels}-channel mels: pass c")
        if not self.local_conditioning and c is not None:
            raise ValueError("this WaveNet has no local conditioning (cin_channels = 0) but c was given")
        if self.global_conditioning and g is None:
            raise ValueError("this WaveNet is conditioned on speakers: pass g (speaker ids)")
        if not self.global_conditioning and g is not None:
            raise ValueError("this WaveNet has no global conditioning (gin_channels = 0) but g was given")

    def remove_weight_norm(self) -> None:
        """Fold weight normalisation into plain weights (same outputs, faster inference)."""
        remove_weight_norm_(self)

    # ------------------------------------------------------------------ parallel forward

    def forward(self, x: torch.Tensor, c: Optional[torch.Tensor] = None,
                g: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Teacher-forced pass over a whole sequence.

        Args:
            x: (B, 1, T) waveform in [-1, 1] (mol, gaussian) or (B, mulaw_channels, T) one-hot
                mu-law classes (mulaw), shifted right by one sample (see the module docstring).
            c: (B, cin_channels, T / hop_size + 2 * cin_pad) mel frames, channels first.
            g: (B,) speaker ids.
        Returns:
            (B, out_channels, T) distribution parameters: mol 3K (logits, means, log scales),
            gaussian 2 (mean, log std), mulaw C logits.
        """
        self.check_conditioning(c, g)
        if x.dim() != 3 or x.size(1) != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, T), got shape {tuple(x.shape)}")
        t = x.size(-1)
        if c is not None:
            c = self.upsample(c)
            if c.size(-1) != t:
                raise ValueError(f"conditioning upsamples to {c.size(-1)} samples but x has {t}: pass "
                                 f"T / hop_size + 2 * cin_pad = {t / self.hop_size + 2 * self.cfg.cin_pad:g} frames")
        g_emb = self.speaker_embedding(g) if g is not None else None

        h = self.first_conv(x)
        skips = 0
        for layer in self.conv_layers:
            h, s = layer(h, c, g_emb)
            skips = skips + s
        return self._output(skips)

    def _output(self, skips: torch.Tensor) -> torch.Tensor:
        # Scaling the skip sum by sqrt(1 / layers) keeps its variance independent of depth.
        h = skips * math.sqrt(1.0 / len(self.conv_layers))
        for f in self.last_conv_layers:
            h = f(h)
        return h

    # ------------------------------------------------------------------ incremental (reference) generation

    def resolve_incremental_inputs(self, c: Optional[torch.Tensor], g: Optional[torch.Tensor], T: Optional[int],
                                   c_up: Optional[torch.Tensor], test_inputs: Optional[torch.Tensor],
                                   ) -> tuple[Optional[torch.Tensor], int, int]:
        """Check the arguments of an incremental run; returns (upsampled conditioning, steps, batch)."""
        self.check_conditioning(c if c is not None else c_up, g)
        if c is not None:
            c_up = self.upsample(c)
        lengths = [x.size(-1) for x in (c_up, test_inputs) if x is not None]
        if T is None:
            if not lengths:
                raise ValueError("pass T, c or test_inputs to set the number of steps")
            T = lengths[0]
        if any(n < T for n in lengths):
            raise ValueError(f"T={T} exceeds the conditioning / test input length {min(lengths)}")
        batch = next((x.size(0) for x in (c_up, test_inputs, g) if x is not None), 1)
        return c_up, int(T), batch

    def teacher_forced_values(self, test_inputs: torch.Tensor, T: int) -> torch.Tensor:
        """(B, in_channels, >= T) parallel-forward inputs -> (B, T) float values the generators
        feed back: mu-law class indices for one-hot inputs, else the samples themselves."""
        values = test_inputs.argmax(1) if self.cfg.output_distribution == "mulaw" else test_inputs[:, 0]
        return values[:, :T].float()

    @torch.no_grad()
    def incremental_forward(self, c: Optional[torch.Tensor] = None, g: Optional[torch.Tensor] = None,
                            T: Optional[int] = None, *, c_up: Optional[torch.Tensor] = None,
                            test_inputs: Optional[torch.Tensor] = None, noise: Optional[StepNoise] = None,
                            seed: Optional[int] = None, temperature: float = 1.0,
                            tqdm: Optional[Callable[[Iterable[int]], Iterable[int]]] = None,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain PyTorch step-by-step generation: the reference the fast generator is tested against.

        Each layer keeps its last ``(kernel_size - 1) * dilation + 1`` inputs and applies its
        dilated kernel to them once per step. Dropout is ignored (call ``eval()`` for a forward that
        matches). Runs PyTorch single-threaded (see ``modules.single_torch_thread``).

        Args:
            c: (B, cin_channels, frames + 2 * cin_pad) mel frames, or
            c_up: (B, cin_channels, T) conditioning already upsampled (e.g. per utterance).
            g: (B,) speaker ids.
            T: steps; defaults to the conditioning or test_inputs length.
            test_inputs: (B, in_channels, T) teacher forcing: step t reads test_inputs[..., t]
                (the parallel forward's input) instead of the previous sample.
            noise: sampling noise; a fresh :class:`StepNoise` seeded with ``seed`` when None.
            temperature: scales the sampling noise (mulaw: divides the logits).
            tqdm: optional progress wrapper around ``range(T)``.
        Returns:
            samples (B, T) in [-1, 1] (mulaw classes decoded) and parameters (B, out_channels, T).
        """
        c_up, T, batch = self.resolve_incremental_inputs(c, g, T, c_up, test_inputs)
        if noise is None:
            noise = StepNoise(self.cfg, batch, seed)

        device = self.first_conv.bias.device
        g_emb = self.speaker_embedding(g) if g is not None else None
        is_mulaw = self.cfg.output_distribution == "mulaw"
        params = torch.empty(batch, self.out_channels, T, device=device)
        samples = torch.empty(batch, T, device=device)
        with parametrize.cached(), single_torch_thread():
            g_bias = [layer.conv1x1g(g_emb)[:, :, 0] if g_emb is not None else None for layer in self.conv_layers]
            buffers = [torch.zeros(batch, self.cfg.residual_channels, layer.receptive_span, device=device)
                       for layer in self.conv_layers]
            current = self.initial_input(batch, device)[:, :, 0]
            steps = range(T) if tqdm is None else tqdm(range(T))
            for t in steps:
                x_in = test_inputs[:, :, t] if test_inputs is not None else current
                h = F.linear(x_in, self.first_conv.weight[:, :, 0], self.first_conv.bias)
                skips = 0
                for i, layer in enumerate(self.conv_layers):
                    buffers[i] = torch.cat([buffers[i][:, :, 1:], h.unsqueeze(-1)], dim=2)
                    cond = g_bias[i]
                    if c_up is not None:
                        ct = F.linear(c_up[:, :, t], layer.conv1x1c.weight[:, :, 0])
                        cond = ct if cond is None else cond + ct
                    h, s = layer.incremental_step(buffers[i], cond)
                    skips = skips + s
                out = self._output(skips.unsqueeze(-1))
                params[:, :, t] = out[:, :, 0]
                step_noise = noise.get(t, t + 1).transpose(0, 1).to(device)
                x = sample_from_noise(self.cfg, out, step_noise, temperature)[:, 0]
                if is_mulaw:
                    current = F.one_hot(x, self.in_channels).float()
                    samples[:, t] = decode_mulaw(x, self.in_channels)
                else:
                    current = x.view(batch, 1)
                    samples[:, t] = x
        return samples, params


def build_wavenet(cfg: WaveNetConfig, n_speakers: int = 1) -> WaveNet:
    """The vocoder described by ``cfg``; ``n_speakers`` comes from the data dir's speaker list."""
    return WaveNet(cfg, n_speakers=n_speakers)
