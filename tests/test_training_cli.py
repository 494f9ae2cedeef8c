"""train.py: usage, user errors and a real run through the command line."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tacowave.cli.train import main
from tacowave.training import register_task
from test_training_toy import ToyTask, write_preset, write_toy_datadir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_help_documents_every_option():
    out = _script("--help")
    assert out.returncode == 0
    for flag in ("--preset", "--model", "--data-root", "--checkpoint-dir", "--hparams", "--resume",
                 "--init-from", "--init-exclude", "--num-workers", "--max-steps", "--max-minutes",
                 "--device", "torchrun"):
        assert flag in out.stdout


def test_bad_flag_is_a_usage_error():
    out = _script("--preset=demo", "--model=tacotron2", "--data-root=x", "--checkpoint-dir=y", "--bogus")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    register_task("toy", ToyTask)
    root = tmp_path_factory.mktemp("cli")
    return write_toy_datadir(str(root / "data"), n_train=12, n_dev=2), write_preset(str(root / "toy.json"))


def _args(data: str, preset: str, ckpt: str, *extra: str) -> list[str]:
    return [f"--preset={preset}", "--model=toy", f"--data-root={data}", f"--checkpoint-dir={ckpt}",
            "--device=cpu", "--no-progress", *extra]


def test_missing_data_dir_names_the_path(setup, tmp_path, capsys):
    _, preset = setup
    missing = str(tmp_path / "no_such_data")
    assert main(_args(missing, preset, str(tmp_path / "exp"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("train.py: error:") and missing in err and len(err.strip().splitlines()) == 1


def test_audio_mismatch_is_refused(setup, tmp_path, capsys):
    data, preset = setup
    assert main(_args(data, preset, str(tmp_path / "exp"), "--hparams=audio.fmax=7000.0")) == 1
    assert "audio.fmax = 7000.0 in the preset but 8000.0 in the data" in capsys.readouterr().err


def test_run_then_rerun_continues(setup, tmp_path, capsys):
    data, preset = setup
    exp = str(tmp_path / "exp")
    assert main(_args(data, preset, exp, "--max-steps=2", "--num-workers=0")) == 0
    assert os.path.isfile(os.path.join(exp, "checkpoint_latest.pth"))
    assert main(_args(data, preset, exp, "--max-steps=4")) == 0
    assert "resumed" in capsys.readouterr().err


def test_checkpoint_errors_name_the_file(setup, tmp_path, capsys):
    data, preset = setup
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(_args(data, preset, str(tmp_path / "exp"), f"--resume={bad}")) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1
    assert main(_args(data, preset, str(tmp_path / "exp"), "--init-exclude=decoder.")) == 1
    assert "--init-exclude needs --init-from" in capsys.readouterr().err


def test_missing_model_package_is_a_clear_error(setup, tmp_path, capsys):
    data, preset = setup
    args = _args(data, preset, str(tmp_path / "exp"))
    args[1] = "--model=no_such_pkg.task:Task"
    assert main(args) == 1
    assert "task 'no_such_pkg.task:Task' is not available: No module named 'no_such_pkg'" in capsys.readouterr().err
