"""Ground-truth-aligned (GTA) mels: a trained Tacotron-2 run teacher-forced over a data dir.

``synthesis.py --tacotron2=CKPT --gta --data-root=DIR`` calls :func:`dump_gta`, which writes
``DIR/gta/<utt_id>.npy``: the post-net output, float32 ``(n_frames, num_mels)`` with exactly the
reference mel's frame count, frame-for-frame aligned with ``DIR/audio/<utt_id>.npy``, so a WaveNet
trained on them (``train_wavenet.use_gta_mels``) learns to vocode what Tacotron-2 really outputs.

The pass is ``Tacotron2.forward`` in eval mode under ``no_grad``: batch norm uses its running
statistics, the encoder / post-net / attention / decoder dropouts are off, and the pre-net
dropout stays on, because the model's pre-net always applies it (Tacotron-2 needs that noise at
inference, and NVIDIA's GTA does the same). The dropout masks come from a fixed seed (the caller's
RNG state is left untouched), so a rerun with the same batches writes the same mels.

Each file is written atomically. ``DIR/gta/checkpoint.json`` records a fingerprint of the weights
that wrote the files: a rerun with the same weights only fills in missing or incomplete files (an
interrupted dump resumes), while other weights first remove every old GTA file, so the folder
never mixes two models.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Sequence

import numpy as np
import torch

from tacowave.audio import atomic_write, save_npy
from tacowave.data import DataDir, DataDirError, Utterance
from tacowave.hparams import describe_audio_differences
from tacowave.text import split_tokens

from .task import Tacotron2Item, collate_items, read_mel

STAMP = "checkpoint.json"
#: Seed of the pre-net dropout masks of a GTA pass.
GTA_SEED = 1234


def _weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_compatible(loaded: Any, data: DataDir) -> None:
    """Refuse a data dir made with another audio section or another symbol table than the
    checkpoint's (the error names both values)."""
    ours = loaded.hp.to_dict()["audio"]
    theirs = data.audio
    diffs = describe_audio_differences(ours, theirs, "the checkpoint", "the data")
    if diffs:
        raise DataDirError(f"{loaded.path} was trained on other mels than {data.root} holds ({diffs}); "
                           f"GTA needs the data dir the model was trained on")
    symbols = list(loaded.extra.get("symbols") or [])
    frontend = loaded.hp.text.frontend
    data_frontend = data.meta.get("frontend")
    if data_frontend is not None and data_frontend != frontend:
        raise DataDirError(f"{loaded.path} reads text through front-end {frontend!r} but {data.root} "
                           f"was preprocessed with {data_frontend!r}")
    saved = data.meta.get("symbols")
    if saved is not None and list(saved) != symbols:
        raise DataDirError(f"the symbol table of {data.root}/meta.json ({len(saved)} symbols) differs "
                           f"from {loaded.path}'s ({len(symbols)} symbols, front-end {frontend!r})")


def _complete(path: str, n_frames: int, n_mels: int) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.dtype == np.float32 and arr.shape == (n_frames, n_mels)


