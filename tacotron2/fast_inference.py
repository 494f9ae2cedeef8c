"""Free-running synthesis on a CPU: each decoder step as one compiled call for the whole batch.

At batch 1 every decoder step multiplies nearly all the decoder's weights by one vector, so the
step is bound by how fast those weights stream from memory (benchmarks/tacotron2_speed.py prints
the bound). MKL's vector-matrix product read the step's matrices at ~20 GB/s where a plain
loop over eight rows at a time reads ~33 (AMD EPYC, 2 threads, one process alternating them),
and the ~40 PyTorch operators between the products cost ~1 ms per step on top. Here
everything after the pre-net runs in one C call per step (``_inference_step_src.py``), reading
the same weight stacks that :meth:`Decoder._step` multiplies, transposed to (in, out); a batch
reads each block of them once for all its utterances. The pre-net (with its inference-time
dropout) stays in PyTorch so the random stream is the one the other paths draw.

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
from tacotron2.compiled_kernels import build_kernels, fill_struct

if TYPE_CHECKING:  # pragma: no cover
    from tacotron2.model import Decoder, _PassConstants

_INTS = ("B", "N", "E", "H", "D", "A", "K", "P", "r", "R", "window", "projected")
_POINTERS = ("w_prenet", "w_hatt", "ctx_mat", "memory", "w_hdec", "processed", "loc_kernel", "v", "invalid",
             "att_bias", "dec_bias", "out_bias", "att_c", "dec_c", "att_rec", "dec_rec", "w", "wcum",
             "att_gates", "dec_gates", "act", "c_new", "h_att", "h_dec", "y1", "y2", "y3", "ctx", "energy", "pad",
             "ones")


class _IS(ctypes.Structure):
    _fields_ = ([(name, ctypes.c_int32) for name in _INTS] + [("gate_threshold", ctypes.c_float)]
                + [(name, ctypes.c_void_p) for name in _POINTERS])


@functools.lru_cache(maxsize=None)
def load_library() -> Optional[ctypes.CDLL]:
    """The compiled synthesis step (built and cached on first call), or None."""
    lib = build_kernels(SOURCE, "inferencestep", "free-running synthesis runs", _IS, "is_struct_size")
    if lib is None:
        return None
    lib.is_step.restype = None
    lib.is_step.argtypes = [ctypes.POINTER(_IS)] + [ctypes.c_void_p] * 4
    return lib


def library_for(memory: Tensor, training: bool) -> Optional[ctypes.CDLL]:
    """The compiled step if a free-running pass over ``memory`` can take it: float32 on a CPU, in
    eval mode (the step has no attention/decoder dropout) and without autograd; else None."""
    if training or memory.device.type != "cpu" or memory.dtype != torch.float32 or torch.is_grad_enabled():
        return None
    return load_library()


def decode(lib: ctypes.CDLL, decoder: "Decoder", k: "_PassConstants", max_decoder_steps: int,
           gate_threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:meth:`Decoder._inference` through the compiled step (``k`` built with transposed stacks):
    the same outputs."""
    from tacotron2.model import ON_CTX, ON_H_ATT, ON_H_DEC, ON_PRENET

    cfg, r, n_mels = decoder.cfg, decoder.r, decoder.n_mels
    memory = k.memory.contiguous()
    b, n, e = memory.shape
    h, d, a = cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.attention_dim
    kernel = k.location_kernel.contiguous()
    big = max(h, d)
    out_width = r * n_mels + r
    stacks = k.mats.weights
    projected = k.projected_memory is not None
    z = memory.new_zeros
    tensors = dict(
        w_prenet=stacks[ON_PRENET], w_hatt=stacks[ON_H_ATT], w_hdec=stacks[ON_H_DEC],
        ctx_mat=k.projected_memory.contiguous() if projected else stacks[ON_CTX], memory=memory,
        processed=k.processed_memory, loc_kernel=kernel, v=decoder.attention.v.weight,
        invalid=None if k.invalid is None else k.invalid.to(torch.uint8).contiguous(),
        att_bias=k.att_bias, dec_bias=k.dec_bias,
        out_bias=torch.cat([decoder.mel_proj.bias, decoder.gate_proj.bias]),
        att_c=z(b, h), dec_c=z(b, d), att_rec=z(b, 4 * h), dec_rec=z(b, 4 * d), w=z(b, n), wcum=z(b, n),
        att_gates=z(b, 4 * h), dec_gates=z(b, 4 * d), act=z(4 * big), c_new=z(big), h_att=z(b, h), h_dec=z(b, d),
        y1=z(b, 4 * h + a + 4 * d), y2=z(b, 4 * h + 4 * d + out_width), y3=z(b, 4 * d + out_width), ctx=z(b, e),
        energy=z(n), pad=z(2 * (n + kernel.shape[0] // 2)), ones=memory.new_ones(big))
    st = fill_struct(_IS, dict(B=b, N=n, E=e, H=h, D=d, A=a, K=kernel.shape[0] // 2, P=cfg.prenet_dim, r=r,
                               R=out_width, window=k.window, projected=int(projected),
                               gate_threshold=gate_threshold), tensors)
    ref = ctypes.byref(st)

    # per step and utterance: [r frames | r stop logits], the attention weights, the first frame
    # whose stop probability passed the threshold (-1: none)
    outputs = memory.new_empty(max_decoder_steps, b, out_width)
    alignments = memory.new_empty(max_decoder_steps, b, n)
    fired = torch.empty(b, dtype=torch.int32)
    out_ptr, align_ptr, fired_ptr = outputs.data_ptr(), alignments.data_ptr(), fired.data_ptr()
    out_bytes, align_bytes = b * out_width * outputs.element_size(), b * n * alignments.element_size()
    frame = memory.new_zeros(b, n_mels)
    n_frames, stopped = [0] * b, [False] * b  # n_frames: set when an utterance stops
    steps = max_decoder_steps
    for s in range(max_decoder_steps):
        pre = decoder.prenet(frame).contiguous()
        lib.is_step(ref, pre.data_ptr(), out_ptr + s * out_bytes, align_ptr + s * align_bytes, fired_ptr)
        frame = outputs[s, :, (r - 1) * n_mels:r * n_mels]
        for i, first in enumerate(fired.tolist()):
            if first >= 0 and not stopped[i]:
                n_frames[i], stopped[i] = s * r + first + 1, True
        if all(stopped):
            steps = s + 1
            break
    per_item = outputs[:steps].transpose(0, 1)  # (B, steps, R)
    return (per_item[:, :, :r * n_mels].reshape(b, steps * r, n_mels),
            per_item[:, :, r * n_mels:].reshape(b, steps * r),
            alignments[:steps].transpose(0, 1).contiguous(),
            torch.tensor([f if done else steps * r for f, done in zip(n_frames, stopped)], device=memory.device),
            torch.tensor(stopped, device=memory.device))
