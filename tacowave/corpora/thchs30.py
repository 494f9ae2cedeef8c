"""THCHS-30: ``data_thchs30/data/<SPK>_<N>.wav`` + ``<SPK>_<N>.wav.trn`` and the official split.

A ``.trn`` holds three lines: hanzi, tone-numbered pinyin, phones. ``train/``, ``dev/`` and
``test/`` list the official split with entries named like the data files; in the released
archive a ``.trn`` there is either a symlink or a one-line file holding a relative path to the
real one in ``../data/``, and both are followed. ``test/`` becomes the ``eval`` list.
(nnmnkwii has no THCHS-30 reader.)
"""
from __future__ import annotations

import os

from tacowave.corpora.base import Corpus, CorpusError, SkipReason, Utterance, safe_id

#: Official split folder -> data dir list.
SPLIT_DIRS = {"train": "train", "dev": "dev", "test": "eval"}


def _stems(directory: str) -> set[str]:
    """Utterance stems of the ``X.wav`` / ``X.wav.trn`` entries (files, links, dangling links too)."""
    if not os.path.isdir(directory):
        return set()
    out = set()
    for name in os.listdir(directory):
        if name.endswith(".wav"):
            out.add(name[:-4])
        elif name.endswith(".wav.trn"):
            out.add(name[:-8])
    return out


def _read_trn(path: str, follow: bool = True) -> list[str] | None:
    """The non-empty lines of a transcript, following a one-line relative-path pointer once."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    if follow and len(lines) == 1 and lines[0].endswith(".trn"):
        return _read_trn(os.path.join(os.path.dirname(path), lines[0]), follow=False)
    return lines


class THCHS30(Corpus):
    """``in_dir`` is ``data_thchs30`` or the folder that holds it. The speaker is the id's prefix."""

    name = "thchs30"
    preset = "thchs30"
    official_split = True

    def __init__(self, in_dir: str) -> None:
        super().__init__(in_dir)
        nested = os.path.join(self.in_dir, "data_thchs30")
        if os.path.isdir(nested):
            self.in_dir = nested
        self.data_dir = os.path.join(self.in_dir, "data")
        if not os.path.isdir(self.data_dir):
            raise CorpusError(f"not a THCHS-30 layout: {self.data_dir} not found")
        if not any(os.path.isdir(os.path.join(self.in_dir, d)) for d in SPLIT_DIRS):
            raise CorpusError(f"not a THCHS-30 layout: none of the official split folders "
                              f"{', '.join(SPLIT_DIRS)} found in {self.in_dir}")

    def utterances(self) -> list[Utterance]:
        membership: dict[str, list[str]] = {}
        for folder in SPLIT_DIRS:
            for stem in _stems(os.path.join(self.in_dir, folder)):
                membership.setdefault(stem, []).append(folder)
        return [self._utterance(stem, membership.get(stem, []))
                for stem in sorted(_stems(self.data_dir) | set(membership))]

    def _utterance(self, stem: str, folders: list[str]) -> Utterance:
        utt_id, speaker = safe_id(stem), stem.split("_", 1)[0]
        split_dir = os.path.join(self.in_dir, folders[0]) if folders else None
        wav = next((p for p in (os.path.join(d, stem + ".wav") for d in (self.data_dir, split_dir) if d)
                    if os.path.isfile(p)), None)
        lines = _read_trn(os.path.join(self.data_dir, stem + ".wav.trn"))
        if lines is None and split_dir:
            lines = _read_trn(os.path.join(split_dir, stem + ".wav.trn"))
        problem = None
        if len(folders) > 1:
            problem = (SkipReason.DUPLICATE, f"{stem} is listed in {' and '.join(folders)}")
        elif not folders:
            problem = (SkipReason.NOT_IN_SPLIT, f"{stem} is in none of {', '.join(SPLIT_DIRS)}")
        elif wav is None:
            problem = (SkipReason.MISSING_WAV, f"{stem}.wav not found in data/ or {folders[0]}/")
        elif lines is None:
            problem = (SkipReason.MISSING_TRANSCRIPT, f"{stem}.wav.trn not found (or a dangling link) "
                                                      f"in data/ or {folders[0]}/")
        elif len(lines) < 2:
            problem = (SkipReason.MALFORMED, f"{stem}.wav.trn has no pinyin line (line 2)")
        text, pinyin = (lines[0], lines[1]) if lines and len(lines) >= 2 else (None, None)
        return Utterance(utt_id, speaker, wav, text, pinyin=pinyin,
                         split=SPLIT_DIRS[folders[0]] if folders else None, problem=problem)
