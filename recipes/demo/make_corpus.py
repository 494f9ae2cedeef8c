#!/usr/bin/env python3
"""Build the demo corpus: the shipped sentences spoken by flite, in the LJSpeech-1.1 layout.

    python recipes/demo/make_corpus.py <out_dir> [--voice slt] [--limit N] [--num-workers N]

writes

    <out_dir>/metadata.csv                  DEMO-0001|<sentence>|<sentence>   (LJSpeech: id|text|normalized)
    <out_dir>/wavs/DEMO-0001.wav            16 kHz, 16-bit PCM, mono
    <out_dir>/heldout/metadata.csv          HELDOUT-0001|<sentence>|<sentence>
    <out_dir>/heldout/wavs/HELDOUT-0001.wav the flite references of the held-out sentences

from recipes/demo/sentences.txt (training material) and recipes/demo/heldout.txt (sentences that
are never trained on: the evaluation set of free-running synthesis).

Sample rate: flite's voices speak at 16 kHz and the demo preset is 16 kHz, so the wavs are kept
at 16 kHz (a voice with another native rate is resampled with sox). The real LJSpeech is
22.05 kHz; that does not matter here, because the LJSpeech reader resamples every clip to the
preset's rate anyway.

The build is deterministic (same sentences, same voice -> same bytes), parallel (one flite
process per worker), and resumable: a wav that is already there is kept, every wav is written
to a temporary name and renamed into place, and metadata.csv is rewritten only when its content
changes, so a rerun over a finished corpus touches nothing. An id whose sentence changed (an
edited sentence list) gets its wav re-synthesised. ``--limit N`` takes the first N sentences of
each list (training and held-out).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_RATE = 16000
PROG = "make_corpus"
STAMP = ".make_corpus.json"


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp's 0600 is too strict)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


class BuildError(RuntimeError):
    """Something the user can fix (missing flite, bad sentence file); printed as one line."""


def log(message: str) -> None:
    print(f"[{PROG}] {message}", flush=True)


def check_voice(flite: str, voice: str) -> None:
    """flite silently falls back to its default voice on an unknown name: refuse one instead."""
    if os.path.isfile(voice) or "://" in voice:
        return
    proc = subprocess.run([flite, "-lv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    listed = proc.stdout.split(":", 1)[-1].split()
    if listed and voice not in listed:
        raise BuildError(f"flite has no voice {voice!r}; it has: {', '.join(listed)} "
                         "(or give the path of a .flitevox file)")


def read_sentences(path: str) -> list[str]:
    """Non-empty lines of ``path``; a line with '|' (the metadata separator) is an error."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except OSError as e:
        raise BuildError(f"cannot read sentence list {path}: {e.strerror}") from None
    sentences = [line for line in lines if line]
    for number, sentence in enumerate(sentences, 1):
        if "|" in sentence:
            raise BuildError(f"{path}: sentence {number} contains '|', the metadata separator")
    if not sentences:
        raise BuildError(f"{path} has no sentences")
    return sentences


def wav_ok(path: str) -> bool:
    """True when ``path`` is a readable, non-empty 16 kHz mono 16-bit wav (header check only)."""
    try:
        with wave.open(path, "rb") as w:
            return (w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1
                    and w.getsampwidth() == 2 and w.getnframes() > 0)
    except (OSError, EOFError, wave.Error):
        return False


def wav_seconds(path: str) -> float:
    with wave.open(path, "rb") as w:
        return w.getnframes() / float(w.getframerate())


def read_metadata(path: str) -> dict[str, str]:
    """``{id: text}`` of an existing metadata.csv (empty when there is none)."""
    out: dict[str, str] = {}
    if not os.path.isfile(path):
        return out
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.rstrip("\r\n").split("|")
            if len(fields) == 3:
                out[fields[0]] = fields[1]
    return out


