"""The preprocessing driver: a corpus's utterances -> a data dir (DESIGN.md, "The data dir").

::

    out_dir/meta.json            corpus, preset audio + text sections, front-end and symbols,
                                 speakers, counts, tool version
    out_dir/{train,dev,eval}.txt utt_id|speaker|n_samples|n_frames|text|phones
    out_dir/audio/<utt_id>.npy   float32 waveform in [-1, 1], n_samples = n_frames * hop
    out_dir/mel/<utt_id>.npy     float32 mel, (n_frames, num_mels)
    out_dir/skipped.txt          utt_id|reason: detail, one line per utterance left out
    out_dir/unknown_chars.txt    utt_id|characters the front-end dropped from its text

How it runs:

- The parent lists the corpus, runs the text front-end and the resume check (cheap, and it
  keeps heavy front-end resources out of the workers), and sends only the utterances that need
  audio work, in chunks, to worker processes (``forkserver`` where the platform has it, else
  ``spawn``; never a fork of a parent that may hold threads). A worker writes that utterance's
  two ``.npy`` files atomically itself and sends back a small :class:`Outcome`: no process
  holds more than one clip, so memory is bounded by ``workers x one clip``. librosa's imports
  (seconds of numba cache loading) happen once in the fork server, not once per worker.
- Resumable: an utterance whose two ``.npy`` files exist with consistent headers is not
  recomputed; ``overwrite=True`` recomputes all. ``out_dir/.features.json`` records the audio
  section the arrays were made with, so a rerun with a different one is refused instead of
  mixing two feature definitions in one data dir.
- Bad input never stops the run: every problem becomes a skipped utterance with a
  :class:`~tacowave.corpora.base.SkipReason`. Lists, ``skipped.txt`` and ``meta.json`` are
  written atomically at the end, and only when their content changed.
- The dev/eval split is drawn per speaker from a seeded shuffle of the sorted ids (so every
  speaker keeps utterances in train), unless the corpus has an official split.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from tacowave.audio import AudioError, atomic_write, load_training_wav, melspectrogram, save_npy
from tacowave.corpora.base import SPLITS, Corpus, SkipReason, Utterance
from tacowave.hparams import AudioConfig, HParams

STAMP = ".features.json"
#: Held-out sets drawn by fraction are capped at this many utterances each.
MAX_HELD_OUT = 100


class PreprocessError(ValueError):
    """The run cannot go on (out_dir made with another audio section, nothing usable, a dead worker)."""


@dataclass(frozen=True)
class SplitSpec:
    """How dev and eval are drawn for corpora without an official split.

    A count, when given, is exact; otherwise ``fraction`` of all utterances, capped at
    :data:`MAX_HELD_OUT` and at least 1 once there are 3 or more utterances.
    """

    dev_fraction: float = 0.05
    eval_fraction: float = 0.05
    dev_count: int | None = None
    eval_count: int | None = None
    seed: int = 1234


@dataclass
class Outcome:
    """The fate of one utterance: its list line, or why it is skipped (small: no arrays)."""

    utt_id: str
    speaker: str
    split: str | None
    text: str = ""
    phones: str = ""
    n_samples: int = 0
    n_frames: int = 0
    skip: tuple[SkipReason, str] | None = None
    unknown: list[tuple[int, str]] = field(default_factory=list)
    reused: bool = False


@dataclass
class Summary:
    """The result of :func:`preprocess`, for the CLI's report and for tests."""

    out_dir: str
    lists: dict[str, list[Outcome]]
    skipped: list[Outcome]
    unknown: dict[str, list[tuple[int, str]]]
    seconds: dict[str, float]
    computed: int
    reused: int


# --------------------------------------------------------------------------- one utterance


def list_text(text: str) -> str:
    """A transcript as the ``text`` column stores it: one line, no '|', single spaces."""
    return " ".join(text.replace("|", " ").split())


def existing_shapes(out_dir: str, utt_id: str, cfg: AudioConfig) -> tuple[int, int] | None:
    """``(n_samples, n_frames)`` when both arrays of ``utt_id`` exist with consistent headers.

    Only the ``.npy`` headers are read (memory map), so checking a whole corpus is cheap; a
    truncated file fails the map and counts as absent.
    """
    try:
        wav = np.load(os.path.join(out_dir, "audio", utt_id + ".npy"), mmap_mode="r")
        mel = np.load(os.path.join(out_dir, "mel", utt_id + ".npy"), mmap_mode="r")
    except (OSError, ValueError):
        return None
    if wav.dtype != np.float32 or mel.dtype != np.float32 or wav.ndim != 1 or wav.shape[0] == 0:
        return None
    n_frames = wav.shape[0] // cfg.hop_size
    if wav.shape[0] != n_frames * cfg.hop_size or mel.shape != (n_frames, cfg.num_mels):
        return None
    return wav.shape[0], n_frames


