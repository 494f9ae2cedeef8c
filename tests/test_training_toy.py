"""A toy task for testing the training engine, the tiny data dir it trains on, and the basic
"it trains" test. Other ``test_training_*`` modules import the helpers from here.

The toy data dir has the real layout: ``mel/<id>.npy`` holds random features ``(F, 4)`` and
``audio/<id>.npy`` a waveform whose samples in frame ``f`` sum to ``mel[f] @ W_TRUE``. The
toy model regresses that per-frame sum from the mel frame, on random hop-aligned crops of
``train_wavenet.max_time_steps`` samples, so the engine's sampler, crops, collate, device
moves, checkpoints and logging all run as for a real task.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
from typing import Any

import numpy as np
import torch
from torch import nn

from tacowave.data import DataDir, UtteranceDataset, Utterance, pad_sequences, random_crop
from tacowave.hparams import HParams, load_hparams
from tacowave.training import RunOptions, Task, Trainer

HOP = 4
NUM_MELS = 4
W_TRUE = np.array([0.5, -1.0, 0.25, 2.0], dtype=np.float32)

#: The preset the toy runs under: tiny audio definition (hop 4), small batches, fast logging.
TOY_PRESET: dict[str, Any] = {
    "audio": {"sample_rate": 16000, "n_fft": 16, "win_size": 16, "hop_size": HOP,
              "num_mels": NUM_MELS, "fmin": 0.0, "fmax": 8000.0},
    "wavenet": {"upsample_scales": [HOP], "cin_channels": NUM_MELS},
    "train_wavenet": {"batch_size": 4, "learning_rate": 0.01, "lr_schedule": "none",
                      "warmup_steps": 0, "ema_decay": 0.0, "max_time_steps": 16 * HOP,
                      "max_steps": 20, "checkpoint_interval": 1000, "eval_interval": 1000,
                      "log_interval": 5, "keep_last_checkpoints": 3, "num_workers": 0,
                      "seed": 7, "grad_clip_norm": 1.0, "weight_decay": 0.0},
}


def write_preset(path: str, **train_overrides: Any) -> str:
    preset = json.loads(json.dumps(TOY_PRESET))
    preset["train_wavenet"].update(train_overrides)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(preset, f)
    return path


def toy_hparams(**train_overrides: Any) -> HParams:
    hp = HParams.from_dict(TOY_PRESET)
    hp.train_wavenet = dataclasses.replace(hp.train_wavenet, **train_overrides)
    return hp


def write_toy_datadir(root: str, n_train: int = 40, n_dev: int = 4, seed: int = 0,
                      min_frames: int = 8, max_frames: int = 40) -> str:
    """A data dir in the real layout (meta.json, lists, audio/, mel/) with a learnable target."""
    rng = np.random.default_rng(seed)
    for sub in ("audio", "mel"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    speakers = ["spk_a", "spk_b"]
    for split, count in (("train", n_train), ("dev", n_dev), ("eval", 2)):
        lines = []
        for i in range(count):
            utt_id = f"{split}_{i:04d}"
            frames = int(rng.integers(min_frames, max_frames + 1))
            mel = rng.normal(size=(frames, NUM_MELS)).astype(np.float32)
            audio = np.repeat(mel @ W_TRUE / HOP, HOP).astype(np.float32)
            np.save(os.path.join(root, "mel", utt_id + ".npy"), mel)
            np.save(os.path.join(root, "audio", utt_id + ".npy"), audio)
            lines.append(f"{utt_id}|{speakers[i % 2]}|{frames * HOP}|{frames}|text {i}|t e k s t")
        with open(os.path.join(root, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    meta = {"corpus": "toy", "audio": toy_hparams().to_dict()["audio"], "speakers": speakers}
    with open(os.path.join(root, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f)
    return root


class ToyDataset(UtteranceDataset):
    """Items: ``(mel (F, 4), target (F,))`` from a random crop of at most max_time_steps samples."""

    def __init__(self, data: DataDir, split: str, max_time_steps: int) -> None:
        super().__init__(data, split, features=("mel", "audio"))
        self.max_time_steps = max_time_steps

    def load_item(self, utt: Utterance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        audio, mel = random_crop(self.data, utt, self.max_time_steps, rng)
        return mel, audio.reshape(-1, HOP).sum(axis=1)


class ToyTask(Task):
    """Per-frame regression; the loss is the mean over items of each item's mean squared error
    (so DDP's average over ranks equals one process on the global batch).

    Test knobs (instance attributes): ``history`` collects every training loss;
    ``interrupt_at`` sends this process SIGTERM during that step; ``nan_steps`` makes those
    steps' losses NaN; ``weights_seen`` records the first weight before each step.
    """

    name = "toy"
    train_section = "train_wavenet"
    dropout = 0.0

    def __init__(self, hp: HParams, data: DataDir) -> None:
        super().__init__(hp, data)
        self.history: list[float] = []
        self.interrupt_at: int | None = None
        self.nan_steps: set[int] = set()
        self.weights_seen: list[torch.Tensor] = []

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(NUM_MELS, 16), nn.Tanh(), nn.Dropout(self.dropout), nn.Linear(16, 1))

    def train_dataset(self) -> ToyDataset:
        return ToyDataset(self.data, "train", self.config.max_time_steps)

    def dev_dataset(self) -> ToyDataset:
        return ToyDataset(self.data, "dev", self.config.max_time_steps)

    def collate(self, items: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        mels, lengths = pad_sequences([m for m, _ in items])
        targets, _ = pad_sequences([t for _, t in items])
        return {"mels": mels, "targets": targets, "lengths": lengths}

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
                     step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        pred = model(batch["mels"]).squeeze(-1)                       # (B, T)
        mask = (torch.arange(pred.shape[1])[None, :] < batch["lengths"][:, None]).float()
        per_item = ((pred - batch["targets"]) ** 2 * mask).sum(1) / mask.sum(1)
        loss = per_item.mean()
        if model.training:
            if self.interrupt_at == step:
                os.kill(os.getpid(), signal.SIGTERM)
            if step in self.nan_steps:
                loss = loss * float("nan")
            self.history.append(float(loss.detach()))
            first = next(model.parameters())
            self.weights_seen.append(first.detach().clone())
        return loss, {"max_item_mse": per_item.max().detach()}

    def count_frames(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["lengths"].sum())

    def evaluate(self, model: nn.Module, dev_dataset: Any, logger: Any, step: int) -> None:
        mel, target = dev_dataset[0]
        pred = model(torch.from_numpy(mel)).squeeze(-1)
        logger.image("dev/prediction", np.stack([target, pred.numpy()]), step)
        logger.text("dev/note", f"step {step}", step)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"symbols": ["_", "a", "b"], "speakers": self.data.speakers}


class DropoutToyTask(ToyTask):
    """The toy with dropout, so the torch RNG stream matters (for exact-resume tests)."""

    name = "toy_dropout"
    dropout = 0.2


def run_toy(data_root: str, ckpt_dir: str, task_cls: type[ToyTask] = ToyTask,
            hp: HParams | None = None, **knobs: Any) -> tuple[ToyTask, Any]:
    """Train a toy task in this process; returns the task (with its history) and the result."""
    task = task_cls(hp or toy_hparams(), DataDir(data_root))
    for name, value in knobs.items():
        setattr(task, name, value)
    result = Trainer(task, RunOptions(checkpoint_dir=ckpt_dir, device="cpu", show_progress=False)).run()
    return task, result


# --------------------------------------------------------------------------- tests


def test_toy_task_loss_falls(tmp_path):
    data = write_toy_datadir(str(tmp_path / "data"))
    hp = toy_hparams(max_steps=60, eval_interval=30, checkpoint_interval=30)
    task, result = run_toy(data, str(tmp_path / "exp"), hp=hp)
    assert result.reason == "max_steps" and result.step == 60
    assert len(task.history) == 60
    first, last = np.mean(task.history[:5]), np.mean(task.history[-5:])
    assert last < 0.5 * first, (first, last)
    exp = tmp_path / "exp"
    assert (exp / "checkpoint_latest.pth").is_file()
    assert sorted(p.name for p in exp.glob("checkpoint_step*.pth")) == [
        "checkpoint_step000000030.pth", "checkpoint_step000000060.pth"]
    assert HParams.from_dict(json.loads((exp / "hparams.json").read_text())) == hp
    assert any(p.name.startswith("events.out.tfevents") for p in (exp / "log").iterdir())


def test_toy_preset_file_is_valid(tmp_path):
    path = write_preset(str(tmp_path / "toy.json"), max_steps=3)
    assert load_hparams(path).train_wavenet.max_steps == 3
