"""Local-conditioning upsampler: mel frames (B, cin_channels, frames) -> one vector per sample.

Two modes, one stage per entry of ``upsample_scales`` (their product is the hop size):

``transposed``
    A (1, s)-kernel, stride-s ConvTranspose2d over the (mel bin, time) plane: each frame is
    stretched into s learned copies. Initialised to plain repetition.
``nearest``
    Nearest-neighbour repetition followed by a (1, 2s+1) Conv2d that smooths across the new
    frame boundaries (r9y9/wavenet_vocoder's default). Initialised to a box filter.

With ``cin_pad > 0`` a Conv1d of kernel ``2 * cin_pad + 1`` without padding runs over the frames
first, so every frame sees ``cin_pad`` frames of context on each side: the caller passes
``frames + 2 * cin_pad`` frames and gets exactly ``frames * hop`` samples.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLE_MODES = ("transposed", "nearest")


class _NearestStage(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(1, 1, kernel_size=(1, 2 * scale + 1), padding=(0, scale), bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / (2 * scale + 1))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.repeat_interleave(c, self.scale, dim=-1))


class _TransposedStage(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.ConvTranspose2d(1, 1, kernel_size=(1, scale), stride=(1, scale), bias=False)
        nn.init.constant_(self.conv.weight, 1.0)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.conv(c)


class ConditioningUpsampler(nn.Module):
    """Mel frames to sample-rate conditioning; see the module docstring."""

    def __init__(self, cin_channels: int, upsample_scales: Sequence[int], mode: str = "nearest",
                 cin_pad: int = 0) -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
        scales = [int(s) for s in upsample_scales]
        if any(s < 1 for s in scales):
            raise ValueError(f"upsample_scales must be positive, got {list(upsample_scales)}")
        self.cin_channels = cin_channels
        self.cin_pad = cin_pad
        self.mode = mode
        self.scales = scales
        self.hop_size = int(np.prod(scales)) if scales else 1
        if cin_pad > 0:
            self.conv_in = nn.Conv1d(cin_channels, cin_channels, 2 * cin_pad + 1, bias=False)
            # Start as the identity on the centre frame so an untrained upsampler passes the mel through.
            with torch.no_grad():
                self.conv_in.weight.zero_()
                self.conv_in.weight[:, :, cin_pad].copy_(torch.eye(cin_channels))
        else:
            self.conv_in = None
        stage = _NearestStage if mode == "nearest" else _TransposedStage
        self.stages = nn.ModuleList(stage(s) for s in scales)
        # Frames of context a windowed upsampling needs on each side to be exact: the smoothing
        # conv of stage i reaches s_i samples at a rate of (s_0 * ... * s_i) per frame.
        reach, rate = 0.0, 1
        for s in scales:
            rate *= s
            reach += s / rate if mode == "nearest" else 0.0
        self.context_frames = math.ceil(reach) + 1

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """(B, cin_channels, frames + 2 * cin_pad) -> (B, cin_channels, frames * hop_size)."""
        return self.stretch(self.encode_frames(c))

    def encode_frames(self, c: torch.Tensor) -> torch.Tensor:
        """The frame-rate part: (B, cin_channels, frames + 2 * cin_pad) -> (B, cin_channels, frames)."""
        if c.dim() != 3 or c.size(1) != self.cin_channels:
            raise ValueError(f"conditioning must be (B, {self.cin_channels}, frames) channels-first, "
                             f"got shape {tuple(c.shape)}")
        if c.size(-1) <= 2 * self.cin_pad:
            raise ValueError(f"conditioning has {c.size(-1)} frames; with cin_pad={self.cin_pad} it needs "
                             f"more than {2 * self.cin_pad}")
        return self.conv_in(c) if self.conv_in is not None else c

    def stretch(self, h: torch.Tensor) -> torch.Tensor:
        """The upsampling stages: (B, C, frames) -> (B, C, frames * hop_size) for any C.

        Linear, time-invariant and the same for every channel (all kernels have height 1, no
        nonlinearity): fast generation relies on this to project frames before upsampling.
        """
        h = h.unsqueeze(1)
        for stage in self.stages:
            h = stage(h)
        return h.squeeze(1)

    def frame_window(self, frames: int, t0: int, t1: int) -> tuple[int, int]:
        """Frames [f0, f1) whose stretch determines samples [t0, t1) of an utterance of ``frames``."""
        if not 0 <= t0 < t1 <= frames * self.hop_size:
            raise ValueError(f"window [{t0}, {t1}) is outside [0, {frames * self.hop_size})")
        f0 = max(0, t0 // self.hop_size - self.context_frames)
        f1 = min(frames, -(-t1 // self.hop_size) + self.context_frames)
        return f0, f1

    def impulse_response(self, frames: int) -> torch.Tensor:
        """(frames, frames * hop_size): row f is the stretch of a unit impulse at frame f.

        By linearity ``stretch(h)[:, t] = sum_f h[:, f] * impulse_response(F)[f, t]`` for a
        window of F frames (its edges padded the same way).
        """
        device = self.stages[0].conv.weight.device if len(self.stages) else None
        return self.stretch(torch.eye(frames, device=device).unsqueeze(0))[0]

    def window(self, c: torch.Tensor, t0: int, t1: int) -> torch.Tensor:
        """Samples [t0, t1) of ``forward(c)`` computed from only the frames they depend on.

        Equals the slice of the full upsampling (the convolutions see the same inputs).

        Args:
            c: (B, cin_channels, frames + 2 * cin_pad).
        Returns:
            (B, cin_channels, t1 - t0).
        """
        f0, f1 = self.frame_window(c.size(-1) - 2 * self.cin_pad, t0, t1)
        up = self.forward(c[:, :, f0:f1 + 2 * self.cin_pad])
        offset = f0 * self.hop_size
        return up[:, :, t0 - offset:t1 - offset]


def pad_conditioning(c: torch.Tensor, cin_pad: int) -> torch.Tensor:
    """Add ``cin_pad`` frames of context on both sides by repeating the edge frames.

    Generation takes a mel of ``frames`` frames and needs ``frames + 2 * cin_pad``; the training
    data loader should pad utterance edges the same way.

    Args:
        c: (B, C, frames).
    Returns:
        (B, C, frames + 2 * cin_pad).
    """
    if cin_pad <= 0:
        return c
    return F.pad(c, (cin_pad, cin_pad), mode="replicate")
