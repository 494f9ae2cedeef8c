"""Reading a data dir for training: utterance lists, memory-mapped features, batching.

The data dir is the contract between preprocessing and training (DESIGN.md, "The data dir")::

    root/meta.json              {"audio": {...the preset's audio section...}, "speakers": [...], ...}
    root/{train,dev,eval}.txt   utt_id|speaker|n_samples|n_frames|text|phones
    root/audio/<utt_id>.npy     waveform (n_samples,), float32 in [-1, 1] or int16
    root/mel/<utt_id>.npy       mel spectrogram (n_frames, num_mels), float32
    root/gta/<utt_id>.npy       optional ground-truth-aligned Tacotron-2 mels, same layout as mel/

Memory: nothing here loads a corpus into memory. Lists are small text; features are opened
with ``np.load(mmap_mode="r")`` per item and only the slice a batch needs is copied, so the
parent process stays small and DataLoader workers never inherit feature arrays. What bounds
host and accelerator memory per step is the batch: ``batch_size × max_frames`` mel frames for
Tacotron-2 (longer utterances are excluded, see :class:`UtteranceDataset`) and
``batch_size × max_time_steps`` samples for WaveNet (random crops, see :func:`random_crop`).
Halve either factor to halve the activations.

Randomness: the batch sampler hands the dataset :class:`SampleKey` objects, each carrying a
seed derived from (run seed, epoch, utterance). A dataset draws its random crops from
``key.rng()``, so a batch is the same whichever worker loads it and whether or not the run
was interrupted and resumed.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tacowave.hparams import AudioConfig, describe_audio_differences

SPLITS = ("train", "dev", "eval")
FEATURE_DIRS = ("audio", "mel", "gta")


class DataDirError(ValueError):
    """The data dir is missing, malformed, or was made with a different feature definition."""


@dataclass(frozen=True)
class Utterance:
    """One line of a list file: ``utt_id|speaker|n_samples|n_frames|text|phones``."""

    utt_id: str
    speaker: str
    n_samples: int
    n_frames: int
    text: str
    phones: str


class SampleKey(NamedTuple):
    """What a batch sampler yields per item: the dataset index and the item's own RNG seed."""

    index: int
    seed: int

    def rng(self) -> np.random.Generator:
        """A generator private to this item in this epoch (for random crops)."""
        return np.random.default_rng(self.seed)


# --------------------------------------------------------------------------- the data dir


