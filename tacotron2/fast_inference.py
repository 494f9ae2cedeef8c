"""Single-utterance synthesis on a CPU: the free-running decoder step as one compiled call.

At batch 1 every decoder step multiplies nearly all the decoder's weights by one vector, so the
step is bound by how fast those weights stream from memory (benchmarks/tacotron2_speed.py prints
the bound). MKL's vector-matrix product read the step's matrices at ~20 GB/s where a plain
loop over eight rows at a time reads ~33 (AMD EPYC, 2 threads, one process alternating them),
and the ~40 PyTorch operators between the products cost ~1 ms per step on top. Here
everything after the pre-net runs in one C call per step (``_inference_step_src.py``), reading
the same transposed weight stacks that :meth:`Decoder._step` multiplies; the pre-net (with its
inference-time dropout) stays in PyTorch so the random stream is the one the other paths draw.

Same math as :meth:`Decoder._inference` to float rounding (the transcendental functions are the
training kernels' polynomials, ~1e-7 relative); the tests compare the two. Built like the
training kernels (``compiled_kernels.build_kernels``); without a C compiler, or with
``TACOWAVE_FUSED_DECODER=0``, synthesis keeps the PyTorch step.
"""
from __future__ import annotations

import ctypes
import functools
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from tacotron2._inference_step_src import SOURCE
from tacotron2.compiled_kernels import build_kernels

if TYPE_CHECKING:  # pragma: no cover
    from tacotron2.model import Decoder, _PassConstants

_INTS = ("N", "E", "H", "D", "A", "K", "P", "r", "R", "window", "projected")
_POINTERS = ("w_prenet", "w_hatt", "ctx_mat", "memory", "w_hdec", "processed", "loc_kernel", "v", "invalid",
             "att_bias", "dec_bias", "out_bias", "att_c", "dec_c", "att_rec", "dec_rec", "w", "wcum",
             "gates", "act", "c_new", "h_att", "h_dec", "y1", "y2", "y3", "ctx", "energy", "pad", "ones")


class _IS(ctypes.Structure):
    _fields_ = ([(name, ctypes.c_int32) for name in _INTS] + [("gate_threshold", ctypes.c_float)]
                + [(name, ctypes.c_void_p) for name in _POINTERS])


@functools.lru_cache(maxsize=None)
def load_library() -> Optional[ctypes.CDLL]:
    """The compiled synthesis step (built and cached on first call), or None."""
    lib = build_kernels(SOURCE, "inferencestep", "single-utterance synthesis runs", _IS, "is_struct_size")
    if lib is None:
        return None
    lib.is_step.restype = ctypes.c_int
    lib.is_step.argtypes = [ctypes.POINTER(_IS), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def usable(k: "_PassConstants", training: bool) -> bool:
    """Whether a pass with these constants can take the compiled step: one float32 utterance on a
    CPU, in eval mode (the step has no attention/decoder dropout), with the transposed stacks."""
    return (not training and k.memory.shape[0] == 1 and k.memory.device.type == "cpu"
            and k.memory.dtype == torch.float32 and k.mats.transposed)


def decode(lib: ctypes.CDLL, decoder: "Decoder", k: "_PassConstants", max_decoder_steps: int,
           gate_threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:meth:`Decoder._inference` for one utterance (``usable(k, ...)``): the same outputs."""
    from tacotron2.model import ON_CTX, ON_H_ATT, ON_H_DEC, ON_PRENET

    cfg, r, n_mels = decoder.cfg, decoder.r, decoder.n_mels
    memory = k.memory[0]
    n, e = memory.shape
    h, d, a = cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.attention_dim
    kernel = k.location_kernel.contiguous()
    big = max(h, d)
    out_width = r * n_mels + r
    stacks = k.mats.weights
    projected = k.projected_memory is not None
    z = memory.new_zeros
    tensors = dict(
        w_prenet=stacks[ON_PRENET], w_hatt=stacks[ON_H_ATT], w_hdec=stacks[ON_H_DEC],
        ctx_mat=k.projected_memory[0] if projected else stacks[ON_CTX], memory=memory,
        processed=k.processed_memory, loc_kernel=kernel, v=decoder.attention.v.weight,
        invalid=None if k.invalid is None else k.invalid[0].to(torch.uint8),
        att_bias=k.att_bias, dec_bias=k.dec_bias,
        out_bias=torch.cat([decoder.mel_proj.bias, decoder.gate_proj.bias]),
        att_c=z(h), dec_c=z(d), att_rec=z(4 * h), dec_rec=z(4 * d), w=z(n), wcum=z(n),
        gates=z(4 * big), act=z(4 * big), c_new=z(big), h_att=z(h), h_dec=z(d),
        y1=z(4 * h + a + 4 * d), y2=z(4 * h + 4 * d + out_width), y3=z(4 * d + out_width), ctx=z(e),
        energy=z(n), pad=z(2 * (n + kernel.shape[0] // 2)), ones=memory.new_ones(big))
    st = _IS(N=n, E=e, H=h, D=d, A=a, K=kernel.shape[0] // 2, P=cfg.prenet_dim, r=r, R=out_width,
             window=k.window, projected=int(projected), gate_threshold=gate_threshold)
    for name, t in tensors.items():
        if t is not None:
            if not t.is_contiguous():  # the C side indexes raw memory
                raise ValueError(f"synthesis step buffer {name!r} must be contiguous")
            setattr(st, name, t.data_ptr())
    ref = ctypes.byref(st)

    outputs = memory.new_empty(max_decoder_steps, out_width)  # per step: [r frames | r stop logits]
    alignments = memory.new_empty(max_decoder_steps, n)
    out_ptr, align_ptr = outputs.data_ptr(), alignments.data_ptr()
    row_bytes, align_bytes = out_width * outputs.element_size(), n * alignments.element_size()
    frame = memory.new_zeros(1, n_mels)
    steps, n_frames, stopped = max_decoder_steps, max_decoder_steps * r, False
    for s in range(max_decoder_steps):
        pre = decoder.prenet(frame).contiguous()
        fired = lib.is_step(ref, pre.data_ptr(), out_ptr + s * row_bytes, align_ptr + s * align_bytes)
        frame = outputs[s:s + 1, (r - 1) * n_mels:r * n_mels]
        if fired >= 0:
            steps, n_frames, stopped = s + 1, s * r + fired + 1, True
            break
    outputs = outputs[:steps]
    return (outputs[:, :r * n_mels].reshape(1, steps * r, n_mels),
            outputs[:, r * n_mels:].reshape(1, steps * r),
            alignments[:steps].unsqueeze(0),
            torch.tensor([n_frames], device=memory.device),
            torch.tensor([stopped], device=memory.device))
