"""The loop's safety nets: non-finite losses, the wall-clock budget."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from tacowave.training import NonFiniteLossError, load_checkpoint
from test_training_toy import ToyTask, run_toy, toy_hparams, write_toy_datadir


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return write_toy_datadir(str(tmp_path_factory.mktemp("loop_data")), n_train=16, n_dev=2)


def test_non_finite_step_is_skipped_and_counted(data_root, tmp_path):
    task, result = run_toy(data_root, str(tmp_path), ToyTask, toy_hparams(max_steps=6), nan_steps={3})
    assert result.reason == "max_steps"
    w = task.weights_seen
    assert not torch.equal(w[3], w[2])          # step 2 updated the weights
    assert torch.equal(w[4], w[3])              # step 3 (NaN) did not
    assert not torch.equal(w[5], w[4])          # training went on
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt["skipped_steps"] == 1 and ckpt["nonfinite_in_a_row"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_consecutive_non_finite_steps_stop_the_run_without_nan_weights(data_root, tmp_path):
    hp = toy_hparams(max_steps=20, max_nonfinite_steps=3, checkpoint_interval=1)
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive non-finite steps .* at step 4"):
        run_toy(data_root, str(tmp_path), ToyTask, hp, nan_steps=set(range(2, 20)))
    saved = sorted(glob.glob(os.path.join(tmp_path, "checkpoint_step*.pth")))
    assert saved, "the steps before the streak were checkpointed"
    for path in saved:
        assert all(torch.isfinite(v).all() for v in load_checkpoint(path)["model"].values())


def test_time_budget_checkpoints_and_stops(data_root, tmp_path):
    task, result = run_toy(data_root, str(tmp_path), ToyTask, toy_hparams(max_steps=1000, max_minutes=1e-9))
    assert result.reason == "max_minutes" and result.step == 1 and len(task.history) == 1
    assert load_checkpoint(str(tmp_path / "checkpoint_latest.pth"))["step"] == 1