def _prepare_dir(gta_dir: str, stamp: dict[str, Any]) -> None:
    """Make ``gta_dir`` hold only files of the weights ``stamp`` describes (see the module doc)."""
    os.makedirs(gta_dir, exist_ok=True)
    path = os.path.join(gta_dir, STAMP)
    try:
        with open(path, encoding="utf-8") as f:
            have = json.load(f)
    except (OSError, ValueError):
        have = None
    if isinstance(have, dict) and have.get("weights") == stamp["weights"]:
        return
    # Stamp removed before the old files, new stamp written after: an interruption in between
    # leaves no stamp, and the next run cleans up again.
    if os.path.exists(path):
        os.unlink(path)
    for name in os.listdir(gta_dir):
        if name.endswith(".npy"):
            os.unlink(os.path.join(gta_dir, name))
    text = json.dumps(stamp, indent=2) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def dump_gta(loaded: Any, data_root: str, lists: Sequence[str], batch_size: int = 8,
             device: torch.device | str = "cpu", progress: bool = True) -> int:
    """Teacher-forced post-net mels for every utterance of ``lists`` (e.g. train, dev, eval).

    ``loaded`` is a :class:`tacowave.synthesizer.LoadedModel` of a Tacotron-2 checkpoint. Writes
    ``data_root/gta/<utt_id>.npy`` (float32, ``(n_frames, num_mels)``) and returns how many files
    were written (complete files from the same weights are kept, see the module docstring).
    Raises :class:`~tacowave.data.DataDirError` for a data dir the model cannot be run on.
    """
    from tqdm import tqdm

    from tacowave.synthesizer import SynthesisError

    device = torch.device(device)
    data = DataDir(data_root)
    check_compatible(loaded, data)
    model = loaded.model
    n_mels = loaded.hp.audio.num_mels
    r = loaded.hp.tacotron2.n_frames_per_step
    symbol_ids = {s: i for i, s in enumerate(loaded.extra.get("symbols") or [])}
    speakers = list(loaded.speakers)
    uses_speakers = getattr(model, "speaker_embedding", None) is not None

    todo: list[tuple[str, Utterance]] = []
    for split in lists:
        if not data.has_split(split):
            raise DataDirError(f"{data.list_path(split)} not found (lists of a data dir: train, dev, "
                               f"eval)")
        utts = data.utterances(split)
        data.check_features(utts, ("mel",))
        for utt in utts:
            if uses_speakers and utt.speaker not in speakers:
                raise DataDirError(f"{data.list_path(split)}: utterance {utt.utt_id} is spoken by "
                                   f"{utt.speaker!r}, whom {loaded.path} does not know (its speakers: "
                                   f"{', '.join(speakers)})")
            tokens = split_tokens(utt.phones)
            bad = sorted({t for t in tokens if t not in symbol_ids})
            if bad or not tokens:
                what = f"token(s) {bad} unknown to" if bad else "no tokens for"
                raise DataDirError(f"{data.list_path(split)}: utterance {utt.utt_id} has {what} "
                                   f"{loaded.path}'s symbol table")
            todo.append((split, utt))

    gta_dir = os.path.join(data.root, "gta")
    _prepare_dir(gta_dir, {"weights": _weights_fingerprint(model), "checkpoint": os.path.abspath(loaded.path),
                           "step": loaded.extra.get("step")})
    seen: set[str] = set()
    pending = []
    for _, utt in todo:
        if utt.utt_id in seen:
            continue
        seen.add(utt.utt_id)
        if not _complete(data.feature_path("gta", utt.utt_id), utt.n_frames, n_mels):
            pending.append(utt)
    skipped = len(seen) - len(pending)
    # Longest first: similar lengths share a batch, and memory trouble shows at once.
    pending.sort(key=lambda u: -u.n_frames)

    written = 0
    was_training = model.training
    model.eval()
    devices = [torch.cuda.current_device() if device.index is None else device.index] \
        if device.type == "cuda" else []
    bar = tqdm(total=len(pending), unit="utt", desc="GTA", file=sys.stderr, disable=not progress)
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(GTA_SEED)
            for start in range(0, len(pending), max(1, batch_size)):
                chunk = pending[start:start + batch_size]
                items = [Tacotron2Item(u.utt_id, np.array([symbol_ids[t] for t in split_tokens(u.phones)],
                                                          dtype=np.int64),
                                       read_mel(data, u, n_mels),
                                       speakers.index(u.speaker) if uses_speakers else 0)
                         for u in chunk]
                batch = collate_items(items, r)
                out = model(batch.text.to(device), batch.text_lengths.to(device), batch.mels.to(device),
                            batch.mel_lengths.to(device),
                            batch.speaker_ids.to(device) if uses_speakers else None)
                mels = out.mel_outputs_postnet.float().cpu().numpy()
                for i, utt in enumerate(chunk):
                    gta = np.ascontiguousarray(mels[i, :utt.n_frames], dtype=np.float32)
                    if not np.isfinite(gta).all():
                        raise SynthesisError(f"{loaded.path} produced non-finite GTA frames for "
                                           f"{utt.utt_id}")
                    save_npy(gta, data.feature_path("gta", utt.utt_id))
                    written += 1
                bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    if skipped:
        print(f"GTA: kept {skipped} complete file(s) written earlier by the same weights",
              file=sys.stderr)
    return written
