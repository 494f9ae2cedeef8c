"""Checkpoint files: atomic writes, the latest pointer, pruning, clear load errors."""
from __future__ import annotations

import os

import pytest
import torch

from tacowave.training import checkpoint as ck
from tacowave.training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint


def _state(step: int) -> dict:
    return {"format": ck.FORMAT, "version": ck.VERSION, "model_type": "toy",
            "model": {"w": torch.full((3,), float(step))}, "step": step}


def test_save_prune_and_latest(tmp_path):
    manager = CheckpointManager(str(tmp_path), keep_last=2)
    assert manager.latest() is None
    for step in (10, 20, 30):
        path = manager.save(_state(step), step)
        assert load_checkpoint(manager.latest())["step"] == step
    assert path.endswith("checkpoint_step000000030.pth")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_latest.pth", "checkpoint_step000000020.pth",
                                            "checkpoint_step000000030.pth"]


def test_crash_mid_write_keeps_the_previous_latest(tmp_path, monkeypatch):
    manager = CheckpointManager(str(tmp_path), keep_last=5)
    manager.save(_state(1), 1)
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        manager.save(_state(2), 2)
    monkeypatch.undo()
    assert load_checkpoint(manager.latest())["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_latest.pth", "checkpoint_step000000001.pth"]


def test_interrupt_mid_write_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "x.pth"

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ck.atomic_write(str(target), interrupted)
    assert os.listdir(tmp_path) == []


def test_stale_temp_files_from_a_killed_process_are_removed(tmp_path):
    (tmp_path / ".checkpoint_step000000005.pth.tmp-12345").write_bytes(b"half")
    (tmp_path / "keep.txt").write_text("x")
    CheckpointManager(str(tmp_path), 1).remove_stale_temp_files()
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_truncated_checkpoint_is_one_clear_error_naming_the_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save(_state(3), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{path} is not a readable checkpoint"):
        load_checkpoint(str(path))
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(str(path))


def test_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "nvidia.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "iteration": 5}, path)
    with pytest.raises(CheckpointError, match=f"{path} is not a tacowave checkpoint"):
        load_checkpoint(str(path))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=str(text)):
        load_checkpoint(str(text))
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pth"):
        load_checkpoint(str(tmp_path / "missing.pth"))


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "future.pth"
    torch.save({**_state(1), "version": ck.VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="version"):
        load_checkpoint(str(path))


def test_latest_falls_back_to_a_copy_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError("links not supported")

    monkeypatch.setattr(os, "link", no_links)
    manager = CheckpointManager(str(tmp_path), keep_last=1)
    manager.save(_state(1), 1)
    manager.save(_state(2), 2)
    assert load_checkpoint(manager.latest())["step"] == 2
    assert not os.path.samefile(manager.latest(), manager.path_for(2))
