"""Tacotron-2 as a training task: data items, batches, the loss and evaluation artifacts.

``train.py --model=tacotron2`` runs :class:`Tacotron2Task` through the generic trainer
(``tacowave.training``; its :class:`~tacowave.training.task.Task` docstring is the life cycle).

Items come from the data dir's lists: the symbol ids of the ``phones`` column (what
preprocessing wrote through the preset's text front-end), the mel ``mel/<utt_id>.npy``
``(T, num_mels)`` and the speaker's index in the data dir's speaker list. With
``text.frontend = english_arpabet`` and ``text.arpabet_probability < 1`` the ``text`` column is
re-tokenised per item instead, with the per-word dictionary / letters choice drawn from the
item's own RNG (so a batch does not depend on the worker that loads it, or on a resume).

A batch (:class:`Tacotron2Batch`) pads text ids with 0 (the padding symbol) and mels with zeros up
to a multiple of the reduction factor ``r``; the stop-token target is 1 from the last valid
frame on (NVIDIA's convention, the one :class:`~tacotron2.loss.Tacotron2Loss` computes).

Mixed precision: the model keeps its decoder (LSTM cells, attention energies) in fp32 under
autocast itself (``Decoder.forward`` / ``Decoder.inference``) and the loss works in fp32, so the
task adds no autocast handling of its own.
"""
from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from tacowave.data import DataDir, DataDirError, Utterance, UtteranceDataset, pad_sequences
from tacowave.hparams import HParams, TextConfig
from tacowave.text import frontend_from_config, split_tokens
from tacowave.training.logging import TrainLogger
from tacowave.training.task import Task

from .layers import lengths_to_mask

#: Utterances of the dev list that :meth:`Tacotron2Task.evaluate` draws images for.
EVAL_UTTERANCES = 3
#: Griffin-Lim iterations of the evaluation audio preview.
EVAL_GRIFFIN_LIM_ITERS = 30


class Tacotron2Item(NamedTuple):
    """One utterance as the model reads it."""

    utt_id: str
    text: np.ndarray     # (N,) int64 symbol ids
    mel: np.ndarray      # (T, num_mels) float32
    speaker: int         # index into the data dir's speaker list


class Tacotron2Batch(NamedTuple):
    """A padded batch (CPU tensors from :func:`collate_items`)."""

    text: Tensor          # (B, N) int64, 0 = padding
    text_lengths: Tensor  # (B,) int64
    mels: Tensor          # (B, T, num_mels) float32, T a multiple of r, zeros past each length
    mel_lengths: Tensor   # (B,) int64
    stop_targets: Tensor  # (B, T) float32, 1 from frame mel_lengths - 1 on
    speaker_ids: Tensor   # (B,) int64
    utt_ids: tuple        # the items' utterance ids
    n_frames: int         # valid mel frames in the batch (sum of mel_lengths)


def stop_targets(mel_lengths: Tensor, n_frames: int) -> Tensor:
    """``(B, n_frames)`` stop-token targets: 1 from the last valid frame on, 0 before it."""
    frames = torch.arange(n_frames)[None, :]
    return (frames >= (mel_lengths[:, None] - 1)).float()


@torch.no_grad()
def text_reliance(model: nn.Module, batch: Tacotron2Batch, seed: int = 0) -> float:
    """How much the teacher-forced mel prediction depends on the text: its mean squared error
    with every utterance's symbols shuffled, divided by the error with the real symbols.

    About 1 means the decoder predicts from its previous frames alone and the attention walks
    by position: alignment metrics can look perfect while nothing intelligible comes out. A
    model that reads its input scores well above 1. Both passes use the same pre-net dropout
    (the global RNG is reseeded with ``seed`` before each).
    """
    gen = torch.Generator().manual_seed(seed)
    shuffled = batch.text.clone()
    for b, n in enumerate(batch.text_lengths.tolist()):
        shuffled[b, :n] = batch.text[b, torch.randperm(n, generator=gen).to(batch.text.device)]
    valid = lengths_to_mask(batch.mel_lengths, batch.mels.shape[1]).unsqueeze(-1)

    def error(text: Tensor) -> float:
        torch.manual_seed(seed)
        out = model(text, batch.text_lengths, batch.mels, batch.mel_lengths, batch.speaker_ids)
        diff = (out.mel_outputs_postnet.float() - batch.mels.float()) ** 2
        return float((diff * valid).sum() / (valid.sum() * diff.shape[-1]).clamp_min(1))

    return error(shuffled) / max(error(batch.text), 1e-12)


