"""LJSpeech-1.1: ``metadata.csv`` (``id|text|normalized text``) and ``wavs/<id>.wav``, 22.05 kHz.

The transcript is parsed here rather than through ``nnmnkwii.datasets.ljspeech``: that reader
``assert``s that every line has exactly three fields, so a single blank or damaged line stops
the whole read with a bare ``AssertionError`` (and under ``python -O`` builds a ragged array).
Here such a line becomes one skipped utterance with its line number.
"""
from __future__ import annotations

import os

from tacowave.corpora.base import Corpus, CorpusError, Utterance, list_wavs, pair_up

SPEAKER = "ljspeech"


class LJSpeech(Corpus):
    """``in_dir`` is ``LJSpeech-1.1`` or the folder that holds it; the normalized text is used."""

    name = "ljspeech"
    preset = "ljspeech"

    def __init__(self, in_dir: str) -> None:
        super().__init__(in_dir)
        nested = os.path.join(self.in_dir, "LJSpeech-1.1")
        if not os.path.isfile(os.path.join(self.in_dir, "metadata.csv")) and os.path.isdir(nested):
            self.in_dir = nested
        self.metadata = os.path.join(self.in_dir, "metadata.csv")
        if not os.path.isfile(self.metadata):
            raise CorpusError(f"not an LJSpeech layout: {self.metadata} not found")
        self.wav_dir = os.path.join(self.in_dir, "wavs")
        if not os.path.isdir(self.wav_dir):
            raise CorpusError(f"not an LJSpeech layout: {self.wav_dir} not found")

    def utterances(self) -> list[Utterance]:
        transcripts: dict[str, str] = {}
        malformed: dict[str, str] = {}
        with open(self.metadata, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                # Quotes are literal in LJSpeech (a text may start with '"'): plain split, no csv.
                fields = line.split("|")
                stem = fields[0].strip()
                if len(fields) == 3 and stem:
                    transcripts[stem] = fields[2]
                else:
                    malformed[stem or f"metadata.csv line {number}"] = (
                        f"metadata.csv line {number} has {len(fields)} '|'-separated fields, expected 3")
        return pair_up(transcripts, list_wavs(self.wav_dir), SPEAKER, "metadata.csv", malformed=malformed)
