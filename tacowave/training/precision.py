"""Mixed precision policy: bf16 autocast where the GPU supports it, fp16 with loss scaling
otherwise, fp32 on the CPU (and on MPS) always."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch


@dataclass(frozen=True)
class Precision:
    """How a training step runs: ``dtype`` is the autocast dtype (None = plain fp32)."""

    device_type: str
    dtype: torch.dtype | None = None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> ContextManager:
        """Context for the forward pass and loss. Parameters stay fp32; a task that needs a
        sub-module in fp32 (e.g. LSTM cells under fp16) wraps that call in
        ``torch.autocast(device_type, enabled=False)`` and casts its inputs with ``.float()``."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> "torch.amp.GradScaler | None":
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
        if self.dtype is torch.float16:
            return torch.amp.GradScaler(self.device_type)
        return None


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """``amp`` is the train section's ``none | bf16 | fp16``; only CUDA honours it."""
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be none, bf16 or fp16, got {amp!r}")
    if device.type != "cuda" or amp == "none":
        return Precision(device.type)
    if amp == "bf16" and torch.cuda.is_bf16_supported():
        return Precision("cuda", torch.bfloat16)
    return Precision("cuda", torch.float16)