def write_if_changed(path: str, content: str) -> bool:
    """Atomically replace ``path`` with ``content`` unless it already holds exactly that."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return False
    fd, tmp = tempfile.mkstemp(prefix=".metadata.", suffix=".part", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def synthesise(flite: str, voice: str, text: str, wav_path: str) -> None:
    """flite -> ``wav_path`` through a temporary file in the same folder, renamed when complete."""
    wav_dir = os.path.dirname(wav_path)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=wav_dir)
    os.close(fd)
    resampled = tmp + ".sox.wav"
    try:
        # The text goes through a file, not the command line: no quoting or option-parsing surprises.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", dir=wav_dir,
                                         prefix=".", delete=False) as tf:
            tf.write(text + "\n")
            text_file = tf.name
        try:
            proc = subprocess.run([flite, "-voice", voice, "-f", text_file, "-o", tmp],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        finally:
            os.unlink(text_file)
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise BuildError(f"flite failed on {os.path.basename(wav_path)} (voice {voice!r}): "
                             f"{detail[-1] if detail else 'exit code ' + str(proc.returncode)}")
        with wave.open(tmp, "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
            sox = shutil.which("sox")
            if sox is None:
                raise BuildError(f"voice {voice!r} speaks at {rate} Hz; sox is needed to resample to "
                                 f"{SAMPLE_RATE} Hz (apt-get install sox)")
            subprocess.run([sox, "-q", tmp, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", resampled],
                           check=True)
            os.replace(resampled, tmp)
        if not wav_ok(tmp):
            raise BuildError(f"flite wrote no audio for {os.path.basename(wav_path)}: {text!r}")
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, wav_path)
    finally:
        for leftover in (tmp, resampled):
            if os.path.exists(leftover):
                os.unlink(leftover)


def prepare_set(out_dir: str, prefix: str, sentences: list[str]) -> tuple[list[tuple[str, str, str]], int]:
    """Write ``out_dir``'s metadata.csv; return (the wavs still to synthesise, how many exist).

    Each task is ``(utt_id, text, wav_path)``. A wav whose id now names another sentence, or
    that is not a valid 16 kHz wav, is synthesised again.
    """
    wav_dir = os.path.join(out_dir, "wavs")
    os.makedirs(wav_dir, exist_ok=True)
    for name in os.listdir(wav_dir):  # temporary files of an interrupted earlier run
        if name.startswith(".") and name.endswith((".part", ".txt", ".sox.wav")):
            os.unlink(os.path.join(wav_dir, name))
    metadata = os.path.join(out_dir, "metadata.csv")
    previous = read_metadata(metadata)
    items = [(f"{prefix}-{i:04d}", text) for i, text in enumerate(sentences, 1)]
    todo, present = [], 0
    for utt_id, text in items:
        wav_path = os.path.join(wav_dir, utt_id + ".wav")
        if os.path.exists(wav_path) and previous.get(utt_id, text) == text and wav_ok(wav_path):
            present += 1
        else:
            todo.append((utt_id, text, wav_path))
    # metadata first: if the build is interrupted, the next run still knows which text each
    # existing wav was made from.
    write_if_changed(metadata, "".join(f"{utt_id}|{text}|{text}\n" for utt_id, text in items))
    return todo, present


def check_stamp(out_dir: str, voice: str) -> None:
    """Remember the voice a corpus folder is built with; refuse to mix two voices in one folder."""
    os.makedirs(out_dir, exist_ok=True)
    stamp = os.path.join(out_dir, STAMP)
    want = json.dumps({"voice": voice, "sample_rate": SAMPLE_RATE}, sort_keys=True) + "\n"
    if os.path.isfile(stamp):
        with open(stamp, encoding="utf-8") as f:
            try:
                have = json.load(f)
            except ValueError:
                have = {}
        if have.get("voice", voice) != voice:
            raise BuildError(f"{out_dir} was built with voice {have['voice']!r}, not {voice!r}: "
                             "choose another output folder (or delete this one)")
    write_if_changed(stamp, want)


def total_minutes(out_dir: str, count: int, prefix: str) -> float:
    wav_dir = os.path.join(out_dir, "wavs")
    return sum(wav_seconds(os.path.join(wav_dir, f"{prefix}-{i:04d}.wav")) for i in range(1, count + 1)) / 60.0


def build(out_dir: str, voice: str, limit: int, num_workers: int, sentences_path: str,
          heldout_path: str, flite: str) -> None:
    flite_bin = shutil.which(flite)
    if flite_bin is None:
        raise BuildError(f"flite not found ({flite!r}); install it: apt-get install flite "
                         "(macOS: brew install flite)")
    check_voice(flite_bin, voice)
    sentences = read_sentences(sentences_path)
    heldout = read_sentences(heldout_path)
    overlap = sorted(set(sentences) & set(heldout))
    if overlap:
        raise BuildError(f"{len(overlap)} held-out sentence(s) are also in {sentences_path}, "
                         f"e.g. {overlap[0]!r}")
    if limit > 0:
        sentences, heldout = sentences[:limit], heldout[:limit]
    check_stamp(out_dir, voice)
    sets = [(out_dir, "DEMO", sentences), (os.path.join(out_dir, "heldout"), "HELDOUT", heldout)]
    start = time.monotonic()
    todo: list[tuple[str, str, str]] = []
    present = 0
    for set_dir, prefix, texts in sets:
        set_todo, set_present = prepare_set(set_dir, prefix, texts)
        todo += set_todo
        present += set_present
    log(f"{out_dir}: {len(sentences)} training + {len(heldout)} held-out sentences, voice {voice}; "
        f"{present} wavs already there, {len(todo)} to synthesise with {num_workers} worker(s)")
    done = 0
    step = max(1, len(todo) // 10)
    with concurrent.futures.ThreadPoolExecutor(max_workers=num_workers) as pool:
        futures = [pool.submit(synthesise, flite_bin, voice, text, wav) for _, text, wav in todo]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
                done += 1
                if done % step == 0 or done == len(todo):
                    log(f"  {done}/{len(todo)} wavs ({time.monotonic() - start:.0f} s)")
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    train_min = total_minutes(out_dir, len(sentences), "DEMO")
    heldout_min = total_minutes(sets[1][0], len(heldout), "HELDOUT")
    log(f"done in {time.monotonic() - start:.1f} s: {len(sentences)} training utterances, "
        f"{train_min:.1f} min of audio; {len(heldout)} held-out references, {heldout_min:.1f} min "
        f"(in {os.path.join(out_dir, 'heldout')})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make_corpus.py",
        description="Synthesise the demo sentences with flite into an LJSpeech-1.1 layout (16 kHz).")
    parser.add_argument("out_dir", help="corpus folder to write (created; a rerun resumes)")
    parser.add_argument("--voice", default="slt",
                        help="flite voice name or .flitevox file (default: slt; `flite -lv` lists them)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N sentences of each list (default 0: all)")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="parallel flite processes (default: CPU count, at most 4)")
    parser.add_argument("--sentences", default=os.path.join(HERE, "sentences.txt"),
                        help="training sentences, one a line (default: the shipped list)")
    parser.add_argument("--heldout", default=os.path.join(HERE, "heldout.txt"),
                        help="held-out sentences, one a line (default: the shipped list)")
    parser.add_argument("--flite", default="flite", help="the flite program (default: flite on PATH)")
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error("--limit must be >= 0")
    if args.num_workers < 1:
        parser.error("--num-workers must be >= 1")
    try:
        build(os.path.abspath(args.out_dir), args.voice, args.limit, args.num_workers,
              args.sentences, args.heldout, args.flite)
    except BuildError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
