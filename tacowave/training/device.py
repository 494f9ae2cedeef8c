"""The one place that decides which device a run uses (nothing else calls ``.cuda()``)."""
from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(RuntimeError):
    """The requested device is not available on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(requested: str = "auto", local_rank: int = 0, world_size: int = 1) -> torch.device:
    """Pick the device for this process.

    ``auto`` prefers CUDA (GPU ``local_rank`` of this node), then Apple MPS, then the CPU, so
    the same command runs everywhere. Asking for a device that is absent is an error rather
    than a silent fallback. MPS has no multi-process backend, so it only serves single-process
    runs (``auto`` falls back to the CPU under ``torchrun``).
    """
    if requested not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif _mps_available() and world_size == 1:
            requested = "mps"
        else:
            requested = "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("--device=cuda was asked for but no CUDA GPU is visible to PyTorch")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DeviceError(f"local rank {local_rank} needs GPU {local_rank}, but only {count} "
                              f"GPU(s) are visible; use --nproc_per_node <= {count}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    if requested == "mps":
        if not _mps_available():
            raise DeviceError("--device=mps was asked for but the MPS backend is not available")
        if world_size > 1:
            raise DeviceError("--device=mps cannot run distributed; use one process or --device=cpu")
        return torch.device("mps")
    return torch.device("cpu")
