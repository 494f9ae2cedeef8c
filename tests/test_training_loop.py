"""The loop's safety nets: non-finite losses, the wall-clock budget."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from tacowave.data import DataDir
from tacowave.training import NonFiniteLossError, RunOptions, Trainer, load_checkpoint
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


def _lr_of_checkpoint(path: str) -> float:
    return load_checkpoint(path)["optimizer"]["param_groups"][0]["lr"]


def test_final_anneal_decays_the_rate_linearly_over_the_last_share_of_the_steps(data_root, tmp_path):
    hp = toy_hparams(max_steps=10, lr_schedule="none", learning_rate=0.01, min_learning_rate=0.001,
                     lr_anneal_fraction=0.5, checkpoint_interval=1, keep_last_checkpoints=20)
    run_toy(data_root, str(tmp_path), ToyTask, hp)
    # checkpoint_step{n} holds the rate of update n - 1; update k runs at progress k / 10:
    # full rate up to k = 5, then 0.01 * (1 - k / 10) / 0.5, floored at min_learning_rate.
    got = [_lr_of_checkpoint(str(tmp_path / f"checkpoint_step{n:09d}.pth")) for n in range(1, 11)]
    expected = [0.01] * 6 + [0.008, 0.006, 0.004, 0.002]
    assert got == pytest.approx(expected, rel=1e-9)
    seconds = [load_checkpoint(str(tmp_path / f"checkpoint_step{n:09d}.pth"))["trained_seconds"]
               for n in (1, 10)]
    assert 0 < seconds[0] <= seconds[1]


def test_final_anneal_follows_the_clock_across_a_resume(data_root, tmp_path):
    hp = toy_hparams(max_steps=2, lr_schedule="none", learning_rate=0.01, min_learning_rate=0.001,
                     lr_anneal_fraction=0.5)
    first = run_toy(data_root, str(tmp_path), ToyTask, hp)[1]
    assert _lr_of_checkpoint(first.checkpoint) == pytest.approx(0.01)  # step share 1/2: not yet
    # Pretend the earlier run trained for a long time: resumed with one more minute of budget,
    # the run is at the very end of its clock, so the step share no longer decides.
    state = load_checkpoint(first.checkpoint)
    before = state["trained_seconds"]
    state["trained_seconds"] = 1e6
    torch.save(state, first.checkpoint)
    # Step share of update 2: 2/3, which alone would give 2/3 of the rate.
    hp = toy_hparams(max_steps=3, max_minutes=1.0, lr_schedule="none", learning_rate=0.01,
                     min_learning_rate=0.001, lr_anneal_fraction=0.5)
    options = RunOptions(checkpoint_dir=str(tmp_path), resume=first.checkpoint, device="cpu",
                         show_progress=False)
    result = Trainer(ToyTask(hp, DataDir(data_root)), options).run()
    assert result.step == 3
    resumed = load_checkpoint(result.checkpoint)
    assert resumed["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.001)
    assert resumed["trained_seconds"] > 1e6 and before > 0
