"""Training output: a tqdm bar on the terminal and tensorboard event files.

Only rank 0 writes; on other ranks a :class:`TrainLogger` is created disabled and every call
is a no-op, so callers never test the rank themselves.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping

import numpy as np
import torch


class TrainLogger:
    """What the trainer and a task's ``evaluate`` write through.

    Images are ``(H, W)`` grey-scale arrays (scaled to [0, 1] per image and drawn with row 0 at
    the bottom, the spectrogram / attention convention: pass a mel as ``(num_mels, T)``), or
    ``(H, W, 3)`` / ``(3, H, W)`` colour arrays in [0, 1]; audio is ``(T,)`` in [-1, 1].
    Matplotlib figures go through :meth:`figure`.
    """

    def __init__(self, log_dir: str | None, *, enabled: bool, total_steps: int, initial_step: int,
                 show_progress: bool = True) -> None:
        self.enabled = enabled
        self._writer = None
        self._bar = None
        if not enabled:
            return
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # heavy import: rank 0 only

            self._writer = SummaryWriter(log_dir=log_dir)
        if show_progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step",
                             dynamic_ncols=True, file=sys.stderr)

    # -- terminal
    def message(self, text: str) -> None:
        """A line on stderr that does not break the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def progress(self, step: int, postfix: Mapping[str, Any]) -> None:
        """Move the bar to ``step``; a non-empty ``postfix`` (e.g. loss, lr) replaces the shown one."""
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(step - self._bar.n)

    # -- tensorboard
    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), step)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        for name, value in values.items():
            self.scalar(f"{prefix}{name}", value, step)

    def image(self, tag: str, image: np.ndarray | torch.Tensor, step: int) -> None:
        if self._writer is None:
            return
        array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if array.ndim == 2:
            lo, hi = float(array.min()), float(array.max())
            array = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
            self._writer.add_image(tag, array[::-1].copy(), step, dataformats="HW")
        elif array.ndim == 3 and array.shape[-1] == 3:
            self._writer.add_image(tag, array, step, dataformats="HWC")
        else:
            self._writer.add_image(tag, array, step, dataformats="CHW")

    def figure(self, tag: str, figure: Any, step: int) -> None:
        """A matplotlib figure (closed after writing)."""
        if self._writer is not None:
            self._writer.add_figure(tag, figure, step, close=True)

    def audio(self, tag: str, wave: np.ndarray | torch.Tensor, sample_rate: int, step: int) -> None:
        if self._writer is None:
            return
        array = wave.detach().float().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
        self._writer.add_audio(tag, np.clip(array.reshape(-1), -1.0, 1.0), step, sample_rate=sample_rate)

    def text(self, tag: str, text: str, step: int) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
