"""CMU Arctic: ``cmu_us_<spk>_arctic/wav/arctic_a0001.wav`` + ``cmu_us_<spk>_arctic/etc/txt.done.data``.

Wav files are listed with ``nnmnkwii.datasets.cmu_arctic.WavFileDataSource`` (it walks exactly
this layout, sorted, per speaker). nnmnkwii has no transcript reader for Arctic, so
``txt.done.data`` (lines like ``( arctic_a0001 "Author of the danger trail." )``) is parsed here.
Utterance ids carry the speaker (``slt_arctic_a0001``) so they stay unique across speakers.
"""
from __future__ import annotations

import os
import re
from typing import Sequence

from tacowave.corpora.base import Corpus, CorpusError, Utterance, pair_up, parse_selection

_DIR = re.compile(r"^cmu_us_(\w+?)_arctic$")
_LINE = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def speaker_dir(root: str, speaker: str) -> str:
    return os.path.join(root, f"cmu_us_{speaker}_arctic")


class CMUArctic(Corpus):
    """``in_dir`` holds ``cmu_us_<spk>_arctic`` folders, or is one of them.

    ``speakers`` (list or comma-separated string) selects; by default every speaker found.
    """

    name = "cmu_arctic"
    preset = "cmu_arctic"
    options = ("speakers",)

    def __init__(self, in_dir: str, speakers: str | Sequence[str] | None = None) -> None:
        from nnmnkwii.datasets.cmu_arctic import available_speakers

        super().__init__(in_dir)
        match = _DIR.match(os.path.basename(self.in_dir))
        if match:  # pointed at one speaker's folder
            self.in_dir = os.path.dirname(self.in_dir)
        found = sorted(m.group(1) for m in map(_DIR.match, os.listdir(self.in_dir))
                       if m and m.group(1) in available_speakers)
        selected = parse_selection(speakers) or ([match.group(1)] if match else found)
        if not selected:
            raise CorpusError(f"not a CMU Arctic layout: no cmu_us_<speaker>_arctic folder in {self.in_dir}")
        for spk in selected:
            if spk not in available_speakers:
                raise CorpusError(f"unknown CMU Arctic speaker {spk!r}; valid: {', '.join(available_speakers)}")
            for part in ("wav", os.path.join("etc", "txt.done.data")):
                if not os.path.exists(os.path.join(speaker_dir(self.in_dir, spk), part)):
                    raise CorpusError(f"CMU Arctic speaker {spk}: {os.path.join(speaker_dir(self.in_dir, spk), part)} "
                                      f"not found (speakers found: {', '.join(found) or 'none'})")
        self.speakers = list(dict.fromkeys(selected))

    def utterances(self) -> list[Utterance]:
        from nnmnkwii.datasets.cmu_arctic import WavFileDataSource

        source = WavFileDataSource(self.in_dir, speakers=self.speakers)
        paths = source.collect_files()
        out: list[Utterance] = []
        for index, spk in enumerate(self.speakers):
            wavs = {os.path.basename(p)[:-4]: p for p, label in zip(paths, source.labels) if label == index}
            transcripts, malformed = self._read_transcripts(spk)
            out += pair_up(transcripts, wavs, spk, f"cmu_us_{spk}_arctic/etc/txt.done.data",
                           utt_id_prefix=f"{spk}_", malformed=malformed)
        return out

    def _read_transcripts(self, spk: str) -> tuple[dict[str, str], dict[str, str]]:
        """``({stem: text}, {stem or location: why malformed})`` of one speaker's txt.done.data."""
        transcripts: dict[str, str] = {}
        malformed: dict[str, str] = {}
        path = os.path.join(speaker_dir(self.in_dir, spk), "etc", "txt.done.data")
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                match = _LINE.match(line.strip())
                if match:
                    transcripts[match.group(1)] = match.group(2)
                else:
                    stem = line.strip().lstrip("( ").split(" ", 1)[0] or f"txt.done.data line {number}"
                    malformed[stem] = f"txt.done.data line {number} is not '( <id> \"<text>\" )'"
        return transcripts, malformed
