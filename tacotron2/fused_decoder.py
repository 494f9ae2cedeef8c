"""The teacher-forced decoder recurrence as one autograd node with compiled step kernels (CPU).

At the demo's sizes (256-wide LSTMs, batch 16) a training step spent most of its decoder time
outside arithmetic: ~60 small operators per decoder step, each with its own dispatch, allocation
and autograd node, forward and backward. Here the matrix products stay in PyTorch (MKL, into
preallocated buffers) and everything between them runs as three C calls per step forward (the
attention-LSTM cell, the whole attention including the next step's location windows, the
decoder-LSTM cell) and four backward (the decoder cell, the attention, the fold of the window
gradients back onto the previous and cumulative weights, the attention cell), with the backward
written out by hand. The weights' gradients come from one GEMM each over all steps, as in the
autograd path (layers.py).

Same math and same random stream as :meth:`Decoder._forward_autograd` and
:func:`reference_decoder_forward` (the dropout masks of every step are drawn in one call, which
yields the same numbers as per-step draws: the CPU generator is a serial stream); the tests check
outputs and every gradient against the reference loop. The transcendental functions are
polynomial approximations (~1e-7 relative), so results agree to float rounding, not bit for bit.

The C source (``_fused_decoder_src.py``) is compiled on first use (tacowave/native.py); without a
C compiler :func:`load_library` returns None and the decoder keeps its autograd path. The
kernels' batch loops run on PyTorch's OpenMP threads where they can join them
(``compiled_kernels.joins_torch_openmp``), else single-threaded: on 2 cores a demo training step took
1.03-1.12x as long single-threaded (three runs, builds alternated batch by batch).
"""
from __future__ import annotations

import ctypes
import functools
from typing import Optional

import torch
from torch import Tensor

from tacotron2._fused_decoder_src import SOURCE
from tacotron2.compiled_kernels import build_kernels, fill_struct

_INTS = ("S", "B", "N", "E", "H", "D", "A", "K", "F1", "F2")
_POINTERS = ("memory", "v", "invalid", "dec_bias", "att_in", "mask_att", "mask_dec",
             "att_act", "att_c", "h_att", "dec_act", "dec_c", "h_dec", "win", "hid", "w", "wcum", "ctx",
             "y1T", "y2T", "y3T", "keys", "gates",
             "g_hdec", "g_ctx", "g_w", "dhdecT", "dctxT", "dhattT", "dwin", "dg_att", "dg_dec", "dy1", "dy2",
             "dz", "dc_att", "dc_dec", "dw_prev", "gcum", "dmem", "scratch", "ones", "pad", "dv")
_KERNELS = ("fd_att_cell_fwd", "fd_attention_fwd", "fd_dec_cell_fwd",
            "fd_dec_cell_bwd", "fd_attention_bwd", "fd_fold_bwd", "fd_att_cell_bwd")


class _FD(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in _INTS] + [(name, ctypes.c_void_p) for name in _POINTERS]


@functools.lru_cache(maxsize=None)
def load_library() -> Optional[ctypes.CDLL]:
    """The compiled step kernels (built and cached on first call), or None with one warning.
    ``TACOWAVE_FUSED_DECODER=0`` turns the fused path off without a warning."""
    lib = build_kernels(SOURCE, "fuseddecoder", "the Tacotron-2 decoder trains", _FD, "fd_struct_size")
    if lib is None:
        return None
    for name in _KERNELS:
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.POINTER(_FD), ctypes.c_int]
    return lib


def _work_rows(like: torch.Tensor, B: int, N: int, E: int, H: int, D: int, A: int, K: int) -> dict:
    """The kernels' work space, the same for both passes: one scratch row and one zero-padded
    window row per utterance (so the batch loop's threads never share one; the C side indexes
    them with the same strides) and the all-ones dropout multipliers."""
    return dict(scratch=like.new_empty(B, max(E, N, H, D, A)), pad=like.new_empty(B, 2 * (N + K)),
                ones=like.new_ones(max(H, D)))


