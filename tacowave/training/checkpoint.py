"""Checkpoint files: atomic writes, a ``checkpoint_latest.pth`` that is always complete,
keeping the last K, and loading with one clear error naming the file.

A tacowave checkpoint is a dict saved with ``torch.save`` that loads with
``torch.load(weights_only=True)``; the keys every producer writes are
``{"format": "tacowave-checkpoint", "version": 1, "model_type": <task name>, "model": state_dict,
"hparams": HParams.to_dict(), ...}`` (the trainer's full layout is in ``tacowave.training.trainer``).
"""
from __future__ import annotations

import os
import re
import shutil
from typing import Any, BinaryIO, Callable

import torch

FORMAT = "tacowave-checkpoint"
VERSION = 1
LATEST_NAME = "checkpoint_latest.pth"
HPARAMS_NAME = "hparams.json"
_STEP_RE = re.compile(r"^checkpoint_step(\d+)\.pth$")
_TMP_RE = re.compile(r"^\..+\.tmp-\d+$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, or not a tacowave checkpoint."""


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through a temp file in the same directory, fsync, then rename.

    Readers see either the old file or the complete new one; on any failure (including
    KeyboardInterrupt) the temp file is removed and ``path`` is untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def save_checkpoint(state: dict[str, Any], path: str) -> None:
    """Atomically ``torch.save`` a checkpoint dict that carries the format marker."""
    if state.get("format") != FORMAT or "model_type" not in state or "model" not in state:
        raise ValueError("a checkpoint needs 'format', 'version', 'model_type' and 'model' keys")
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a tacowave checkpoint, or raise :class:`CheckpointError` naming ``path``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... by cause
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, corrupt, or not "
                              f"written by torch.save): {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tacowave checkpoint (no \"format\": \"{FORMAT}\" "
                              f"marker); convert foreign checkpoints with tacowave-convert")
    version = state.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint version {version!r}; this tacowave reads "
                              f"versions up to {VERSION}")
    if "model" not in state or "model_type" not in state:
        raise CheckpointError(f"{path} lacks the 'model' or 'model_type' entry")
    return state


class CheckpointManager:
    """The checkpoints of one run directory.

    Files: ``checkpoint_step<NNNNNNNNN>.pth`` per save, ``checkpoint_latest.pth`` (a hard link
    to, or where links are impossible a copy of, the newest complete one; replaced atomically
    after that one is fully on disk) and ``hparams.json`` (the resolved preset).
    """

    def __init__(self, directory: str, keep_last: int) -> None:
        self.directory = directory
        self.keep_last = keep_last

    @property
    def latest_path(self) -> str:
        return os.path.join(self.directory, LATEST_NAME)

    def path_for(self, step: int) -> str:
        return os.path.join(self.directory, f"checkpoint_step{step:09d}.pth")

    def latest(self) -> str | None:
        return self.latest_path if os.path.isfile(self.latest_path) else None

    def remove_stale_temp_files(self) -> None:
        """Temp files left by a process killed mid-write (never complete, never read)."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            if _TMP_RE.match(name):
                os.remove(os.path.join(self.directory, name))

    def write_hparams(self, text: str) -> str:
        path = os.path.join(self.directory, HPARAMS_NAME)
        atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        return path

    def save(self, state: dict[str, Any], step: int) -> str:
        """Write the step's checkpoint, then point ``checkpoint_latest.pth`` at it, then prune."""
        os.makedirs(self.directory, exist_ok=True)
        path = self.path_for(step)
        save_checkpoint(state, path)
        self._point_latest_at(path)
        self._prune()
        return path

    def _point_latest_at(self, path: str) -> None:
        tmp = os.path.join(self.directory, f".{LATEST_NAME}.tmp-{os.getpid()}")
        try:
            if os.path.exists(tmp):
                os.remove(tmp)
            os.link(path, tmp)
        except OSError:
            # Filesystems without hard links get a complete copy, written just as atomically.
            def copy(f: BinaryIO) -> None:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, f)
            atomic_write(self.latest_path, copy)
            return
        os.replace(tmp, self.latest_path)
        _fsync_dir(self.directory)

    def _prune(self) -> None:
        if self.keep_last <= 0:
            return
        steps = sorted((int(m.group(1)), name) for name in os.listdir(self.directory)
                       if (m := _STEP_RE.match(name)))
        for _, name in steps[:-self.keep_last]:
            os.remove(os.path.join(self.directory, name))