def collate_items(items: Sequence[Tacotron2Item], r: int) -> Tacotron2Batch:
    """Pad items into a :class:`Tacotron2Batch`; mels are padded to a multiple of ``r`` frames."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    text, text_lengths = pad_sequences([np.asarray(it.text, dtype=np.int64) for it in items], 0)
    mel_lengths = torch.tensor([it.mel.shape[0] for it in items], dtype=torch.int64)
    t = int(mel_lengths.max())
    t = -(-t // r) * r
    n_mels = items[0].mel.shape[1]
    mels = np.zeros((len(items), t, n_mels), dtype=np.float32)
    for i, it in enumerate(items):
        mels[i, :it.mel.shape[0]] = it.mel
    return Tacotron2Batch(
        text=text, text_lengths=text_lengths, mels=torch.from_numpy(mels), mel_lengths=mel_lengths,
        stop_targets=stop_targets(mel_lengths, t),
        speaker_ids=torch.tensor([it.speaker for it in items], dtype=torch.int64),
        utt_ids=tuple(it.utt_id for it in items), n_frames=int(mel_lengths.sum()))


def read_mel(data: DataDir, utt: Utterance, num_mels: int) -> np.ndarray:
    """The utterance's mel ``(n_frames, num_mels)`` (a float32 copy of the memory-mapped file),
    checked against the list's frame count."""
    mel = data.read_mel(utt.utt_id)
    if mel.ndim != 2 or mel.shape != (utt.n_frames, num_mels):
        raise DataDirError(f"{data.feature_path('mel', utt.utt_id)} has shape {mel.shape}, but the "
                           f"list says ({utt.n_frames}, {num_mels}); preprocess again")
    return mel


def mean_training_frame(data: DataDir, num_mels: int, max_utterances: int = 200) -> np.ndarray | None:
    """The mean mel frame of (up to ``max_utterances`` evenly spaced) training utterances, or
    None without a train list. Deterministic, so every rank builds the same initial model."""
    if not data.has_split("train"):
        return None
    utts = data.utterances("train")
    if not utts:
        return None
    picked = [utts[i] for i in np.linspace(0, len(utts) - 1, min(len(utts), max_utterances)).astype(int)]
    total, count = np.zeros(num_mels, dtype=np.float64), 0
    for utt in picked:
        mel = read_mel(data, utt, num_mels)
        total += mel.sum(0)
        count += mel.shape[0]
    return (total / max(count, 1)).astype(np.float32)


def check_phones(data: DataDir, split: str, utterances: Sequence[Utterance],
                 symbol_ids: dict[str, int], frontend: str) -> None:
    """Fail early, naming an utterance, when a phones column holds a token the symbol table lacks
    (or is empty)."""
    for utt in utterances:
        tokens = split_tokens(utt.phones)
        bad = [t for t in tokens if t not in symbol_ids]
        if bad or not tokens:
            what = f"token(s) {sorted(set(bad))} unknown to" if bad else "no tokens for"
            raise DataDirError(f"{data.list_path(split)}: utterance {utt.utt_id} has {what} the "
                               f"{frontend!r} front-end; preprocess with this preset's text section")


