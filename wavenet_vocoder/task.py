"""Training the WaveNet vocoder: the :class:`~tacowave.training.Task` the generic trainer drives.

``train.py --model=wavenet`` builds a :class:`WaveNetTask`. What it adds to the engine:

Data
    Random hop-aligned crops of ``train_wavenet.max_time_steps`` samples
    (:func:`tacowave.data.random_crop`) with the matching mel frames plus ``wavenet.cin_pad``
    context frames on each side (edge-replicated at the utterance ends, as generation pads),
    from ``mel/`` or, with ``use_gta_mels``, from the Tacotron-2 ``gta/`` mels. Utterances
    shorter than a crop are used whole and padded in :meth:`WaveNetTask.collate`, with a mask
    of the valid samples. The item's RNG is the only randomness, so batches are reproducible.

Shift
    The model's convention (``wavenet_vocoder.model``): output ``t`` is the distribution of
    sample ``t``, computed from the samples before it. The input is the crop shifted right by
    one sample with the model's initial silence first; the target is the crop itself, aligned
    with its mel frames. For ``mulaw`` the input is the one-hot of the mu-law classes of the
    shifted crop; for ``mol`` / ``gaussian`` the raw waveform.

Loss
    ``wavenet_loss(..., reduce=False)`` (nats per sample), averaged over each item's valid
    samples, then over the items: a mean over the batch, so DDP's gradient average over ranks
    equals one process on the global batch. The likelihood is computed in float32 outside
    autocast.

Evaluation
    The trainer logs ``dev/loss``; :meth:`WaveNetTask.evaluate` adds a generated clip of at most
    :data:`EVAL_SECONDS` from the middle of the first dev utterance (fast generator, fixed seed),
    the target clip, and a waveform plot of both.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tacowave.audio import mulaw_quantize
from tacowave.data import DataDir, DataDirError, Utterance, UtteranceDataset, random_crop
from tacowave.training.logging import TrainLogger
from tacowave.training.task import Task
from wavenet_vocoder.mixture import wavenet_loss
from wavenet_vocoder.model import build_wavenet

#: Upper bound of the clip :meth:`WaveNetTask.evaluate` generates, in seconds.
EVAL_SECONDS = 0.5


class WaveNetDataset(UtteranceDataset):
    """Items ``(audio (T,), mel (F + 2 * mel_pad, num_mels), speaker index)``, ``T = F * hop``,
    from a random crop of at most ``max_time_steps`` samples (whole utterance when shorter or
    when ``max_time_steps <= 0``)."""

    def __init__(self, data: DataDir, split: str, *, max_time_steps: int, mel_pad: int,
                 gta: bool = False) -> None:
        super().__init__(data, split, features=("audio", "gta" if gta else "mel"))
        self.max_time_steps = max_time_steps
        self.mel_pad = mel_pad
        self.gta = gta
        self.hop = int(data.audio["hop_size"])
        self.speaker_index = {name: i for i, name in enumerate(data.speakers)}

    def crop_frames(self, utt: Utterance) -> int:
        """Mel frames of this utterance's crops."""
        if self.max_time_steps <= 0:
            return utt.n_frames
        return min(utt.n_frames, max(1, self.max_time_steps // self.hop))

    @property
    def lengths(self) -> np.ndarray:
        """Frames per crop (what a batch is padded to), for length bucketing."""
        return np.fromiter((self.crop_frames(u) for u in self.utterances), dtype=np.int64,
                           count=len(self.utterances))

    def load_item(self, utt: Utterance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        if utt.speaker not in self.speaker_index:
            raise DataDirError(f"{self.data.list_path(self.split)}: speaker {utt.speaker!r} of "
                               f"{utt.utt_id} is not in the data dir's speaker list")
        audio, mel = random_crop(self.data, utt, self.max_time_steps, rng, mel_pad=self.mel_pad,
                                 gta=self.gta)
        return audio, mel, self.speaker_index[utt.speaker]

    def describe(self) -> str:
        line = super().describe()
        if self.max_time_steps > 0:
            sr = float(self.data.audio["sample_rate"])
            crop = max(1, self.max_time_steps // self.hop) * self.hop
            line += f"; random crops of {crop} samples ({crop / sr:.2f} s)"
        return line + (", GTA mels" if self.gta else "")


class WaveNetTask(Task):
    """The WaveNet vocoder on a data dir's waveforms and (real or GTA) mels."""

    name = "wavenet"
    train_section = "train_wavenet"

    # ------------------------------------------------------------------ set-up

    def check_data(self) -> None:
        """Audio section match, GTA mels present when asked for, mel bins == cin_channels."""
        super().check_data()
        cfg, wn = self.config, self.hp.wavenet
        kind = "gta" if cfg.use_gta_mels else "mel"
        train = self.data.utterances("train")
        if cfg.use_gta_mels:
            gta_dir = os.path.join(self.data.root, "gta")
            how = (f"make them with: synthesis.py --tacotron2=CKPT --gta --data-root={self.data.root} "
                   f"(or set train_wavenet.use_gta_mels=false to train on the real mels)")
            if not os.path.isdir(gta_dir):
                raise DataDirError(f"train_wavenet.use_gta_mels is set but {gta_dir} does not exist; {how}")
            try:
                self.data.check_features(train, ["gta"])
            except DataDirError as e:
                raise DataDirError(f"train_wavenet.use_gta_mels: {e}; {how}") from None
        if wn.cin_channels > 0 and train:
            first = train[0]
            mel = self.data.open_feature(kind, first.utt_id)
            if mel.ndim != 2 or mel.shape[1] != wn.cin_channels:
                raise DataDirError(
                    f"{self.data.feature_path(kind, first.utt_id)} has shape {tuple(mel.shape)} but "
                    f"wavenet.cin_channels is {wn.cin_channels}: the WaveNet needs (frames, "
                    f"{wn.cin_channels}) mels")
            hop = int(self.data.audio["hop_size"])
            if mel.shape[0] != first.n_frames:
                raise DataDirError(
                    f"{self.data.feature_path(kind, first.utt_id)} has {mel.shape[0]} frames but "
                    f"{self.data.list_path('train')} says {first.n_frames} ({first.n_samples} samples "
                    f"at hop {hop}); the mels must be frame-aligned with audio/")

    def build_model(self) -> nn.Module:
        return build_wavenet(self.hp.wavenet, max(1, len(self.data.speakers)))

    def _dataset(self, split: str, gta: bool) -> WaveNetDataset:
        return WaveNetDataset(self.data, split, max_time_steps=self.config.max_time_steps,
                              mel_pad=self.hp.wavenet.cin_pad, gta=gta)

    def train_dataset(self) -> WaveNetDataset:
        return self._dataset("train", self.config.use_gta_mels)

    def dev_dataset(self) -> WaveNetDataset | None:
        """The dev list, on GTA mels like training when every dev utterance has one (else on
        the real mels: a GTA dump of the train list alone still trains)."""
        if not self.data.has_split("dev") or not self.data.utterances("dev"):
            return None
        gta = self.config.use_gta_mels and all(
            os.path.isfile(self.data.feature_path("gta", u.utt_id)) for u in self.data.utterances("dev"))
        return self._dataset("dev", gta)

    # ------------------------------------------------------------------ per batch

    def collate(self, items: list[tuple[np.ndarray, np.ndarray, int]]) -> dict[str, torch.Tensor]:
        """``audio (B, T)`` zero-padded, ``mask (B, T)`` 1 on valid samples, ``lengths (B,)``
        samples, ``mels (B, num_mels, frames + 2 * cin_pad)`` channels first (edge-padded past
        an item's end), ``speakers (B,)``."""
        lengths = [a.shape[0] for a, _, _ in items]
        t_max = max(lengths)
        audio = np.zeros((len(items), t_max), dtype=np.float32)
        mask = np.zeros((len(items), t_max), dtype=np.float32)
        f_max = max(m.shape[0] for _, m, _ in items)
        mels = np.empty((len(items), items[0][1].shape[1], f_max), dtype=np.float32)
        for i, (a, m, _) in enumerate(items):
            audio[i, :a.shape[0]] = a
            mask[i, :a.shape[0]] = 1.0
            mels[i, :, :m.shape[0]] = m.T
            mels[i, :, m.shape[0]:] = m[-1][:, None]
        return {"audio": torch.from_numpy(audio), "mask": torch.from_numpy(mask),
                "lengths": torch.tensor(lengths, dtype=torch.int64), "mels": torch.from_numpy(mels),
                "speakers": torch.tensor([s for _, _, s in items], dtype=torch.int64)}

    def model_input(self, audio: torch.Tensor) -> torch.Tensor:
        """Targets ``(B, T)`` -> the teacher-forced input: shifted right by one sample behind
        the model's initial silence, ``(B, 1, T)`` raw or ``(B, mulaw_channels, T)`` one-hot."""
        shifted = F.pad(audio, (1, 0))[:, :-1]
        wn = self.hp.wavenet
        if wn.output_distribution == "mulaw":
            classes = mulaw_quantize(shifted, wn.mulaw_channels).unsqueeze(1)
            one_hot = torch.zeros(audio.size(0), wn.mulaw_channels, audio.size(1), device=audio.device)
            return one_hot.scatter_(1, classes, 1.0)
        return shifted.unsqueeze(1)

    def compute_loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
                     step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        wn = self.hp.wavenet
        audio, mask = batch["audio"], batch["mask"]
        c = batch["mels"] if wn.cin_channels > 0 else None
        g = batch["speakers"] if wn.gin_channels > 0 else None
        y_hat = model(self.model_input(audio), c, g)
        with torch.autocast(device_type=y_hat.device.type, enabled=False):
            nll = wavenet_loss(y_hat.float(), audio.float().unsqueeze(-1), wn, reduce=False)[..., 0]
            per_item = (nll * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            loss = per_item.mean()
        return loss, {}

    def count_frames(self, batch: dict[str, torch.Tensor]) -> int:
        """Valid samples in the batch."""
        return int(batch["lengths"].sum())

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, model: nn.Module, dev_dataset: Any, logger: TrainLogger, step: int) -> None:
        """Generate at most :data:`EVAL_SECONDS` of the first dev utterance (the middle of it)
        from its mel with the fast generator and a fixed seed; log both clips and a plot."""
        from wavenet_vocoder.generation import generate

        if dev_dataset is not None and len(dev_dataset) > 0:
            utt, gta = dev_dataset.utterances[0], getattr(dev_dataset, "gta", self.config.use_gta_mels)
        elif self.data.utterances("train"):
            utt, gta = self.data.utterances("train")[0], self.config.use_gta_mels
        else:
            return
        sr = int(self.data.audio["sample_rate"])
        hop = int(self.data.audio["hop_size"])
        frames = max(1, min(utt.n_frames, int(EVAL_SECONDS * sr) // hop))
        start = (utt.n_frames - frames) // 2
        target = self.data.read_audio(utt.utt_id, start * hop, (start + frames) * hop)
        wn = self.hp.wavenet
        speakers = self.data.speakers
        g = (speakers.index(utt.speaker) if utt.speaker in speakers else 0) if wn.gin_channels > 0 else None
        if wn.cin_channels > 0:
            mel = self.data.read_mel(utt.utt_id, start, start + frames, gta=gta)
            c = [torch.from_numpy(np.ascontiguousarray(mel.T))]
            wav = generate(model, c=c, g=g, seed=self.config.seed, fast=True)[0]
        else:
            wav = generate(model, T=frames * hop, g=g, seed=self.config.seed, fast=True)[0]
        wav = wav.numpy()
        logger.audio("dev/generated", wav, sr, step)
        logger.audio("dev/target", target, sr, step)
        logger.figure("dev/waveform", waveform_figure(target, wav, sr, f"{utt.utt_id}, step {step}"), step)

    def checkpoint_extra(self) -> dict[str, Any]:
        """The speaker list: synthesis sizes the speaker table and maps names with it."""
        return {"speakers": self.data.speakers}


def waveform_figure(target: np.ndarray, generated: np.ndarray, sample_rate: int, title: str = "") -> Any:
    """A matplotlib figure: target (top) and generated (bottom) waveforms on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(8, 4), sharex=True, sharey=True)
    for ax, wave, label in ((axes[0], target, "target"), (axes[1], generated, "generated")):
        t = np.arange(len(wave)) / float(sample_rate)
        ax.plot(t, wave, linewidth=0.5)
        ax.set_ylabel(label)
        ax.set_ylim(-1.0, 1.0)
    axes[0].set_title(title)
    axes[1].set_xlabel("time (s)")
    fig.tight_layout()
    return fig
