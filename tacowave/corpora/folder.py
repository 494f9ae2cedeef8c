"""Any folder of wavs plus ``metadata.csv``: ``file|text`` or ``file|speaker|text`` per line.

``file`` is relative to the folder (or to its ``wavs/``), with or without ``.wav``; any format
libsndfile reads works when the extension is given. The utterance id is that relative path
without extension, separators turned into ``_``. Lines without a speaker use ``default``.
Wavs anywhere below the folder that no line names are reported as missing a transcript.
``speakers`` keeps only the lines of those speakers.
There is no fitting preset to guess (the front-end depends on the language), so the CLI asks
for ``--preset``.
"""
from __future__ import annotations

import os

from typing import Sequence

from tacowave.corpora.base import Corpus, CorpusError, SkipReason, Utterance, parse_selection, safe_id

DEFAULT_SPEAKER = "default"
_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class Folder(Corpus):
    """``in_dir`` holds ``metadata.csv`` and the audio it names."""

    name = "folder"
    preset = None
    options = ("speakers",)

    def __init__(self, in_dir: str, speakers: str | Sequence[str] | None = None) -> None:
        super().__init__(in_dir)
        self.speakers = parse_selection(speakers)
        self.metadata = os.path.join(self.in_dir, "metadata.csv")
        if not os.path.isfile(self.metadata):
            raise CorpusError(f"not a folder corpus: {self.metadata} not found "
                              f"(expected lines 'file|text' or 'file|speaker|text')")

    def _resolve(self, name: str) -> str | None:
        for base in (self.in_dir, os.path.join(self.in_dir, "wavs")):
            for candidate in (name, name + ".wav"):
                path = os.path.join(base, candidate)
                if os.path.isfile(path):
                    return path
        return None

    def _all_wavs(self) -> list[str]:
        found = []
        for root, dirs, files in os.walk(self.in_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(".wav")]
        return found

    def utterances(self) -> list[Utterance]:
        out: list[Utterance] = []
        named: set[str] = set()
        with open(self.metadata, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = [field.strip() for field in line.split("|")]
                name = fields[0]
                utt_id = safe_id(os.path.splitext(name)[0] if name.lower().endswith(_AUDIO_EXTENSIONS) else name)
                utt_id = utt_id or f"metadata.csv_line_{number}"
                if len(fields) not in (2, 3) or not name:
                    out.append(Utterance(utt_id, DEFAULT_SPEAKER, None, None, problem=(
                        SkipReason.MALFORMED, f"metadata.csv line {number} has {len(fields)} '|'-separated "
                                              f"fields, expected 'file|text' or 'file|speaker|text'")))
                    continue
                speaker = safe_id(fields[1]) if len(fields) == 3 and fields[1] else DEFAULT_SPEAKER
                path = self._resolve(name)
                if path is not None:
                    named.add(os.path.abspath(path))
                problem = None if path else (SkipReason.MISSING_WAV, f"{name} (line {number}) not found "
                                                                       f"in {self.in_dir} or its wavs/")
                out.append(Utterance(utt_id, speaker, path, fields[-1], problem=problem))
        for path in self._all_wavs():
            if os.path.abspath(path) not in named:
                rel = os.path.relpath(path, self.in_dir)
                out.append(Utterance(safe_id(os.path.splitext(rel)[0]), DEFAULT_SPEAKER, path, None, problem=(
                    SkipReason.MISSING_TRANSCRIPT, f"{rel} has no line in metadata.csv")))
        if self.speakers is None:
            return out
        found = sorted({u.speaker for u in out if u.text is not None})
        missing = [spk for spk in self.speakers if spk not in found]
        if missing:
            raise CorpusError(f"speaker(s) {', '.join(missing)} not in {self.metadata} "
                              f"(speakers found: {', '.join(found) or 'none'})")
        return [u for u in out if u.speaker in self.speakers]
