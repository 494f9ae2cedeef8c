"""Two gloo processes launched by torchrun train to the same weights as one process on the
same global batch."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from tacowave.training import load_checkpoint
from test_training_toy import ToyTask, run_toy, toy_hparams, write_preset, write_toy_datadir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_equals_one_process_with_the_global_batch(tmp_path):
    # 32 items, global batch 8 (4 per rank): every shard is full, so averaging the two ranks'
    # mean losses equals the mean over the global batch; 6 steps cross an epoch boundary.
    data = write_toy_datadir(str(tmp_path / "data"), n_train=32, n_dev=2)
    train = dict(max_steps=6, checkpoint_interval=3, eval_interval=3, learning_rate=0.02,
                 num_workers=0)
    preset = write_preset(str(tmp_path / "toy.json"), batch_size=4, **train)
    ddp_dir = str(tmp_path / "ddp")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, REPO]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", os.path.join(REPO, "train.py"),
           f"--preset={preset}", "--model=test_training_toy:ToyTask", f"--data-root={data}",
           f"--checkpoint-dir={ddp_dir}", "--device=cpu", "--no-progress"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]

    _, single = run_toy(data, str(tmp_path / "single"), ToyTask, toy_hparams(batch_size=8, **train))
    a, b = load_checkpoint(os.path.join(ddp_dir, "checkpoint_latest.pth")), load_checkpoint(single.checkpoint)
    assert a["step"] == b["step"] == 6 and a["world_size"] == 2 and len(a["rng"]) == 2
    for name, value in b["model"].items():
        torch.testing.assert_close(a["model"][name], value, rtol=0, atol=1e-6)
    # only rank 0 logged
    assert len([f for f in os.listdir(os.path.join(ddp_dir, "log")) if f.startswith("events")]) == 1