def text_outcome(utt: Utterance, frontend: Any) -> Outcome:
    """The text half of an utterance: its phones, or why it is skipped before any audio is read."""
    from tacowave.text import join_tokens

    out = Outcome(utt.utt_id, utt.speaker, utt.split, text=list_text(utt.text or ""))
    if utt.problem is not None:
        out.skip = utt.problem
        return out
    if not out.text:
        out.skip = (SkipReason.EMPTY_TEXT, "the transcript is empty")
        return out
    try:
        if utt.pinyin is not None and hasattr(frontend, "pinyin_to_tokens"):
            tokens, out.unknown = frontend.pinyin_to_tokens(utt.pinyin)
        else:
            tokens, out.unknown = frontend.text_to_tokens(utt.text)
    except Exception as e:  # noqa: BLE001 - front-ends never raise by contract; a bug skips one line
        out.skip = (SkipReason.FAILED, f"{frontend.name} front-end: {type(e).__name__}: {e}")
        return out
    if not tokens:
        dropped = "".join(dict.fromkeys(ch for _, ch in out.unknown))
        out.skip = (SkipReason.NO_SYMBOLS, f"nothing left after the {frontend.name} front-end"
                                           + (f" (dropped {dropped!r})" if dropped else ""))
        return out
    out.phones = join_tokens(tokens)
    return out


def audio_outcome(wav_path: str, out: Outcome, cfg: AudioConfig, out_dir: str) -> Outcome:
    """The audio half: write ``audio/`` and ``mel/`` arrays of ``out.utt_id``, fill in the sizes.

    Never raises: an unexpected error becomes a ``failed`` skip, so that one odd file cannot
    end a day-long run.
    """
    try:
        return _compute_audio(wav_path, out, cfg, out_dir)
    except Exception as e:  # noqa: BLE001 - see the docstring
        out.skip = (SkipReason.FAILED, f"{wav_path}: {type(e).__name__}: {e}")
        return out


def _compute_audio(wav_path: str, out: Outcome, cfg: AudioConfig, out_dir: str) -> Outcome:
    try:
        wav = load_training_wav(wav_path, cfg)
    except AudioError as e:
        out.skip = (SkipReason.UNREADABLE, str(e))
        return out
    if not np.isfinite(wav).all():
        out.skip = (SkipReason.NOT_FINITE, f"{wav_path} holds NaN or infinite samples")
        return out
    seconds = len(wav) / cfg.sample_rate
    if seconds < cfg.min_duration_s:
        out.skip = (SkipReason.TOO_SHORT, f"{seconds:.2f} s after trimming < audio.min_duration_s "
                                          f"= {cfg.min_duration_s} s")
        return out
    if seconds > cfg.max_duration_s:
        out.skip = (SkipReason.TOO_LONG, f"{seconds:.2f} s after trimming > audio.max_duration_s "
                                         f"= {cfg.max_duration_s} s")
        return out
    if not np.any(wav):
        out.skip = (SkipReason.SILENT, f"{wav_path} is all zeros")
        return out
    mel = melspectrogram(wav, cfg)
    n_frames = len(wav) // cfg.hop_size
    if len(wav) != n_frames * cfg.hop_size or mel.shape != (n_frames, cfg.num_mels):
        raise AssertionError(f"feature shapes disagree: {len(wav)} samples, mel {mel.shape}, "
                             f"hop {cfg.hop_size}")
    if not np.isfinite(mel).all():
        out.skip = (SkipReason.NOT_FINITE, "the mel spectrogram has NaN or infinite values")
        return out
    # Only reachable with rescaling disabled: float wav files may exceed full scale.
    wav = np.clip(wav, -1.0, 1.0).astype(np.float32, copy=False)
    save_npy(wav, os.path.join(out_dir, "audio", out.utt_id + ".npy"))
    save_npy(mel, os.path.join(out_dir, "mel", out.utt_id + ".npy"))
    out.n_samples, out.n_frames = len(wav), n_frames
    return out


