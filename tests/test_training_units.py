"""Engine pieces against hand computations: EMA, LR schedules, worker count, precision, devices."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tacowave.hparams import TrainConfig
from tacowave.training import workers
from tacowave.training.device import DeviceError, select_device
from tacowave.training.ema import ExponentialMovingAverage
from tacowave.training.precision import resolve_precision
from tacowave.training.schedule import LRSchedule
from tacowave.training.task import TaskNotFoundError, get_task, move_to_device

# --------------------------------------------------------------------------- EMA


def test_ema_matches_hand_computation_and_swaps():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ExponentialMovingAverage(model, decay=0.9)
    expected = 1.0
    for value in (2.0, 4.0, 0.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
        expected = 0.9 * expected + 0.1 * value
    assert ema.shadow["weight"].item() == pytest.approx(expected, rel=1e-6)  # 1.1 -> 1.39 -> 1.251
    assert expected == pytest.approx(1.251)
    with ema.swapped_in(model):
        assert model.weight.item() == pytest.approx(1.251, rel=1e-6)
    assert model.weight.item() == 0.0


def test_ema_state_round_trip_is_a_loadable_state_dict():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ExponentialMovingAverage(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    state = ema.state_dict(model)
    assert set(state) == set(model.state_dict())  # buffers included: loadable as it is
    fresh = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    restored = ExponentialMovingAverage(fresh, 0.5)
    restored.load_state_dict(state)
    for name, value in ema.shadow.items():
        assert torch.equal(restored.shadow[name], value)


# --------------------------------------------------------------------------- LR schedules


def _schedule(name: str, **kw) -> LRSchedule:
    cfg = TrainConfig(lr_schedule=name, learning_rate=1e-3, **kw)
    return LRSchedule.from_config(cfg)


def test_constant_and_step_schedules():
    assert _schedule("none")(12345) == 1e-3
    s = _schedule("step", lr_decay_rate=0.5, lr_decay_steps=100, min_learning_rate=1e-5, warmup_steps=0)
    assert s(0) == 1e-3 and s(99) == 1e-3 and s(100) == 5e-4 and s(250) == 2.5e-4
    assert s(10_000) == 1e-5  # floored


def test_exponential_schedule_with_warmup():
    s = _schedule("exponential", lr_decay_rate=0.5, lr_decay_steps=100, warmup_steps=10,
                  min_learning_rate=0.0)
    assert s(0) == pytest.approx(1e-3 * 0.1 * 0.5 ** 0.0)
    assert s(4) == pytest.approx(1e-3 * 0.5 * 0.5 ** 0.04)
    assert s(150) == pytest.approx(1e-3 * 0.5 ** 1.5)


def test_noam_matches_the_wavenet_vocoder_formula():
    warmup = 4000
    s = _schedule("noam", warmup_steps=warmup, min_learning_rate=0.0)
    for step in (0, 99, 3999, 4000, 20000, 10**6):
        n = step + 1
        expected = 1e-3 * warmup ** 0.5 * min(n * warmup ** -1.5, n ** -0.5)
        assert s(step) == pytest.approx(expected, rel=1e-12)
    assert _schedule("noam", warmup_steps=10, min_learning_rate=1e-4)(10**6) == pytest.approx(1e-4)


def test_final_anneal_scales_any_schedule_down_to_the_floor():
    s = _schedule("exponential", lr_decay_rate=0.5, lr_decay_steps=100, warmup_steps=0,
                  min_learning_rate=1e-5, lr_anneal_fraction=0.25)
    assert s(150, progress=0.5) == pytest.approx(1e-3 * 0.5 ** 1.5)    # before the last quarter
    assert s(150, progress=0.875) == pytest.approx(1e-3 * 0.5 ** 1.5 * 0.5)
    assert s(150, progress=1.0) == pytest.approx(1e-5)                   # floored
    none = _schedule("none", min_learning_rate=1e-5, lr_anneal_fraction=0.5)
    assert none(7, progress=0.0) == 1e-3 and none(7, progress=0.75) == pytest.approx(5e-4)
    assert _schedule("none")(7, progress=0.99) == 1e-3                    # no anneal by default
    with pytest.raises(ValueError, match="lr_anneal_fraction must be in"):
        _schedule("none", lr_anneal_fraction=1.5)


def test_noam_without_warmup_is_refused():
    with pytest.raises(ValueError, match="'noam' needs warmup_steps"):
        _schedule("noam", warmup_steps=0)


# --------------------------------------------------------------------------- worker count


def test_auto_num_workers_respects_cores_and_memory():
    gib = 2**30
    assert workers.auto_num_workers(16, 64 * gib) == workers.MAX_WORKERS
    assert workers.auto_num_workers(4, 64 * gib) == 3           # cores - 1
    assert workers.auto_num_workers(1, 64 * gib) == 1
    # 1 GiB free, half of it for workers, 512 MiB each -> 1 worker
    assert workers.auto_num_workers(16, 1 * gib) == 1
    assert workers.auto_num_workers(16, 600 * 2**20) == 0      # too little: load in-process
    assert workers.auto_num_workers(16, 8 * gib, per_worker_bytes=gib, fraction=0.5) == 4
    # four training processes on the node share cores and memory
    assert workers.auto_num_workers(16, 8 * gib, local_world_size=4) == 2
    assert workers.auto_num_workers(8, None) == 7


def test_available_memory_reads_meminfo_and_cgroup_limits(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   16000000 kB\n")
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/job/step\n")
    root = tmp_path / "sys"
    (root / "job" / "step").mkdir(parents=True)
    args = dict(meminfo=str(meminfo), cgroup_root=str(root), proc_cgroup=str(proc_cgroup))
    assert workers.available_memory_bytes(**args) == 16_000_000 * 1024
    (root / "job" / "memory.max").write_text(str(3 * 2**30) + "\n")
    (root / "job" / "memory.current").write_text(str(2**30) + "\n")
    (root / "job" / "step" / "memory.max").write_text("max\n")
    assert workers.available_memory_bytes(**args) == 2 * 2**30
    # v1 layout
    proc_cgroup.write_text("4:memory:/slot\n")
    (root / "memory" / "slot").mkdir(parents=True)
    (root / "memory" / "slot" / "memory.limit_in_bytes").write_text(str(2**30))
    (root / "memory" / "slot" / "memory.usage_in_bytes").write_text(str(2**29))
    assert workers.available_memory_bytes(**args) == 2**29


def test_requested_worker_count_wins():
    assert workers.resolve_num_workers(0) == 0
    assert workers.resolve_num_workers(3) == 3
    assert workers.resolve_num_workers(-1) >= 0


def test_workers_are_not_forked_from_the_trainer():
    assert workers.multiprocessing_context().get_start_method() in ("forkserver", "spawn")


# --------------------------------------------------------------------------- device, precision, registry


def test_cpu_always_runs_fp32():
    cpu = select_device("cpu")
    assert cpu.type == "cpu"
    for amp in ("none", "bf16", "fp16"):
        p = resolve_precision(amp, cpu)
        assert p.dtype is None and p.make_scaler() is None and p.name == "fp32"


def test_unavailable_or_unknown_device_is_an_error():
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            select_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("tpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")


def test_registry_reports_unknown_and_missing_tasks():
    with pytest.raises(TaskNotFoundError, match="unknown model 'nope'; known: .*tacotron2.*wavenet"):
        get_task("nope")
    with pytest.raises(TaskNotFoundError, match="not available"):
        get_task("no_such_package.module:Task")
    with pytest.raises(TaskNotFoundError, match="not a Task subclass"):
        get_task("math:sqrt")
    assert get_task("test_training_toy:ToyTask").name == "toy"


def test_move_to_device_walks_nested_batches():
    batch = {"a": torch.ones(1), "b": [torch.zeros(2), (torch.ones(3), "x")], "n": 3}
    moved = move_to_device(batch, torch.device("cpu"))
    assert moved["n"] == 3 and moved["b"][1][1] == "x" and torch.equal(moved["b"][1][0], torch.ones(3))
    assert math.isclose(float(moved["a"]), 1.0)


_ORPHAN_SCRIPT = """
import os, sys, time
sys.path.insert(0, {repo!r})
from torch.utils.data import DataLoader
from tacowave.training import workers
loader = DataLoader(list(range(8)), batch_size=2, num_workers=2, persistent_workers=True,
                    multiprocessing_context=workers.multiprocessing_context(),
                    worker_init_fn=workers.WorkerInit(os.getpid()))
iterator = iter(loader)
for _ in range(4):  # batches alternate between the workers: both are up and initialised
    next(iterator)
print(" ".join(str(w.pid) for w in iterator._workers), flush=True)
time.sleep(60)
"""


def test_workers_exit_when_the_trainer_is_killed():
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT.format(repo=repo)],
                            stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        # The group-wide SIGTERM that torchrun sends does not reach the workers...
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
    finally:
        proc.kill()  # ...but the trainer's death, even by SIGKILL, ends them.
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