class Tacotron2Dataset(UtteranceDataset):
    """Items of one list (see the module docstring). Utterances over ``max_frames`` mel frames
    are excluded (counted, reported by :meth:`describe`)."""

    def __init__(self, data: DataDir, split: str, *, symbols: Sequence[str], speakers: Sequence[str],
                 text: TextConfig, num_mels: int, max_frames: int | None = None) -> None:
        super().__init__(data, split, max_frames=max_frames, features=("mel",))
        self.symbol_ids = {s: i for i, s in enumerate(symbols)}
        self.speaker_ids = {s: i for i, s in enumerate(speakers)}
        self.text = text
        self.num_mels = num_mels
        self.retokenise = text.frontend == "english_arpabet" and text.arpabet_probability < 1.0
        check_phones(data, split, self.utterances, self.symbol_ids, text.frontend)
        unknown = sorted({u.speaker for u in self.utterances} - set(self.speaker_ids))
        if unknown:
            raise DataDirError(f"{data.list_path(split)} names speaker(s) {unknown} that are not in "
                               f"{data.root}'s speaker list {list(speakers)}")

    def token_ids(self, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
        tokens = split_tokens(utt.phones)
        if self.retokenise:
            fe = frontend_from_config(self.text, training=True, seed=int(rng.integers(2 ** 62)))
            fresh = fe.text_to_tokens(utt.text)[0]
            if fresh:
                tokens = fresh
        try:
            return np.array([self.symbol_ids[t] for t in tokens], dtype=np.int64)
        except KeyError as e:
            raise DataDirError(f"{self.data.list_path(self.split)}: utterance {utt.utt_id}: token "
                               f"{e.args[0]!r} is not a symbol of the {self.text.frontend!r} "
                               f"front-end") from None

    def load_item(self, utt: Utterance, rng: np.random.Generator) -> Tacotron2Item:
        return Tacotron2Item(utt.utt_id, self.token_ids(utt, rng), read_mel(self.data, utt, self.num_mels),
                             self.speaker_ids[utt.speaker])


class Tacotron2Task(Task):
    """Tacotron-2 on a data dir: ``train.py --model=tacotron2``."""

    name = "tacotron2"
    train_section = "train_tacotron2"

    def __init__(self, hp: HParams, data: DataDir) -> None:
        super().__init__(hp, data)
        self._symbols: list[str] | None = None
        self._loss: nn.Module | None = None
        self._reference_logged = False

    # ------------------------------------------------------------------ tables

    @property
    def r(self) -> int:
        return self.hp.tacotron2.n_frames_per_step

    @property
    def symbols(self) -> list[str]:
        """The preset's text front-end's symbol table (id 0 = padding)."""
        if self._symbols is None:
            try:
                self._symbols = list(frontend_from_config(self.hp.text).symbols)
            except ValueError as e:
                raise DataDirError(f"text.frontend: {e}") from None
        return self._symbols

    @property
    def speakers(self) -> list[str]:
        return self.data.speakers

    # ------------------------------------------------------------------ once per process

    def check_data(self) -> None:
        """The audio section (the default check), then the text front-end: the data dir's
        ``meta.json`` front-end name and symbol table must be the preset's."""
        super().check_data()
        ours = self.hp.text.frontend
        meta_path = os.path.join(self.data.root, "meta.json")
        theirs = self.data.meta.get("frontend")
        if theirs is None and isinstance(self.data.meta.get("text"), dict):
            theirs = self.data.meta["text"].get("frontend")
        if theirs is not None and theirs != ours:
            raise DataDirError(f"text front-end mismatch: the preset uses text.frontend = {ours!r} but "
                               f"{self.data.root} was preprocessed with {theirs!r} ({meta_path}); "
                               f"use the preset the data was made with, or preprocess again")
        saved = self.data.meta.get("symbols")
        if saved is not None:
            symbols = self.symbols
            if list(saved) != symbols:
                if len(saved) != len(symbols):
                    detail = f"{len(saved)} symbols in the data, {len(symbols)} in the front-end"
                else:
                    i = next(k for k, (a, b) in enumerate(zip(saved, symbols)) if a != b)
                    detail = f"id {i} is {saved[i]!r} in the data but {symbols[i]!r} in the front-end"
                raise DataDirError(f"the symbol table in {meta_path} differs from the one of the "
                                   f"preset's text front-end {ours!r} ({detail}); preprocess again "
                                   f"with this tacowave version and preset")
        if not self.speakers:
            raise DataDirError(f"{self.data.root} names no speakers (meta.json or the lists)")

    def build_model(self) -> nn.Module:
        from tacowave.training.trainer import TrainingError

        from .model import build_tacotron2

        try:
            model = build_tacotron2(self.hp.tacotron2, len(self.symbols), self.hp.audio.num_mels,
                                    len(self.speakers))
        except ValueError as e:
            raise TrainingError(str(e)) from None
        # The frame projection starts out predicting the corpus's mean frame rather than zeros,
        # so the first steps learn speech instead of the data's offset (a resumed or fine-tuned
        # run loads its own weights over this).
        mean = mean_training_frame(self.data, self.hp.audio.num_mels)
        if mean is not None:
            with torch.no_grad():
                model.decoder.mel_proj.bias.copy_(torch.from_numpy(mean).repeat(self.r))
        return model

    def _dataset(self, split: str) -> Tacotron2Dataset:
        return Tacotron2Dataset(self.data, split, symbols=self.symbols, speakers=self.speakers,
                                text=self.hp.text, num_mels=self.hp.audio.num_mels,
                                max_frames=self.config.max_frames)

    def train_dataset(self) -> Tacotron2Dataset:
        return self._dataset("train")

    def dev_dataset(self) -> Tacotron2Dataset | None:
        return self._dataset("dev") if self.data.has_split("dev") else None

    # ------------------------------------------------------------------ per batch

    def collate(self, items: list[Tacotron2Item]) -> Tacotron2Batch:
        return collate_items(items, self.r)

    @property
    def loss_fn(self) -> nn.Module:
        if self._loss is None:
            from .loss import Tacotron2Loss

            self._loss = Tacotron2Loss(self.config, self.r)
        return self._loss

    def compute_loss(self, model: nn.Module, batch: Tacotron2Batch, step: int
                     ) -> tuple[Tensor, dict[str, Any]]:
        """Teacher-forced forward and :class:`~tacotron2.loss.Tacotron2Loss` (mel, post-net mel,
        stop token, scheduled guided attention); the parts are returned as metrics."""
        outputs = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths,
                        batch.speaker_ids)
        loss, parts = self.loss_fn(outputs, batch.mels, batch.mel_lengths, batch.text_lengths, step)
        return loss, {k: v.detach() for k, v in parts.items()}

    def count_frames(self, batch: Tacotron2Batch) -> int:
        return batch.n_frames

    # ------------------------------------------------------------------ rank 0, occasionally

    def evaluate(self, model: nn.Module, dev_dataset: torch.utils.data.Dataset | None,
                 logger: TrainLogger, step: int) -> None:
        """Teacher-forced alignments and mels of up to 3 dev utterances with their
        :func:`text_reliance` (``dev/text_reliance``), and a free-running
        synthesis of the first one: its alignment, stop reason, frame count against the
        reference, attention focus rate / diagonality and a Griffin-Lim preview.

        Images: ``dev/alignment_<k>`` (encoder steps up, decoder steps across) and ``dev/mel_<k>``
        (target at the bottom, post-net prediction on top); ``infer/*`` for the free-running one.
        """
        if dev_dataset is None or len(dev_dataset) == 0:
            return
        from tacowave import audio
        from tacowave.metrics import attention_metrics

        from .model import STOP_GATE

        device = next(model.parameters()).device
        items = [dev_dataset[k] for k in range(min(EVAL_UTTERANCES, len(dev_dataset)))]
        batch = self.batch_to_device(self.collate(items), device)
        out = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths, batch.speaker_ids)
        logger.scalar("dev/text_reliance", text_reliance(model, batch), step)
        for k, item in enumerate(items):
            frames, n_text = item.mel.shape[0], len(item.text)
            align = out.alignments[k, :math.ceil(frames / self.r), :n_text].float().cpu().numpy()
            logger.image(f"dev/alignment_{k}", align.T, step)
            predicted = out.mel_outputs_postnet[k, :frames].float().cpu().numpy()
            logger.image(f"dev/mel_{k}", np.concatenate([item.mel.T, predicted.T], axis=0), step)

        first = items[0]
        reference = first.mel.shape[0]
        cap = min(self.hp.tacotron2.max_decoder_steps, 2 * math.ceil(reference / self.r) + 10)
        result = model.inference(torch.from_numpy(first.text).to(device), speaker_id=first.speaker,
                                 max_decoder_steps=cap)
        mel = result.mel.float().cpu().numpy()
        alignment = result.alignment.float().cpu().numpy()
        ratio = result.n_frames / reference
        logger.image("infer/alignment", alignment.T, step)
        logger.image("infer/mel", mel.T, step)
        logger.scalar("infer/frames_ratio", ratio, step)
        logger.scalar("infer/stopped", float(result.stop_reason == STOP_GATE), step)
        if alignment.size:
            metrics = attention_metrics(alignment)
            logger.scalar("infer/focus_rate", metrics["focus_rate"], step)
            logger.scalar("infer/diagonality", metrics["diagonality"], step)
        logger.text("infer/summary", f"{first.utt_id}: stop reason {result.stop_reason}, "
                                     f"{result.n_frames} frames vs {reference} in the reference "
                                     f"(ratio {ratio:.2f}; decoder step cap {cap})", step)
        sample_rate = self.hp.audio.sample_rate
        if mel.shape[0] > 0:
            wave = audio.inv_melspectrogram(mel, self.hp.audio, n_iter=EVAL_GRIFFIN_LIM_ITERS)
            logger.audio("infer/griffin_lim", wave, sample_rate, step)
        if not self._reference_logged:
            self._reference_logged = True
            wave = audio.inv_melspectrogram(first.mel, self.hp.audio, n_iter=EVAL_GRIFFIN_LIM_ITERS)
            logger.audio("infer/reference_griffin_lim", wave, sample_rate, step)

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"symbols": list(self.symbols), "speakers": list(self.speakers),
                "frontend": self.hp.text.frontend}