class DataDir:
    """A preprocessed data dir. Cheap to construct and to pickle (paths and small lists only).

    Raises :class:`DataDirError` naming the path when the dir, ``meta.json`` or a list is
    missing or malformed.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise DataDirError(f"data dir not found: {root}")
        meta_path = os.path.join(self.root, "meta.json")
        if not os.path.isfile(meta_path):
            raise DataDirError(f"{meta_path} not found: {root} is not a preprocessed data dir "
                               f"(run preprocess.py first)")
        try:
            with open(meta_path, encoding="utf-8") as f:
                self.meta: dict[str, Any] = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataDirError(f"{meta_path} is not valid JSON: {e}") from None
        if not isinstance(self.meta, dict):
            raise DataDirError(f"{meta_path} must hold a JSON object")
        self._lists: dict[str, list[Utterance]] = {}

    # -- metadata
    @property
    def audio(self) -> dict[str, Any]:
        """The audio section the features were computed with."""
        audio = self.meta.get("audio")
        if not isinstance(audio, dict):
            raise DataDirError(f"{os.path.join(self.root, 'meta.json')} has no 'audio' section")
        return audio

    @property
    def speakers(self) -> list[str]:
        """Speaker names in a stable order (meta.json's list, else sorted from the lists)."""
        if isinstance(self.meta.get("speakers"), list):
            return [str(s) for s in self.meta["speakers"]]
        names = {u.speaker for split in SPLITS if self.has_split(split) for u in self.utterances(split)}
        return sorted(names)

    def check_audio(self, audio: AudioConfig | dict[str, Any]) -> None:
        """Refuse a preset whose feature definition differs from the data's (names both values)."""
        ours = audio if isinstance(audio, dict) else dataclasses.asdict(audio)
        theirs = self.audio
        diffs = describe_audio_differences(ours, theirs, "the preset", "the data")
        if diffs:
            raise DataDirError(f"the preset's audio section differs from the one {self.root} was "
                               f"preprocessed with ({os.path.join(self.root, 'meta.json')}): {diffs}; "
                               f"use the preset the data was made with, or preprocess again")

    # -- lists
    def list_path(self, split: str) -> str:
        return os.path.join(self.root, f"{split}.txt")

    def has_split(self, split: str) -> bool:
        return os.path.isfile(self.list_path(split))

    def utterances(self, split: str) -> list[Utterance]:
        """The utterances of ``train``, ``dev`` or ``eval`` (parsed once, then cached)."""
        if split not in self._lists:
            self._lists[split] = read_list(self.list_path(split))
        return self._lists[split]

    # -- features
    def feature_path(self, kind: str, utt_id: str) -> str:
        """``root/<kind>/<utt_id>.npy`` for kind in audio, mel, gta."""
        if kind not in FEATURE_DIRS:
            raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_DIRS}")
        return os.path.join(self.root, kind, f"{utt_id}.npy")

    def check_features(self, utterances: Sequence[Utterance], kinds: Sequence[str]) -> None:
        """Fail early, naming a file, when a listed utterance lacks one of its feature files."""
        for kind in kinds:
            missing = [u.utt_id for u in utterances
                       if not os.path.isfile(self.feature_path(kind, u.utt_id))]
            if missing:
                raise DataDirError(f"{len(missing)} listed utterance(s) have no {kind} file, e.g. "
                                   f"{self.feature_path(kind, missing[0])}")

    def open_feature(self, kind: str, utt_id: str) -> np.ndarray:
        """The feature array memory-mapped read-only (no copy: slice it, then copy the slice)."""
        path = self.feature_path(kind, utt_id)
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataDirError(f"cannot read {path}: {e}") from None

    def read_mel(self, utt_id: str, start: int = 0, stop: int | None = None, *,
                 gta: bool = False) -> np.ndarray:
        """Mel frames ``[start, stop)`` as a float32 copy, shape ``(frames, num_mels)``."""
        mel = self.open_feature("gta" if gta else "mel", utt_id)
        return np.array(mel[start:stop], dtype=np.float32)

    def read_audio(self, utt_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` as float32 in [-1, 1], shape ``(samples,)``."""
        audio = self.open_feature("audio", utt_id)
        piece = audio[start:stop]
        if piece.dtype == np.int16:
            return piece.astype(np.float32) / 32768.0
        return np.array(piece, dtype=np.float32)


def read_list(path: str) -> list[Utterance]:
    """Parse a list file; a malformed line is an error naming ``path:line``."""
    if not os.path.isfile(path):
        raise DataDirError(f"list file not found: {path}")
    out: list[Utterance] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) != 6:
                raise DataDirError(f"{path}:{lineno}: expected 6 '|'-separated fields "
                                   f"(utt_id|speaker|n_samples|n_frames|text|phones), got {len(fields)}")
            utt_id, speaker, n_samples, n_frames, text, phones = fields
            try:
                out.append(Utterance(utt_id, speaker, int(n_samples), int(n_frames), text, phones))
            except ValueError:
                raise DataDirError(f"{path}:{lineno}: n_samples and n_frames must be integers, "
                                   f"got {n_samples!r} and {n_frames!r}") from None
    return out


# --------------------------------------------------------------------------- datasets


class UtteranceDataset(Dataset):
    """Base class for a task's dataset over one list of a data dir.

    Subclasses implement :meth:`load_item`. Utterances longer than ``max_frames`` mel frames are
    excluded up front (counted in :attr:`excluded`, reported by :meth:`describe`). Indexing takes a
    :class:`SampleKey` (from the batch sampler) or a plain int (then the item's RNG is seeded by
    its index, which keeps evaluation deterministic).

    The dataset is pickled to every DataLoader worker: it holds paths and the utterance list,
    never feature arrays.
    """

    def __init__(self, data: DataDir, split: str, *, max_frames: int | None = None,
                 features: Sequence[str] = ("mel",)) -> None:
        self.data = data
        self.split = split
        utts = data.utterances(split)
        if max_frames is not None and max_frames > 0:
            self.utterances = [u for u in utts if u.n_frames <= max_frames]
        else:
            self.utterances = list(utts)
        self.max_frames = max_frames
        self.excluded = len(utts) - len(self.utterances)
        data.check_features(self.utterances, features)

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def lengths(self) -> np.ndarray:
        """Mel frames per item, shape ``(len(self),)``: what the batch sampler buckets by."""
        return np.fromiter((u.n_frames for u in self.utterances), dtype=np.int64,
                           count=len(self.utterances))

    def __getitem__(self, key: SampleKey | int) -> Any:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), int(key))
        return self.load_item(self.utterances[key.index], key.rng())

    def load_item(self, utt: Utterance, rng: np.random.Generator) -> Any:
        """Load one utterance (copies of the slices it needs); ``rng`` is the only randomness."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the run log, e.g. ``train: 1200 utterances, 2.1 h (3 over 1000 frames excluded)``."""
        seconds = sum(u.n_samples for u in self.utterances) / float(self.data.audio["sample_rate"])
        line = f"{self.split}: {len(self.utterances)} utterances, {seconds / 3600:.2f} h"
        if self.excluded:
            line += f" ({self.excluded} over {self.max_frames} frames excluded)"
        return line


def random_crop(data: DataDir, utt: Utterance, max_time_steps: int, rng: np.random.Generator, *,
                mel_pad: int = 0, gta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A random hop-aligned crop of at most ``max_time_steps`` samples and its mel frames.

    Returns ``audio`` of shape ``(F * hop,)`` and ``mel`` of shape ``(F + 2 * mel_pad, num_mels)``
    where ``F = min(n_frames, max_time_steps // hop)``; ``mel_pad`` context frames on each side
    (for a vocoder's conditioning convolution) are edge-replicated where the crop meets an end.
    Only the cropped slices are read from the memory-mapped files.
    """
    hop = int(data.audio["hop_size"])
    frames = utt.n_frames if max_time_steps <= 0 else min(utt.n_frames, max(1, max_time_steps // hop))
    start = int(rng.integers(0, utt.n_frames - frames + 1))
    stop = start + frames
    audio = data.read_audio(utt.utt_id, start * hop, stop * hop)
    if audio.shape[0] != frames * hop:
        raise DataDirError(f"{data.feature_path('audio', utt.utt_id)} is shorter than n_frames × "
                           f"hop_size ({utt.n_frames} × {hop}); preprocess again")
    lo, hi = max(0, start - mel_pad), min(utt.n_frames, stop + mel_pad)
    mel = data.read_mel(utt.utt_id, lo, hi, gta=gta)
    if mel_pad:
        mel = np.pad(mel, ((lo - (start - mel_pad), (stop + mel_pad) - hi), (0, 0)), mode="edge")
    return audio, mel


# --------------------------------------------------------------------------- batching


class BucketBatchSampler(Sampler[list[SampleKey]]):
    """Length-bucketed, shuffled batches, sharded over distributed ranks.

    Per epoch, from a generator seeded by ``(seed, epoch)`` only: shuffle the items, cut them
    into windows of ``bucket_batches`` global batches, sort each window by length (so a batch
    holds similar lengths and wastes little padding), cut windows into global batches of
    ``batch_size × num_replicas`` items, and shuffle the batch order. Rank ``r`` takes the
    ``r``-th slice of every global batch, so all ranks see the same number of batches and the
    union over ranks covers every item exactly once. The one exception: when the last global
    batch holds fewer items than ranks, it is topped up with items from the start of the epoch's
    order so that no rank gets an empty batch.

    A single process (``num_replicas=1``) with ``batch_size = b × R`` yields exactly the global
    batches that ``R`` ranks with ``batch_size = b`` share out.

    ``shuffle=False`` gives length-sorted batches in a fixed order (for evaluation).
    ``set_epoch(epoch, start_batch=k)`` skips the first ``k`` batches (exact resume mid-epoch).
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, shuffle: bool = True, bucket_batches: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.shuffle = shuffle
        self.bucket_batches = bucket_batches
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        """Batches per rank per epoch (the same on every rank), before ``start_batch`` is skipped."""
        return math.ceil(len(self.lengths) / (self.batch_size * self.num_replicas))

    def global_batches(self) -> list[np.ndarray]:
        """This epoch's global batches (item indices), before sharding."""
        n = len(self.lengths)
        if n == 0:
            return []
        global_size = self.batch_size * self.num_replicas
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            order = rng.permutation(n)
            window = global_size * self.bucket_batches
            for lo in range(0, n, window):
                chunk = order[lo:lo + window]
                order[lo:lo + window] = chunk[np.argsort(self.lengths[chunk], kind="stable")]
        else:
            rng = None
            order = np.argsort(self.lengths, kind="stable")
        batches = [order[i:i + global_size] for i in range(0, n, global_size)]
        if len(batches[-1]) < self.num_replicas:
            need = self.num_replicas - len(batches[-1])
            batches[-1] = np.concatenate([batches[-1], np.resize(order, need)])
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _item_seeds(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        return rng.integers(0, 2**63 - 1, size=len(self.lengths), dtype=np.int64)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        seeds = self._item_seeds()
        for batch in self.global_batches()[self.start_batch:]:
            shard = np.array_split(batch, self.num_replicas)[self.rank]
            yield [SampleKey(int(i), int(seeds[i])) for i in shard]


def pad_sequences(arrays: Sequence[np.ndarray], pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, ...)`` arrays into ``(B, T_max, ...)`` plus lengths ``(B,)`` (int64)."""
    lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.int64)
    out = np.full((len(arrays), int(lengths.max()), *arrays[0].shape[1:]), pad_value,
                  dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    return torch.from_numpy(out), lengths
