#!/usr/bin/env python3
"""Write a recipe's evaluation list: ``<out_dir>/texts.txt`` (``name|text``) + ``<out_dir>/refs/<name>.wav``.

    eval_list.py --data-dir DATA_DIR [--limit N] OUT_DIR
        the first N utterances of DATA_DIR/eval.txt; references are the preprocessed waveforms
        (DATA_DIR/audio/<id>.npy, already trimmed and at the preset's sample rate)
    eval_list.py --ljspeech-dir CORPUS_DIR [--limit N] OUT_DIR
        the first N lines of CORPUS_DIR/metadata.csv (``id|text|normalized``); references are
        copies of CORPUS_DIR/wavs/<id>.wav (the demo's held-out flite recordings)

Files are rewritten only when their content changes and references no longer on the list are
removed, so a rerun is a no-op and the synthesis stage's stamp stays valid.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Iterator

import numpy as np


class ListError(RuntimeError):
    pass


def _atomic_write(path: str, data: bytes) -> None:
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono wav of ``samples`` (float in [-1, 1] or int16)."""
    import io
    import wave

    if samples.dtype != np.int16:
        samples = (np.clip(samples.astype(np.float64), -1.0, 1.0) * 32767.0).round().astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(samples.reshape(-1).astype("<i2").tobytes())
    return buf.getvalue()


def _sample_rate(meta: dict) -> int:
    for holder in (meta.get("audio"), meta.get("hparams", {}).get("audio") if isinstance(meta.get("hparams"), dict) else None, meta):
        if isinstance(holder, dict) and isinstance(holder.get("sample_rate"), (int, float)):
            return int(holder["sample_rate"])
    raise ListError("meta.json has no audio sample_rate")


def _first_lines(path: str, limit: int) -> list[str]:
    """The first ``limit`` non-blank lines of ``path`` (all when ``limit`` is 0)."""
    if not os.path.isfile(path):
        raise ListError(f"{path} not found")
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f if line.strip()]
    return lines[:limit] if limit > 0 else lines


def from_data_dir(data_dir: str, limit: int) -> Iterator[tuple[str, str, bytes]]:
    meta_path = os.path.join(data_dir, "meta.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            sample_rate = _sample_rate(json.load(f))
    except (OSError, ValueError) as e:
        raise ListError(f"cannot read {meta_path}: {e}") from None
    list_path = os.path.join(data_dir, "eval.txt")
    for line in _first_lines(list_path, limit):
        fields = line.split("|")
        if len(fields) < 5:
            raise ListError(f"{list_path}: malformed line {line!r}")
        utt_id, text = fields[0], fields[4]
        audio = np.load(os.path.join(data_dir, "audio", utt_id + ".npy"), mmap_mode="r")
        yield utt_id, text, _wav_bytes(np.asarray(audio), sample_rate)


def from_ljspeech_dir(corpus_dir: str, limit: int) -> Iterator[tuple[str, str, bytes]]:
    metadata = os.path.join(corpus_dir, "metadata.csv")
    for line in _first_lines(metadata, limit):
        fields = line.split("|")
        if len(fields) != 3:
            raise ListError(f"{metadata}: malformed line {line!r}")
        wav = os.path.join(corpus_dir, "wavs", fields[0] + ".wav")
        try:
            with open(wav, "rb") as w:
                data = w.read()
        except OSError as e:
            raise ListError(f"cannot read {wav}: {e.strerror}") from None
        yield fields[0], fields[1], data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval_list.py", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", help="a preprocessed data dir: its eval.txt")
    source.add_argument("--ljspeech-dir", help="an LJSpeech-layout folder: its metadata.csv")
    parser.add_argument("--limit", type=int, default=0, help="first N entries (default 0: all)")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    refs = os.path.join(args.out_dir, "refs")
    os.makedirs(refs, exist_ok=True)
    try:
        entries = list(from_data_dir(args.data_dir, args.limit) if args.data_dir
                       else from_ljspeech_dir(args.ljspeech_dir, args.limit))
    except ListError as e:
        print(f"eval_list.py: error: {e}", file=sys.stderr)
        return 1
    if not entries:
        print("eval_list.py: error: the evaluation list is empty", file=sys.stderr)
        return 1
    keep = set()
    for name, _, data in entries:
        _atomic_write(os.path.join(refs, name + ".wav"), data)
        keep.add(name + ".wav")
    for stale in sorted(set(os.listdir(refs)) - keep):
        path = os.path.join(refs, stale)
        if os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)
    _atomic_write(os.path.join(args.out_dir, "texts.txt"),
                  "".join(f"{name}|{text}\n" for name, text, _ in entries).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