class _FusedDecoderLoop(torch.autograd.Function):
    """Inputs: att_in (S, B, 4H) [pre-net part of the attention-LSTM pre-activation, biases in],
    memory (B, N, E), processed (B * N, A), kernel (2K, A), v (A,), dec_bias (4D,), w1 (4H + A + 4D, H)
    [att W_hh | query | dec W_ih h_att-part], w2 (4H + 4D, E) [att W_ih ctx-part | dec W_ih ctx-part],
    w3 (4D, D) [dec W_hh]; invalid (B, N) uint8 or None, dropout multipliers (S, B, H) and
    (S, B, D) or None. Outputs h_dec (S, B, D), contexts (S, B, E), alignments (S, B, N)."""

    @staticmethod
    def forward(ctx, att_in, memory, processed, kernel, v, dec_bias, w1, w2, w3,  # type: ignore[override]
                invalid, mask_att, mask_dec, lib):
        S, B, F_att = att_in.shape
        _, N, E = memory.shape
        H, D, A = F_att // 4, w3.shape[1], v.shape[0]
        K = kernel.shape[0] // 2
        F1, F2 = w1.shape[0], w2.shape[0]
        dims = dict(S=S, B=B, N=N, E=E, H=H, D=D, A=A, K=K, F1=F1, F2=F2)
        new, zeros = att_in.new_empty, att_in.new_zeros
        h_dec, contexts, w = new(S, B, D), new(S, B, E), new(S, B, N)
        bufs = dict(memory=memory, v=v, invalid=invalid, dec_bias=dec_bias, att_in=att_in,
                    mask_att=mask_att, mask_dec=mask_dec,
                    att_act=new(S, B, 4 * H), att_c=zeros(S + 1, B, H), h_att=new(S, B, H),
                    dec_act=new(S, B, 4 * D), dec_c=zeros(S + 1, B, D), h_dec=h_dec,
                    win=zeros(S, B * N, 2 * K), hid=new(S, B * N, A), w=w, wcum=zeros(B, N), ctx=contexts,
                    y1T=new(F1, B), y2T=new(F2, B), y3T=new(4 * D, B), keys=new(B * N, A),
                    gates=new(B, 4 * max(H, D)), **_work_rows(att_in, B, N, E, H, D, A, K))
        fd = fill_struct(_FD, dims, bufs)
        ref = ctypes.byref(fd)
        y1T, y2T, y3T, keys = bufs["y1T"], bufs["y2T"], bufs["y3T"], bufs["keys"]
        h_att, win = bufs["h_att"], bufs["win"]
        for s in range(S):
            lib.fd_att_cell_fwd(ref, s)
            torch.mm(w1, h_att[s].t(), out=y1T)
            torch.addmm(processed, win[s], kernel, out=keys)
            lib.fd_attention_fwd(ref, s)
            torch.mm(w2, contexts[s].t(), out=y2T)
            lib.fd_dec_cell_fwd(ref, s)
            if s + 1 < S:
                torch.mm(w3, h_dec[s].t(), out=y3T)
        ctx.save_for_backward(h_dec, contexts, w, memory, kernel, v, w1, w2, w3)
        ctx.dims, ctx.lib = dims, lib
        ctx.saved = {k: bufs[k] for k in ("invalid", "mask_att", "mask_dec", "att_act", "att_c", "h_att",
                                          "dec_act", "dec_c", "win", "hid")}
        return h_dec, contexts, w

    @staticmethod
    def backward(ctx, g_hdec, g_ctx, g_w):  # type: ignore[override]
        h_dec, contexts, w, memory, kernel, v, w1, w2, w3 = ctx.saved_tensors
        dims, lib, saved = ctx.dims, ctx.lib, ctx.saved
        S, B, N, E, H, D, A, K, F1, F2 = (dims[k] for k in _INTS)
        new, zeros = h_dec.new_empty, h_dec.new_zeros
        # Transposed contiguous copies: MKL's fast layout for the per-step input gradients.
        w1t, w2t, w3t, kernel_t = (m.t().contiguous() for m in (w1, w2, w3, kernel))
        dg_att, dg_dec = new(S, B, 4 * H), new(S, B, 4 * D)
        dy1, dy2, dz = zeros(S, B, F1), zeros(S, B, F2), new(S, B * N, A)
        dhdecT, dctxT, dhattT, dwin = new(D, B), new(E, B), new(H, B), new(B * N, 2 * K)
        dmem = zeros(B, N, E)
        dv = torch.zeros(B, A, dtype=torch.float64)  # one row per utterance: threads never share one
        bufs = dict(saved, memory=memory, v=v, h_dec=h_dec, ctx=contexts, w=w,
                    g_hdec=g_hdec.contiguous(), g_ctx=g_ctx.contiguous(), g_w=g_w.contiguous(),
                    dhdecT=dhdecT, dctxT=dctxT, dhattT=dhattT, dwin=dwin, dg_att=dg_att, dg_dec=dg_dec,
                    dy1=dy1, dy2=dy2, dz=dz, dc_att=zeros(B, H), dc_dec=zeros(B, D),
                    dw_prev=zeros(B, N), gcum=zeros(B, N), dmem=dmem, dv=dv,
                    **_work_rows(h_dec, B, N, E, H, D, A, K))
        fd = fill_struct(_FD, dims, bufs)
        ref = ctypes.byref(fd)
        for s in range(S - 1, -1, -1):
            if s + 1 < S:
                torch.mm(w3t, dg_dec[s + 1].t(), out=dhdecT)
            lib.fd_dec_cell_bwd(ref, s)
            torch.mm(w2t, dy2[s].t(), out=dctxT)
            lib.fd_attention_bwd(ref, s)
            if s > 0:
                torch.mm(dz[s], kernel_t, out=dwin)
                lib.fd_fold_bwd(ref, s)
            torch.mm(w1t, dy1[s].t(), out=dhattT)
            lib.fd_att_cell_bwd(ref, s)
        h_att = saved["h_att"]
        # Weight gradients: one (out, S * B) @ (S * B, in) GEMM each.
        g_w1 = dy1.view(S * B, F1).t().mm(h_att.view(S * B, H))
        g_w2 = dy2.view(S * B, F2).t().mm(contexts.view(S * B, E))
        g_w3 = dg_dec[1:].reshape(-1, 4 * D).t().mm(h_dec[:-1].reshape(-1, D))
        g_kernel = saved["win"].view(-1, 2 * K).t().mm(dz.view(-1, A))
        return (dg_att, dmem, dz.sum(0), g_kernel, dv.sum(0).to(v.dtype), dg_dec.sum((0, 1)), g_w1, g_w2, g_w3,
                None, None, None, None)


