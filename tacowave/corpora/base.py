"""What every corpus reader shares: the utterance record, skip reasons, the reader interface.

A corpus reader only *lists* utterances: it reads transcripts and file names, never audio.
Everything it cannot pair up (a transcript line without a wav, a wav without a transcript, a
malformed line) still comes back as an :class:`Utterance` with ``problem`` set, so the
preprocessing driver can count it and list it in ``skipped.txt`` instead of losing it silently.
"""
from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass
from typing import ClassVar, Sequence


class CorpusError(ValueError):
    """The input does not look like the corpus (missing folder / transcript) or an option is wrong."""


class SkipReason(str, enum.Enum):
    """Why an utterance is left out of the data dir; the value starts its ``skipped.txt`` line."""

    MISSING_WAV = "missing wav"
    MISSING_TRANSCRIPT = "missing transcript"
    MALFORMED = "malformed transcript"
    DUPLICATE = "duplicate utterance id"
    NOT_IN_SPLIT = "not in the official split"
    UNREADABLE = "unreadable audio"
    SILENT = "silent audio"
    EMPTY_TEXT = "empty text"
    NO_SYMBOLS = "no known symbols"
    TOO_SHORT = "too short"
    TOO_LONG = "too long"
    NOT_FINITE = "non-finite values"
    FAILED = "failed"


#: The three lists of a data dir, in the order they are written and reported.
SPLITS = ("train", "dev", "eval")


@dataclass(frozen=True)
class Utterance:
    """One transcript/wav pair as a corpus lists it.

    ``wav_path`` is None for a transcript line without audio, ``text`` is None for audio
    without a transcript; ``problem`` then says why (and the driver skips the utterance).
    ``pinyin`` is a pronunciation the corpus ships (THCHS-30), read instead of ``text`` by a
    front-end that can. ``split`` is the corpus's official split ("train" / "dev" / "eval"),
    None where the driver draws one.
    """

    utt_id: str
    speaker: str
    wav_path: str | None
    text: str | None
    pinyin: str | None = None
    split: str | None = None
    problem: tuple[SkipReason, str] | None = None


class Corpus:
    """A corpus reader: ``Corpus(in_dir, **options).utterances()`` lists every utterance.

    Subclasses set ``name``, ``preset`` (the shipped preset that fits the corpus, None when the
    user must choose), ``options`` (the keyword options the constructor accepts, e.g.
    ``speakers``) and ``official_split``; the constructor raises :class:`CorpusError` when
    ``in_dir`` does not have the corpus's layout.
    """

    name: ClassVar[str]
    preset: ClassVar[str | None]
    options: ClassVar[tuple[str, ...]] = ()
    official_split: ClassVar[bool] = False

    def __init__(self, in_dir: str) -> None:
        if not os.path.isdir(in_dir):
            raise CorpusError(f"input directory not found: {in_dir}")
        self.in_dir = os.path.abspath(in_dir)

    def utterances(self) -> list[Utterance]:
        """Every utterance of the selected part of the corpus, in a stable order."""
        raise NotImplementedError


_UNSAFE_ID_CHARS = re.compile(r"[^\w.\-]")


def safe_id(name: str) -> str:
    """An utterance id usable as a file name and a list field: no separators, spaces or '|'."""
    return _UNSAFE_ID_CHARS.sub("_", name)


def parse_selection(value: str | Sequence[str] | None) -> list[str] | None:
    """``"awb, slt"`` or ``["awb", "slt"]`` -> ``["awb", "slt"]``; None or empty -> None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [item.strip() for item in items if item.strip()]
    return items or None


def list_wavs(directory: str) -> dict[str, str]:
    """``{stem: path}`` of the ``*.wav`` files (or links) directly inside ``directory``."""
    if not os.path.isdir(directory):
        return {}
    return {name[:-4]: os.path.join(directory, name)
            for name in sorted(os.listdir(directory)) if name.lower().endswith(".wav")}


def pair_up(transcripts: dict[str, str], wavs: dict[str, str], speaker: str, transcript_file: str,
            utt_id_prefix: str = "", malformed: dict[str, str] | None = None) -> list[Utterance]:
    """Join ``{stem: text}`` with ``{stem: wav path}``; what does not pair up becomes a problem record.

    ``malformed`` maps the stem (or, when the line has none, its location) of each transcript
    line that could not be parsed to why; it is reported as such rather than as a wav without
    a transcript. The result is sorted by stem, so every reader lists in a stable order.
    """
    malformed = malformed or {}
    out = []
    for stem in sorted(set(transcripts) | set(wavs) | set(malformed)):
        utt_id = safe_id(utt_id_prefix + stem)
        text, wav = transcripts.get(stem), wavs.get(stem)
        problem = None
        if text is None and stem in malformed:
            problem = (SkipReason.MALFORMED, malformed[stem])
        elif wav is None:
            problem = (SkipReason.MISSING_WAV, f"{stem}.wav not found for the line in {transcript_file}")
        elif text is None:
            problem = (SkipReason.MISSING_TRANSCRIPT, f"{wav} has no line in {transcript_file}")
        out.append(Utterance(utt_id, speaker, wav, text, problem=problem))
    return out
