"""JSUT 1.1: ``jsut_ver1.1/<subset>/wav/<ID>.wav`` + ``<subset>/transcript_utf8.txt`` (``ID:text``), 48 kHz.

Transcripts are read with ``nnmnkwii.datasets.jsut.BaseDataSource`` (it knows this layout and the
id fix-ups of the older release). Its ``validate()`` drops transcript lines without a wav with
only a warning, so it is not called: the pairing is done here, so that every such line is
counted and listed as skipped. Its read errors (missing transcript, a line it cannot split)
become one :class:`CorpusError` naming the file.
"""
from __future__ import annotations

import os
from typing import Sequence

from tacowave.corpora.base import Corpus, CorpusError, Utterance, list_wavs, pair_up, parse_selection

SPEAKER = "jsut"


class JSUT(Corpus):
    """``in_dir`` is ``jsut_ver1.1`` or the folder that holds it.

    ``subsets`` (list or comma-separated string) selects; by default every subset found.
    """

    name = "jsut"
    preset = "jsut"
    options = ("subsets",)

    def __init__(self, in_dir: str, subsets: str | Sequence[str] | None = None) -> None:
        from nnmnkwii.datasets.jsut import available_subsets

        super().__init__(in_dir)
        nested = os.path.join(self.in_dir, "jsut_ver1.1")
        if os.path.isdir(nested):
            self.in_dir = nested
        found = [s for s in available_subsets
                 if os.path.isfile(os.path.join(self.in_dir, s, "transcript_utf8.txt"))]
        selected = parse_selection(subsets) or found
        if not selected:
            raise CorpusError(f"not a JSUT layout: no <subset>/transcript_utf8.txt in {self.in_dir} "
                              f"(subsets: {', '.join(available_subsets)})")
        for subset in selected:
            if subset not in available_subsets:
                raise CorpusError(f"unknown JSUT subset {subset!r}; valid: {', '.join(available_subsets)}")
            for part in ("transcript_utf8.txt", "wav"):
                if not os.path.exists(os.path.join(self.in_dir, subset, part)):
                    raise CorpusError(f"JSUT subset {subset}: {os.path.join(self.in_dir, subset, part)} not found "
                                      f"(subsets found: {', '.join(found) or 'none'})")
        self.subsets = list(dict.fromkeys(selected))

    def utterances(self) -> list[Utterance]:
        from nnmnkwii.datasets.jsut import BaseDataSource

        out: list[Utterance] = []
        for subset in self.subsets:
            transcript = os.path.join(subset, "transcript_utf8.txt")
            try:
                source = BaseDataSource(self.in_dir, subset)
            except (RuntimeError, ValueError, UnicodeDecodeError) as e:
                raise CorpusError(f"cannot read {os.path.join(self.in_dir, transcript)}: {e}") from None
            transcripts = dict(zip((str(n) for n in source.names), (str(t) for t in source.transcriptions)))
            out += pair_up(transcripts, list_wavs(os.path.join(self.in_dir, subset, "wav")), SPEAKER, transcript)
        return out