# --------------------------------------------------------------------------- worker processes

AudioTask = tuple[str, Outcome]  # (wav path, the utterance's outcome so far)
_WORKER_ARGS: tuple[AudioConfig, str] | None = None


def _init_worker(cfg: AudioConfig, out_dir: str) -> None:
    from threadpoolctl import threadpool_limits

    global _WORKER_ARGS
    # Parallelism is across processes: a multi-threaded BLAS in every worker (the mel matmul)
    # oversubscribes the cores and was measured 70x slower per call on a busy 2-core machine.
    threadpool_limits(limits=1)
    _WORKER_ARGS = (cfg, out_dir)


def _audio_chunk(chunk: list[AudioTask]) -> list[Outcome]:
    assert _WORKER_ARGS is not None, "worker initializer did not run"
    return [audio_outcome(path, out, *_WORKER_ARGS) for path, out in chunk]


def default_num_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _mp_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` (warm, thread-safe forks) where the platform has it, else ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Imported once in the server, so every worker forked from it starts warm: librosa loads
    # its modules lazily, and the first trim/STFT call otherwise costs seconds per worker.
    ctx.set_forkserver_preload(["tacowave.features", "soundfile", "librosa.effects",
                                "librosa.feature.spectral", "librosa.filters"])
    return ctx


def run_utterances(utts: Sequence[Utterance], frontend: Any, cfg: AudioConfig, out_dir: str,
                   overwrite: bool, num_workers: int) -> Iterator[Outcome]:
    """Process ``utts``; yields each :class:`Outcome` as it is final (in no particular order).

    The text front-end and the resume check run here, in the parent: they are cheap, and it
    keeps heavy front-end resources (inflect, pyopenjtalk, pypinyin) out of the workers. Only
    utterances that need audio work go to the ``num_workers`` processes (1: this process), which
    are started on the first such utterance, so a fully resumed run starts none.
    """
    from threadpoolctl import threadpool_limits

    def plan() -> Iterator[tuple[Outcome, str | None]]:
        for utt in utts:
            out = text_outcome(utt, frontend)
            shapes = None if out.skip or overwrite else existing_shapes(out_dir, out.utt_id, cfg)
            if shapes is not None:
                out.n_samples, out.n_frames = shapes
                out.reused = True
            yield out, (utt.wav_path if out.skip is None and shapes is None else None)

    if num_workers <= 1:
        with threadpool_limits(limits=1):  # see _init_worker
            for out, wav_path in plan():
                yield out if wav_path is None else audio_outcome(wav_path, out, cfg, out_dir)
        return

    size = max(1, min(32, len(utts) // (num_workers * 8)))
    pool: ProcessPoolExecutor | None = None
    pending: set[Future] = set()
    chunk: list[AudioTask] = []

    def submit() -> None:
        nonlocal pool, chunk
        if pool is None:
            pool = ProcessPoolExecutor(num_workers, mp_context=_mp_context(), initializer=_init_worker,
                                       initargs=(cfg, out_dir))
        pending.add(pool.submit(_audio_chunk, chunk))
        chunk = []

    try:
        for out, wav_path in plan():
            if wav_path is None:
                yield out
                continue
            chunk.append((wav_path, out))
            if len(chunk) == size:
                submit()
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    yield from future.result()
        if chunk:
            submit()
        for future in as_completed(pending):
            yield from future.result()
    except BrokenProcessPool:
        raise PreprocessError("a worker process died (out of memory?); finished utterances are kept: "
                              "rerun the same command to resume, with fewer --num-workers") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- the split


def held_out_size(total: int, fraction: float, count: int | None) -> int:
    """Size of a held-out set: ``count`` if given, else ``fraction`` of ``total`` capped at
    :data:`MAX_HELD_OUT`, at least 1 once ``total >= 3``."""
    if count is not None:
        return count
    if fraction <= 0:
        return 0
    size = min(MAX_HELD_OUT, round(fraction * total))
    return max(size, 1) if total >= 3 else size


def assign_splits(kept: Sequence[Outcome], spec: SplitSpec, official: bool) -> dict[str, list[Outcome]]:
    """``{"train": [...], "dev": [...], "eval": [...]}``, each sorted by utt_id.

    Without an official split: each speaker's sorted ids are shuffled with a generator seeded
    by ``(seed, speaker)``; the held-out sets are then filled round-robin over the speakers (in
    a seeded order, so they spread evenly and no speaker is favoured by its name), never taking
    a speaker's last utterance (so every speaker is in train).
    """
    lists: dict[str, list[Outcome]] = {name: [] for name in SPLITS}
    if official:
        for o in kept:
            lists[o.split].append(o)
    else:
        per_speaker: dict[str, list[Outcome]] = {}
        for o in sorted(kept, key=lambda o: o.utt_id):
            per_speaker.setdefault(o.speaker, []).append(o)
        for speaker, items in per_speaker.items():
            random.Random(f"{spec.seed}/{speaker}").shuffle(items)
        wanted = {"dev": held_out_size(len(kept), spec.dev_fraction, spec.dev_count),
                  "eval": held_out_size(len(kept), spec.eval_fraction, spec.eval_count)}
        left = {speaker: len(items) for speaker, items in per_speaker.items()}
        chosen: set[str] = set()
        speakers = sorted(per_speaker)
        random.Random(f"{spec.seed}/speakers").shuffle(speakers)
        rounds = max((len(items) for items in per_speaker.values()), default=0)
        order = [per_speaker[spk][r] for r in range(rounds) for spk in speakers if r < len(per_speaker[spk])]
        for o in order:
            target = next((name for name in ("dev", "eval") if len(lists[name]) < wanted[name]), None)
            if target is None:
                break
            if left[o.speaker] > 1:
                lists[target].append(o)
                chosen.add(o.utt_id)
                left[o.speaker] -= 1
        lists["train"] = [o for o in kept if o.utt_id not in chosen]
    return {name: sorted(items, key=lambda o: o.utt_id) for name, items in lists.items()}


# --------------------------------------------------------------------------- writing


def write_text_if_changed(path: str, text: str) -> None:
    """Atomically replace ``path`` with ``text`` unless it already holds exactly that."""
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except (OSError, UnicodeDecodeError):
        pass

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def list_line(o: Outcome) -> str:
    """``utt_id|speaker|n_samples|n_frames|text|phones`` and a newline."""
    return f"{o.utt_id}|{o.speaker}|{o.n_samples}|{o.n_frames}|{o.text}|{o.phones}\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _unknown_line(utt_id: str, unknown: list[tuple[int, str]]) -> str:
    chars = dict.fromkeys(ch for _, ch in unknown)
    return f"{utt_id}|" + " ".join(f"{ch!r}(U+{ord(ch):04X})" for ch in chars) + "\n"


def prepare_out_dir(out_dir: str, audio: AudioConfig, overwrite: bool) -> None:
    """Create the layout and make sure every array in it is (or will be) of ``audio``'s definition."""
    for sub in ("audio", "mel"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    stamp_path = os.path.join(out_dir, STAMP)
    want = {"audio": dataclasses.asdict(audio)}
    try:
        with open(stamp_path, encoding="utf-8") as f:
            have = json.load(f)
    except (OSError, ValueError):
        have = None
    if have == want:
        return
    arrays = [os.path.join(out_dir, sub, name) for sub in ("audio", "mel")
              for name in os.listdir(os.path.join(out_dir, sub)) if name.endswith(".npy")]
    if arrays:
        if not overwrite:
            if isinstance(have, dict) and isinstance(have.get("audio"), dict):
                diff = ", ".join(f"{k}: {have['audio'].get(k)!r} -> {v!r}"
                                 for k, v in want["audio"].items() if have["audio"].get(k) != v)
                why = f"computed with a different audio section ({diff})"
            else:
                why = f"of unknown origin (no valid {STAMP})"
            raise PreprocessError(f"{out_dir} holds features {why}; pass --overwrite to recompute "
                                  f"them all, or choose another out_dir")
        # Removed before the new stamp is written, so an interrupted --overwrite run can never
        # leave old-definition arrays that a later resume would take as complete.
        for path in arrays:
            os.unlink(path)
    write_text_if_changed(stamp_path, json.dumps(want, indent=2) + "\n")


def _tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tacowave")
    except PackageNotFoundError:
        return "unknown"


def build_meta(corpus: Corpus, hp: HParams, preset: str, frontend_info: dict[str, Any], summary: Summary,
               official: bool, spec: SplitSpec) -> dict[str, Any]:
    """The content of meta.json (no timestamps, so an unchanged rerun leaves it untouched)."""
    sections = hp.to_dict()
    kept = [o for items in summary.lists.values() for o in items]
    return {
        "corpus": corpus.name,
        "in_dir": corpus.in_dir,
        "preset": preset,
        "audio": sections["audio"],
        "text": sections["text"],
        **frontend_info,
        "speakers": sorted({o.speaker for o in kept}),
        "split": "official" if official else {"seed": spec.seed, "dev": len(summary.lists["dev"]),
                                              "eval": len(summary.lists["eval"])},
        "counts": {**{name: len(items) for name, items in summary.lists.items()},
                   "skipped": len(summary.skipped),
                   "total_seconds": round(sum(summary.seconds.values()), 3),
                   **{f"{name}_seconds": round(s, 3) for name, s in summary.seconds.items()}},
        "tacowave_version": _tool_version(),
    }


# --------------------------------------------------------------------------- the driver


def _mark_duplicates(utts: Sequence[Utterance]) -> list[Utterance]:
    seen: set[str] = set()
    out = []
    for utt in utts:
        if utt.utt_id in seen and utt.problem is None:
            utt = dataclasses.replace(utt, problem=(SkipReason.DUPLICATE, f"{utt.wav_path}: an earlier "
                                                                          f"utterance has the same id"))
        seen.add(utt.utt_id)
        out.append(utt)
    return out


def preprocess(corpus: Corpus, out_dir: str, hp: HParams, *, preset: str = "",
               num_workers: int | None = None, overwrite: bool = False, split: SplitSpec = SplitSpec(),
               progress: bool = True) -> Summary:
    """Write the data dir for ``corpus`` under ``out_dir`` with the features ``hp.audio`` defines.

    Raises :class:`PreprocessError` when out_dir holds arrays of another audio definition
    (without ``overwrite``), when a worker process dies, or when no utterance is usable (after
    writing ``skipped.txt``, which says why).
    """
    from tqdm import tqdm

    from tacowave.text import frontend_from_config

    try:
        frontend = frontend_from_config(hp.text)
    except ValueError as e:  # an unknown text.frontend name in the preset
        raise PreprocessError(f"text.frontend: {e}") from None
    utts = _mark_duplicates(corpus.utterances())
    out_dir = os.path.abspath(out_dir)
    try:
        prepare_out_dir(out_dir, hp.audio, overwrite)
    except OSError as e:  # out_dir is a file, not writable, ...
        raise PreprocessError(f"cannot use {out_dir} as the data dir: {e}") from None

    workers = num_workers or default_num_workers()
    outcomes = []
    with tqdm(total=len(utts), unit="utt", desc=f"preprocess {corpus.name}", disable=not progress) as bar:
        for outcome in run_utterances(utts, frontend, hp.audio, out_dir, overwrite, workers):
            outcomes.append(outcome)
            bar.update(1)
    outcomes.sort(key=lambda o: o.utt_id)

    kept = [o for o in outcomes if o.skip is None]
    skipped = [o for o in outcomes if o.skip is not None]
    unknown = {o.utt_id: o.unknown for o in outcomes if o.unknown}
    write_text_if_changed(os.path.join(out_dir, "skipped.txt"), "".join(
        f"{o.utt_id}|{o.skip[0].value}: {_one_line(o.skip[1])}\n" for o in skipped))
    write_text_if_changed(os.path.join(out_dir, "unknown_chars.txt"), "".join(
        _unknown_line(utt_id, chars) for utt_id, chars in unknown.items()))
    if not kept:
        raise PreprocessError(f"no usable utterance among {len(outcomes)} in {corpus.in_dir}; "
                              f"see {os.path.join(out_dir, 'skipped.txt')}")

    lists = assign_splits(kept, split, corpus.official_split)
    summary = Summary(out_dir=out_dir, lists=lists, skipped=skipped, unknown=unknown,
                      seconds={name: sum(o.n_samples for o in items) / hp.audio.sample_rate
                               for name, items in lists.items()},
                      computed=sum(not o.reused for o in kept), reused=sum(o.reused for o in kept))
    for name, items in lists.items():
        write_text_if_changed(os.path.join(out_dir, f"{name}.txt"), "".join(map(list_line, items)))
    meta = build_meta(corpus, hp, preset, frontend.describe(), summary, corpus.official_split, split)
    write_text_if_changed(os.path.join(out_dir, "meta.json"),
                          json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return summary
