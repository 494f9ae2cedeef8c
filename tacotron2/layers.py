"""Building blocks of the Tacotron-2 model: initialisation, conv + batch-norm blocks, masks,
and the recurrent-matmul machinery that makes the teacher-forced decoder fast.

Why the recurrent matmul machinery exists: the decoder applies the same large LSTM weights
(~17 M parameters at NVIDIA's sizes) once per decoder step. With plain autograd every step
produces its own rank-B weight gradient (a full 4096 x 1024 matrix) and the engine adds the
hundreds of them together, which is memory-bandwidth bound and dominates a CPU training step.
:class:`StackedMatmuls` instead stashes each step's (input, output-gradient) pair and computes
every weight gradient at the end of the backward pass as ONE GEMM ``G^T @ X`` over all steps.
The forward math is an ordinary ``x @ W^T``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def xavier_uniform_(weight: Tensor, nonlinearity: str = "linear") -> Tensor:
    """NVIDIA/tacotron2's initialisation: Xavier-uniform with the gain of the following nonlinearity."""
    return nn.init.xavier_uniform_(weight, gain=nn.init.calculate_gain(nonlinearity))


def make_linear(in_dim: int, out_dim: int, bias: bool = True, nonlinearity: str = "linear") -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    xavier_uniform_(layer.weight, nonlinearity)
    return layer


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout``'s math (zero with probability ``p``, scale the rest by ``1 / (1 - p)``).

    On a CPU the keep mask comes from ``torch.rand`` compared with ``p``: ``bernoulli_``, which
    ``F.dropout`` draws with, measured ~3x slower per element there (a (16, 128, 285) post-net
    activation: 8.9 vs 2.8 ms, 2 threads, AMD EPYC), and the demo's post-net and pre-net
    dropouts alone cost ~6% of a training step. Elsewhere ``F.dropout``'s fused kernel is used.
    Either way, one random stream per device: the fast decoder and the reference loop draw
    identical masks from identical generator states.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    keep = (torch.rand_like(x, memory_format=torch.contiguous_format) >= p).to(x.dtype)
    return x * keep.mul_(1.0 / (1.0 - p))


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool mask, True on valid positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class ConvBNBlock(nn.Module):
    """Conv1d ("same" padding) + BatchNorm1d, then an optional activation and dropout.

    Input and output are ``(B, C, T)``. With a ``mask`` ``(B, 1, T)`` the input is zeroed on
    padded positions first, so a padded batch gives the same valid outputs as each utterance
    alone (where Conv1d's own zero padding plays that role).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 activation: str | None, dropout: float) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.norm = nn.BatchNorm1d(out_channels)
        self.activation = activation
        self.dropout = dropout
        xavier_uniform_(self.conv.weight, activation or "linear")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is not None:
            x = x * mask
        x = self.norm(self.conv(x))
        if self.activation == "relu":
            x = F.relu(x)
        elif self.activation == "tanh":
            x = torch.tanh(x)
        return dropout(x, self.dropout, self.training)


# --------------------------------------------------------------------------- recurrent matmuls

Block = tuple[Tensor, int, int]
"""Columns ``[start, stop)`` of a 2-D parameter: a row block of a stacked matrix."""


class WeightGradStash:
    """Collects the (input, output-gradient) pairs of one stacked matrix during the backward pass,
    and holds the transposed copy of the matrix that the per-step input gradients use."""

    __slots__ = ("inputs", "grads", "weight_t")

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.grads: list[Tensor] = []
        self.weight_t: Tensor | None = None


class _Stacks(torch.autograd.Function):
    """Forward: stacked matrices, each the row-wise concatenation of column blocks of parameters.
    Backward: every parameter's gradient from one GEMM per stacked matrix.

    The engine runs this node only after every :class:`_StepLinear` that used one of its outputs
    has run its backward (they are the outputs' only consumers), so the stashes are complete.
    Gradients of parameters whose blocks tile all their columns are assembled by concatenation,
    so slicing a parameter never costs a full-size zero tensor per use.
    """

    @staticmethod
    def forward(ctx, layout: list[list[tuple[int, int, int]]], stashes: list[WeightGradStash],
                *params: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.layout, ctx.stashes = layout, stashes
        ctx.shapes = [p.shape for p in params]
        ctx.set_materialize_grads(False)
        return tuple(torch.cat([params[i][:, a:b] for i, a, b in stack], 0) for stack in layout)

    @staticmethod
    def backward(ctx, *grads: Tensor | None):  # type: ignore[override]
        pieces: dict[int, list[tuple[int, Tensor]]] = {}
        for stack, stash, grad in zip(ctx.layout, ctx.stashes, grads):
            total = grad
            if stash.grads:
                # (out, N) @ (N, in), N = steps * batch: one well-shaped GEMM instead of
                # N / batch rank-batch updates summed one by one.
                total = torch.mm(torch.cat(stash.grads, 0).t(), torch.cat(stash.inputs, 0))
                if grad is not None:
                    total += grad
            stash.inputs.clear()
            stash.grads.clear()
            stash.weight_t = None
            if total is None:
                continue
            rows = total.split([b for b in (ctx.shapes[i][0] for i, _, _ in stack)], 0)
            for (i, a, _), g in zip(stack, rows):
                pieces.setdefault(i, []).append((a, g))
        out: list[Tensor | None] = [None] * len(ctx.shapes)
        for i, parts in pieces.items():
            parts.sort(key=lambda part: part[0])
            starts = [a for a, _ in parts]
            ends = [a + g.shape[1] for a, g in parts]
            if starts[0] == 0 and ends[-1] == ctx.shapes[i][1] and starts[1:] == ends[:-1]:
                out[i] = torch.cat([g for _, g in parts], 1) if len(parts) > 1 else parts[0][1]
            else:
                full = parts[0][1].new_zeros(ctx.shapes[i])
                for (a, g), b in zip(parts, ends):
                    full[:, a:b] += g
                out[i] = full
        return (None, None, *out)


class _StepLinear(torch.autograd.Function):
    """``x @ W^T`` whose weight gradient is deferred to the :class:`_Stacks` node that made ``W``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stash: WeightGradStash) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.stash = stash
        return _mm_t(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stash: WeightGradStash = ctx.stash
        stash.inputs.append(x)
        stash.grads.append(grad)
        if stash.weight_t is None:
            # grad @ W as (W^T @ grad^T)^T with a contiguous W^T: the fast small-batch layout again.
            stash.weight_t = weight.t().contiguous()
        return _mm_t(grad, stash.weight_t), None, None


def _mm_t(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight^T`` for a small batch ``x`` (B, in).

    Computed as ``(weight @ x^T)^T`` with a row-major ``x``: with MKL on CPU this layout takes a
    matrix-vector-like kernel for small B, which measured 2-3x faster than ``x @ weight.t()``
    for B = 2..8. The result is made row-major so that the next step's inputs are too (and
    dropout masks are drawn in the same order as for an ``nn.LSTMCell`` output).
    """
    return torch.mm(weight, x.contiguous().t()).t().contiguous()


class StackedMatmuls:
    """Stacked matrices applied to per-step inputs inside a recurrence: ``self(i, x)`` is
    ``x @ stack_i^T`` where ``stack_i`` is the row-wise concatenation of ``stacks[i]``'s blocks.

    Stacking every matrix that multiplies the same vector reads that vector once and launches one
    matmul instead of several. Create one per forward pass: the stacks are rebuilt from the
    parameters each time. Under autograd the parameter gradients are deferred and computed with
    one GEMM per stack at the end of the backward pass (see the module docstring).
    """

    def __init__(self, stacks: Sequence[Sequence[Block]], batch_size: int,
                 cache: dict | None = None, transposed: bool = False) -> None:
        params: list[Tensor] = []
        layout: list[list[tuple[int, int, int]]] = []
        for stack in stacks:
            entry = []
            for p, a, b in stack:
                index = next((k for k, q in enumerate(params) if q is p), None)
                if index is None:
                    index = len(params)
                    params.append(p)
                entry.append((index, a, b))
            layout.append(entry)
        self.track = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        # One input row at a time (single-utterance synthesis): MKL streams a contiguous W^T
        # (in, out) ~2x faster than W for a vector-matrix product, measured on an AMD EPYC.
        # ``transposed`` asks for that layout at any batch size (the compiled synthesis step's).
        self.transposed = not self.track and (batch_size == 1 or transposed)
        if self.track:
            self.stashes = [WeightGradStash() for _ in layout]
            self.weights = _Stacks.apply(layout, self.stashes, *params)
        elif self.transposed:
            # Transposing ~70 MB of weights costs more than a few hundred synthesis steps gain, so
            # the result is kept in ``cache`` until a parameter changes (in-place updates bump
            # ``_version``; moving the model changes ``data_ptr``).
            key = (repr(layout), *((id(p), p._version, p.data_ptr(), p.device) for p in params))
            if cache is not None and cache.get("key") == key:
                self.weights = cache["weights"]
            else:
                # Row-stack, then one transposing copy: 2x faster than stacking transposed views.
                self.weights = tuple(torch.cat([params[i][:, a:b] for i, a, b in stack], 0).t().contiguous()
                                     for stack in layout)
                if cache is not None:
                    cache.clear()
                    cache.update(key=key, weights=self.weights)
        else:
            self.weights = tuple(torch.cat([params[i][:, a:b] for i, a, b in stack], 0) for stack in layout)

    def __call__(self, index: int, x: Tensor) -> Tensor:
        if self.track:
            return _StepLinear.apply(x, self.weights[index], self.stashes[index])
        if self.transposed:
            return torch.mm(x, self.weights[index])
        return _mm_t(x, self.weights[index])


def full(p: Tensor) -> Block:
    """All columns of ``p`` as one block."""
    return p, 0, p.shape[1]


def lstm_cell_pointwise(gates: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """The nonlinear half of ``nn.LSTMCell`` given the summed pre-activations ``gates`` (B, 4H).

    Gate order (input, forget, cell, output) is PyTorch's, so ``nn.LSTMCell`` weights apply as is.
    """
    h = gates.shape[1] // 4
    # One sigmoid over all four blocks (the cell block's is unused) instead of three calls: at
    # the demo's sizes each call costs more than the arithmetic it does.
    sig = torch.sigmoid(gates)
    cell = sig[:, h:2 * h] * cell + sig[:, :h] * torch.tanh(gates[:, 2 * h:3 * h])
    return sig[:, 3 * h:] * torch.tanh(cell), cell


def symbol_embedding_bound(n_symbols: int, dim: int) -> float:
    """NVIDIA's uniform init bound for the symbol embedding: sqrt(3) * sqrt(2 / (n_symbols + dim))."""
    return math.sqrt(3.0) * math.sqrt(2.0 / (n_symbols + dim))
