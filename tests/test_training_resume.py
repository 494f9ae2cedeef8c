"""Exact resume after an interruption, EMA continuity, and --init-from."""
from __future__ import annotations

import pytest
import torch

from tacowave.training import TrainingError, load_checkpoint
from test_training_toy import DropoutToyTask, ToyTask, run_toy, toy_hparams, write_toy_datadir

# 40 items / batch 4 = 10 batches per epoch: 25 steps cross two epoch boundaries, and the
# interruption at step 12 falls mid-epoch, between an evaluation (7, 14, 21) and a checkpoint (10, 20).
RESUME_HP = dict(max_steps=25, checkpoint_interval=10, eval_interval=7, ema_decay=0.9,
                 lr_schedule="exponential", lr_decay_rate=0.5, lr_decay_steps=10, warmup_steps=3)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return write_toy_datadir(str(tmp_path_factory.mktemp("resume_data")))


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory):
    ckpt = str(tmp_path_factory.mktemp("straight"))
    task, result = run_toy(data_root, ckpt, DropoutToyTask, toy_hparams(num_workers=0, **RESUME_HP))
    return task.history, load_checkpoint(result.checkpoint)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_interrupted_and_resumed_run_is_bit_identical(data_root, uninterrupted, tmp_path, num_workers):
    hp = toy_hparams(num_workers=num_workers, **RESUME_HP)
    first, stopped = run_toy(data_root, str(tmp_path), DropoutToyTask, hp, interrupt_at=12)
    assert stopped.reason == "signal" and stopped.step == 13 and stopped.signum is not None
    assert load_checkpoint(str(tmp_path / "checkpoint_latest.pth"))["batch_in_epoch"] == 3
    second, done = run_toy(data_root, str(tmp_path), DropoutToyTask, hp)
    assert done.reason == "max_steps" and done.step == 25

    history, final = uninterrupted
    assert first.history + second.history == history  # exact float equality, step by step
    resumed = load_checkpoint(done.checkpoint)
    for key in ("model", "ema"):
        for name, value in final[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)
    assert resumed["step"] == 25 and resumed["epoch"] == 2 and resumed["batch_in_epoch"] == 5


def test_ema_is_restored_not_rebuilt(data_root, uninterrupted, tmp_path):
    _, final = uninterrupted
    # The EMA lags the weights: had it been rebuilt from the weights on resume, they would match.
    assert not torch.equal(final["ema"]["0.weight"], final["model"]["0.weight"])


def test_a_finished_run_has_nothing_to_do(data_root, tmp_path):
    hp = toy_hparams(max_steps=3)
    run_toy(data_root, str(tmp_path), ToyTask, hp)
    task, result = run_toy(data_root, str(tmp_path), ToyTask, hp)
    assert result.reason == "done" and task.history == []


@pytest.fixture(scope="module")
def source_checkpoint(data_root, tmp_path_factory) -> str:
    _, result = run_toy(data_root, str(tmp_path_factory.mktemp("source")), ToyTask, toy_hparams(max_steps=5))
    return result.checkpoint


def _init_run(data_root, ckpt_dir, init_from, exclude=()):
    from tacowave.data import DataDir
    from tacowave.training import RunOptions, Trainer

    task = ToyTask(toy_hparams(max_steps=1, learning_rate=0.0), DataDir(data_root))
    options = RunOptions(checkpoint_dir=ckpt_dir, init_from=init_from, init_exclude=tuple(exclude),
                         device="cpu", show_progress=False)
    return load_checkpoint(Trainer(task, options).run().checkpoint)


def test_init_from_copies_weights_except_excluded_prefixes(data_root, source_checkpoint, tmp_path):
    source = load_checkpoint(source_checkpoint)["model"]
    fresh = ToyTask(toy_hparams(), None)
    torch.manual_seed(toy_hparams().train_wavenet.seed)
    fresh_model = fresh.build_model().state_dict()

    got = _init_run(data_root, str(tmp_path / "a"), source_checkpoint, exclude=["3."])
    assert got["step"] == 1  # a new run, not a resume
    assert torch.equal(got["model"]["0.weight"], source["0.weight"])
    assert torch.equal(got["model"]["3.weight"], fresh_model["3.weight"])


def test_init_from_reports_shape_mismatches(data_root, source_checkpoint, tmp_path):
    state = load_checkpoint(source_checkpoint)
    state["model"]["0.weight"] = torch.zeros(8, 4)
    state["model"]["0.bias"] = torch.zeros(8)
    bad = str(tmp_path / "other_shapes.pth")
    torch.save(state, bad)
    with pytest.raises(TrainingError, match=r"0.weight \(checkpoint \(8, 4\), model \(16, 4\)\).*--init-exclude"):
        _init_run(data_root, str(tmp_path / "a"), bad)
    got = _init_run(data_root, str(tmp_path / "b"), bad, exclude=["0."])
    assert got["model"]["0.weight"].shape == (16, 4)


def test_init_from_refuses_another_model_type(data_root, source_checkpoint, tmp_path):
    state = load_checkpoint(source_checkpoint)
    state["model_type"] = "wavenet"
    other = str(tmp_path / "wavenet.pth")
    torch.save(state, other)
    with pytest.raises(TrainingError, match="is a 'wavenet' checkpoint, not 'toy'"):
        _init_run(data_root, str(tmp_path / "a"), other)


def test_resuming_a_weights_only_checkpoint_points_to_init_from(data_root, source_checkpoint, tmp_path):
    from tacowave.data import DataDir
    from tacowave.training import RunOptions, Trainer

    state = load_checkpoint(source_checkpoint)
    exported = {k: state[k] for k in ("format", "version", "model_type", "model", "hparams")}
    path = str(tmp_path / "exported.pth")
    torch.save(exported, path)
    task = ToyTask(toy_hparams(max_steps=1), DataDir(data_root))
    options = RunOptions(checkpoint_dir=str(tmp_path / "run"), resume=path, device="cpu", show_progress=False)
    with pytest.raises(TrainingError, match="no training state .* --init-from"):
        Trainer(task, options).run()