def fused_decoder_loop(lib: ctypes.CDLL, att_in: Tensor, memory: Tensor, processed: Tensor, kernel: Tensor,
                       v: Tensor, dec_bias: Tensor, w1: Tensor, w2: Tensor, w3: Tensor,
                       invalid: Optional[Tensor], mask_att: Optional[Tensor], mask_dec: Optional[Tensor]
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """See :class:`_FusedDecoderLoop` (float32 CPU operands); makes every operand contiguous first."""
    c = [t.contiguous() for t in (att_in, memory, processed, kernel, v, dec_bias, w1, w2, w3)]
    inv = None if invalid is None else invalid.to(torch.uint8).contiguous()
    return _FusedDecoderLoop.apply(*c, inv, mask_att, mask_dec, lib)


def dropout_multipliers(steps: int, rows: list[tuple[int, int, float]], like: Tensor) -> list[Optional[Tensor]]:
    """Every step's dropout multipliers (0 or 1 / (1 - p)) for each ``(batch, width, p)`` in ``rows``,
    drawn as one ``torch.rand`` call in the order per-step ``dropout`` calls would draw them
    (step by step, ``rows`` in order within a step); None where ``p`` is 0."""
    live = [(b, n, p) for b, n, p in rows if p > 0.0]
    out: list[Optional[Tensor]] = [None] * len(rows)
    if not live:
        return out
    u = torch.rand(steps, sum(b * n for b, n, _ in live), dtype=like.dtype, device=like.device)
    start = 0
    for i, (b, n, p) in enumerate(rows):
        if p > 0.0:
            keep = (u[:, start:start + b * n] >= p).to(like.dtype)
            out[i] = keep.mul_(1.0 / (1.0 - p)).view(steps, b, n).contiguous()
            start += b * n
    return out
