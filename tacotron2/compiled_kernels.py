"""Building the Tacotron-2 decoder's C kernels: the teacher-forced training step
(fused_decoder.py) and the free-running synthesis step (fast_inference.py).

Both are compiled on first use with the system C compiler and cached (tacowave/native.py), both
split their loops across PyTorch's own OpenMP threads where they can join them, and both fall
back to PyTorch, warning once, without a compiler; ``TACOWAVE_FUSED_DECODER=0`` turns both off.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import warnings
from typing import Optional

import torch

from tacowave import native

ENV_SWITCH = "TACOWAVE_FUSED_DECODER"


def joins_torch_openmp() -> bool:
    """Whether a ``-fopenmp`` build would run its batch loops on PyTorch's own OpenMP threads.

    It does when PyTorch's parallel backend is OpenMP and the process already holds a
    libgomp.so.1 (the pip wheels bundle theirs under that soname): the loader then resolves our
    library's libgomp.so.1 to that same copy. Anything else (Intel's libiomp5, LLVM's libomp, no
    OpenMP) would start a second pool whose spinning threads fight PyTorch's for the cores, so
    the kernels stay single-threaded there."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("libgomp" in line for line in f)
    except OSError:
        return False


def build_kernels(source: str, stem: str, what: str, struct: type, size_fn: str) -> Optional[ctypes.CDLL]:
    """Compile (or load from the cache) one of the decoder's C sources: with OpenMP where its
    threads would be PyTorch's own, else single-threaded; ``size_fn`` must report the size of
    the C struct that ``struct`` mirrors. None, with one warning saying that ``what`` falls back
    to PyTorch, without a compiler, when the build fails or the sizes differ;
    ``TACOWAVE_FUSED_DECODER=0`` returns None silently."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    cc = native.find_compiler()
    if cc is None:
        warnings.warn(f"no C compiler found (set $CC): {what} on its slower PyTorch path",
                      RuntimeWarning, stacklevel=3)
        return None
    lib = None
    try:
        if joins_torch_openmp():
            try:
                lib = native.build_library(cc, source, stem, ["-ffast-math", "-fopenmp"])
            except (OSError, RuntimeError, subprocess.SubprocessError):
                pass  # a compiler without OpenMP: the same kernels, single-threaded
        if lib is None:
            lib = native.build_library(cc, source, stem, ["-ffast-math"])
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        warnings.warn(f"could not build the compiled decoder kernels ({e}): {what} on its slower "
                      f"PyTorch path", RuntimeWarning, stacklevel=3)
        return None
    getattr(lib, size_fn).restype = ctypes.c_size_t
    if getattr(lib, size_fn)() != ctypes.sizeof(struct):
        warnings.warn(f"a compiled decoder kernel's C struct does not match its Python mirror: {what} "
                      f"on its slower PyTorch path", RuntimeWarning, stacklevel=3)
        return None
    return lib


def fill_struct(struct: type, scalars: dict, tensors: dict) -> ctypes.Structure:
    """A ctypes mirror of a kernel's C struct: the scalars as given, each tensor (None: NULL) as
    its data pointer. The C side indexes raw memory, so a strided view would be misread: refused."""
    filled = struct(**scalars)
    for name, t in tensors.items():
        if t is not None:
            if not t.is_contiguous():
                raise ValueError(f"{struct.__name__} buffer {name!r} must be contiguous")
            setattr(filled, name, t.data_ptr())
    return filled
