"""Host memory of a training run with the default loader settings, against corpus size.

Run as ``python benchmarks/training_memory.py``.

Usage:
  training_memory.py [options]

Options:
  --utterances=<list>   corpus sizes to measure, comma-separated [default: 500,4000].
  --batch-size=<n>      per-step batch [default: 16].
  --max-frames=<n>      train_tacotron2.max_frames (longer utterances are excluded) [default: 1000].
  --epochs=<n>          epochs to train (to tell run length from corpus size apart) [default: 1].
  --num-workers=<n>     loader workers; "auto" uses the engine's default formula [default: auto].
  --work-dir=<dir>      where corpora and runs go (default: a temporary directory, removed).
  -h --help             show this help.

For each size it writes a data dir in the real layout (LJSpeech's audio section: 80 mels,
hop 256) with mel lengths uniform in [100, 1100] frames, float32 ``mel/<id>.npy`` only (the
task below reads mels alone), then trains for one full epoch (or --epochs) through ``train.py`` (the real
CLI: forkserver workers, auto worker count, memory-mapped loading) with a tiny task, a
per-frame linear map from each mel frame to the next, so that the loader, not the model, sets
the pace and every utterance of the corpus is read once. A sampler polls the trainer's whole
process tree (the trainer, the fork server and its loader workers) every 50 ms and reports
the peaks of the summed RSS and PSS (PSS splits shared pages, e.g. torch's libraries that the
workers share with the fork server, between the processes that map them, so the summed PSS is
what the run really costs). Nothing here is asserted; numbers depend on the machine.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np
import torch
from docopt import docopt
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tacowave.data import UtteranceDataset, Utterance, pad_sequences  # noqa: E402
from tacowave.hparams import load_hparams  # noqa: E402
from tacowave.training import Task  # noqa: E402

NUM_MELS = 80


class MelDataset(UtteranceDataset):
    """Whole mel spectrograms ``(T, 80)``, copied out of the memory map one item at a time."""

    def load_item(self, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
        return self.data.read_mel(utt.utt_id)


class NextFrameTask(Task):
    """Predict mel frame t+1 from frame t: loader-bound on purpose."""

    name = "next_frame"
    train_section = "train_tacotron2"

    def build_model(self) -> nn.Module:
        return nn.Linear(NUM_MELS, NUM_MELS)

    def train_dataset(self) -> MelDataset:
        return MelDataset(self.data, "train", max_frames=self.config.max_frames)

    def collate(self, items: list[np.ndarray]) -> dict[str, torch.Tensor]:
        mels, lengths = pad_sequences(items)
        return {"mels": mels, "lengths": lengths}

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
                     step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        mels, lengths = batch["mels"], batch["lengths"]
        mask = (torch.arange(mels.shape[1] - 1)[None, :] < (lengths[:, None] - 1)).unsqueeze(-1)
        err = (model(mels[:, :-1]) - mels[:, 1:]) ** 2 * mask
        return err.sum() / (mask.sum() * NUM_MELS), {}

    def count_frames(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["lengths"].sum())


def write_corpus(root: str, n: int, seed: int = 0) -> tuple[int, int]:
    """A data dir of ``n`` utterances; returns (mel frames, bytes of mel features)."""
    hp = load_hparams("ljspeech")
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "mel"), exist_ok=True)
    frames_total = bytes_total = 0
    lines = []
    for i in range(n):
        frames = int(rng.integers(100, 1101))
        mel = rng.standard_normal((frames, NUM_MELS), dtype=np.float32)
        path = os.path.join(root, "mel", f"utt{i:05d}.npy")
        np.save(path, mel)
        frames_total += frames
        bytes_total += os.path.getsize(path)
        lines.append(f"utt{i:05d}|spk|{frames * hp.audio.hop_size}|{frames}|text|phones")
    for split, chunk in (("train", lines), ("dev", lines[:8]), ("eval", lines[:8])):
        with open(os.path.join(root, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(chunk) + "\n")
    with open(os.path.join(root, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"corpus": "generated", "audio": hp.to_dict()["audio"], "speakers": ["spk"]}, f)
    return frames_total, bytes_total


# --------------------------------------------------------------------------- process-tree memory


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.setdefault(ppid, []).append(int(name))
    return out


def _tree(root: int) -> list[int]:
    children, todo, seen = _children_map(), [root], []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def _rss_pss_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class TreeSampler(threading.Thread):
    """Polls a process tree; keeps the peak summed RSS / PSS and the peak process count."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.peak_trainer_rss = 0
        self.peak_procs = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _tree(self.pid)
            sizes = [_rss_pss_kib(p) for p in pids]
            self.peak_rss = max(self.peak_rss, sum(r for r, _ in sizes))
            self.peak_pss = max(self.peak_pss, sum(p for _, p in sizes))
            self.peak_trainer_rss = max(self.peak_trainer_rss, sizes[0][0])
            self.peak_procs = max(self.peak_procs, len(pids))
            time.sleep(self.interval)


# --------------------------------------------------------------------------- driver


def measure(work: str, n: int, args: dict[str, Any]) -> None:
    data = os.path.join(work, f"data_{n}")
    t0 = time.time()
    frames, size = write_corpus(data, n)
    print(f"\ncorpus: {n} utterances, {frames:,} mel frames, {size / 2**20:.0f} MiB of float32 mel "
          f"features on disk (written in {time.time() - t0:.0f} s)")
    batch, max_frames = int(args["--batch-size"]), int(args["--max-frames"])
    kept = sum(1 for line in open(os.path.join(data, "train.txt")) if int(line.split("|")[3]) <= max_frames)
    epochs = int(args["--epochs"])
    steps = -(-kept // batch) * epochs
    overrides = (f"train_tacotron2.batch_size={batch},train_tacotron2.max_frames={max_frames},"
                 f"train_tacotron2.max_steps={steps},train_tacotron2.checkpoint_interval={10 * steps},"
                 f"train_tacotron2.eval_interval=0,train_tacotron2.log_interval=50")
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--preset=ljspeech",
           "--model=training_memory:NextFrameTask", f"--data-root={data}",
           f"--checkpoint-dir={os.path.join(work, f'exp_{n}')}", f"--hparams={overrides}",
           "--device=cpu", "--no-progress"]
    if args["--num-workers"] != "auto":
        cmd.append(f"--num-workers={args['--num-workers']}")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), REPO]))
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    sampler.done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"training failed:\n{err}")
    loader_line = next((line for line in err.splitlines() if line.startswith("data loader:")), "?")
    print(f"run: {epochs} epoch(s) = {steps} steps of {batch} ({kept} utterances <= {max_frames} frames), "
          f"{time.time() - t0:.0f} s; {loader_line}")
    print(f"  peak RSS, trainer process:            {sampler.peak_trainer_rss / 1024:7.0f} MiB")
    print(f"  peak RSS, summed over {sampler.peak_procs} processes:     {sampler.peak_rss / 1024:7.0f} MiB "
          f"(shared pages counted in every process)")
    print(f"  peak PSS, summed (the real footprint): {sampler.peak_pss / 1024:7.0f} MiB")


def main() -> None:
    args = docopt(__doc__)
    print(f"training_memory: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    work = args["--work-dir"] or tempfile.mkdtemp(prefix="tacowave_mem_")
    try:
        for n in [int(x) for x in args["--utterances"].split(",")]:
            measure(work, n, args)
    finally:
        if not args["--work-dir"]:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
