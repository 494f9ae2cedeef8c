"""Japanese front-ends built on pyopenjtalk (the ``ja`` extra installs pyopenjtalk-plus,
which bundles its dictionary and so works offline).

* ``japanese``: the phonemes of ``pyopenjtalk.g2p`` (devoiced vowels in capitals, ``cl`` for
  the geminate, ``N`` for the moraic nasal, ``pau`` for pauses), then ``<eos>``. 48 symbols.
* ``japanese_prosody``: phonemes with accent/prosody marks derived from the full-context
  labels, following the rules ESPnet's ``pyopenjtalk_g2p_prosody`` uses (Kurihara et al.,
  "Prosodic features control by symbols as input of sequence-to-sequence acoustic modeling
  for neural TTS", IEICE 2021):

  ====  ==================================================================
  ``^``  start of the utterance (the leading ``sil``)
  ``$``  end of a declarative utterance (the trailing ``sil``)
  ``?``  end of an interrogative utterance (trailing ``sil`` whose E3 flag is 1)
  ``_``  pause (``pau``)
  ``#``  accent-phrase boundary
  ``[``  pitch rise (after the first mora of an accent phrase)
  ``]``  pitch fall (after the accent nucleus)
  ====  ==================================================================

  As in ESPnet's default, devoiced vowels are written in lowercase
  (``drop_unvoiced_vowels=True``); the table still holds the capitals so that the symbol
  list does not depend on the option. The end mark is the sequence end, so no
  ``<eos>`` is added. 53 symbols.

Characters pyopenjtalk cannot read (emoji, Hangul, pictographs ...) are reported and
removed before analysis, so they never become spurious pauses.
"""
from __future__ import annotations

import contextlib
import functools
import io
import re
import threading
import unicodedata
from typing import Any, Callable

from tacowave.text.symbols import EOS, PAD, Frontend, UnknownChars, finish_tokens

# Every phoneme pyopenjtalk's g2p emits (checked against g2p of all kana and their
# small-kana combinations), sorted so the table is a constant.
PHONEMES: tuple[str, ...] = (
    "A", "E", "I", "N", "O", "U", "a", "b", "by", "ch", "cl", "d", "dy", "e", "f", "fy", "g",
    "gw", "gy", "h", "hy", "i", "j", "k", "kw", "ky", "m", "my", "n", "ny", "o", "p", "py", "r",
    "ry", "s", "sh", "t", "ts", "ty", "u", "v", "w", "y", "z",
)
PAUSE = "pau"
PROSODY_MARKS: tuple[str, ...] = ("^", "$", "?", "_", "#", "[", "]")

JAPANESE_SYMBOLS: tuple[str, ...] = (PAD, EOS, PAUSE) + PHONEMES
JAPANESE_PROSODY_SYMBOLS: tuple[str, ...] = (PAD,) + PROSODY_MARKS + PHONEMES

_pyopenjtalk: Any = None
_import_lock = threading.Lock()
# pyopenjtalk keeps one global analyser; serialise calls from threads of one process.
_call_lock = threading.Lock()


def _openjtalk() -> Any:
    global _pyopenjtalk
    with _import_lock:
        if _pyopenjtalk is None:
            try:
                # pyopenjtalk-plus prints a notice about its optional ONNX reading model
                # on import; it would interleave with progress bars and CLI output.
                with contextlib.redirect_stdout(io.StringIO()):
                    import pyopenjtalk
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("Japanese front-ends need pyopenjtalk: "
                                  "pip install 'tacowave[ja]'") from exc
            _pyopenjtalk = pyopenjtalk
    return _pyopenjtalk


def _call(fn: Callable[..., Any], text: str) -> Any:
    # The "nani" reading model is only active when onnxruntime happens to be installed;
    # switching it off keeps the phonemes of a text identical on every machine.
    with _call_lock:
        try:
            return fn(text, predict_nani=False)
        except TypeError:  # plain pyopenjtalk has no such option
            return fn(text)


def g2p(text: str) -> list[str]:
    """pyopenjtalk's phonemes for ``text`` (``"水を"`` → ``["m", "i", "z", "u", "o"]``)."""
    return _call(_openjtalk().g2p, text).split()


def fullcontext_labels(text: str) -> list[str]:
    """HTS full-context labels of ``text`` (one per phoneme, ``sil`` at both ends)."""
    return list(_call(_openjtalk().extract_fullcontext, text))


# ------------------------------------------------------------------ prosody marks

_P3_RE = re.compile(r"-(.*?)\+")
_A1_RE = re.compile(r"/A:([0-9\-]+)\+")
_A2_RE = re.compile(r"\+(\d+)\+")
_A3_RE = re.compile(r"\+(\d+)/")
_E3_RE = re.compile(r"!(\d+)_")
_F1_RE = re.compile(r"/F:(\d+)_")
_NO_VALUE = -50   # "xx" fields (not applicable) never compare equal to a real position
_BOUNDARY_PHONES = frozenset("aeiouAEIOUN") | {"cl"}


def _field(regex: re.Pattern, label: str) -> int:
    m = regex.search(label)
    return int(m.group(1)) if m else _NO_VALUE


def prosody_from_labels(labels: list[str], drop_unvoiced_vowels: bool = True) -> list[str]:
    """Phonemes + prosody marks from full-context labels (see the module docstring).

    A1 is the mora position relative to the accent nucleus (0 on the nucleus), A2/A3 the
    mora position counted from the start/end of the accent phrase, F1 the phrase's mora
    count and E3 the interrogative flag of the preceding phrase.
    """
    out: list[str] = []
    last = len(labels) - 1
    for n, label in enumerate(labels):
        m = _P3_RE.search(label)
        if m is None:
            continue
        phone = m.group(1)
        if phone == "sil":
            if n == 0:
                out.append("^")
            elif n == last:
                out.append("?" if _field(_E3_RE, label) == 1 else "$")
            continue
        if phone == "pau":
            out.append("_")
            continue
        if drop_unvoiced_vowels and phone in ("A", "E", "I", "O", "U"):
            phone = phone.lower()
        out.append(phone)
        if n == last:
            continue
        a1 = _field(_A1_RE, label)
        a2 = _field(_A2_RE, label)
        a3 = _field(_A3_RE, label)
        f1 = _field(_F1_RE, label)
        a2_next = _field(_A2_RE, labels[n + 1])
        # The mark goes after the *last phoneme of a mora*, hence the vowel/N/cl test.
        if a3 == 1 and a2_next == 1 and phone in _BOUNDARY_PHONES:
            out.append("#")
        elif a1 == 0 and a2_next == a2 + 1 and a2 != f1:
            out.append("]")
        elif a2 == 1 and a2_next == 2:
            out.append("[")
    return out


# ------------------------------------------------------------------ unknown characters

def _core_char(c: str) -> bool:
    """Characters OpenJTalk always handles (read, or treated as punctuation)."""
    o = ord(c)
    return (
        c.isspace()
        or 0x21 <= o <= 0x7E                      # ASCII (letters are spelt out)
        or 0x3000 <= o <= 0x30FF                  # CJK punctuation, hiragana, katakana
        or 0x31F0 <= o <= 0x31FF                  # katakana phonetic extensions
        or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF
        or 0x20000 <= o <= 0x2FA1F                # CJK ideographs and extensions
        or 0xFF01 <= o <= 0xFF9F                  # full-width ASCII, half-width kana
        or 0x2010 <= o <= 0x206F                  # dashes, quotes, ellipsis
    )


@functools.lru_cache(maxsize=4096)
def _readable(c: str) -> bool:
    """Whether OpenJTalk produces any phoneme for a non-core character (Greek yes, emoji no)."""
    if unicodedata.category(c)[0] in "CZ":
        return False
    return bool(g2p(c))


def strip_unreadable(text: str) -> tuple[str, UnknownChars]:
    """Remove characters OpenJTalk cannot read; return the rest and ``(position, char)`` of each."""
    unknown = [(i, c) for i, c in enumerate(text) if not (_core_char(c) or _readable(c))]
    if not unknown:
        return text, []
    bad = {i for i, _ in unknown}
    return "".join(c for i, c in enumerate(text) if i not in bad), unknown


# ------------------------------------------------------------------ front-ends

class JapaneseFrontend(Frontend):
    """pyopenjtalk g2p phonemes (``japanese``)."""

    name = "japanese"

    def __init__(self) -> None:
        super().__init__(JAPANESE_SYMBOLS, eos=EOS, space=None, char_level=False)

    def _phones(self, text: str) -> list[str]:
        return g2p(text)

    def text_to_tokens(self, text: str) -> tuple[list[str], UnknownChars]:
        kept, unknown = strip_unreadable(text)
        tokens: list[str] = []
        for p in (self._phones(kept) if kept.strip() else []):
            if p in self._symbol_to_id:
                tokens.append(p)
            else:
                # A phoneme outside the table cannot be traced to one input character.
                unknown.append((-1, p))
        if not any(t in PHONEMES for t in tokens):
            return [], unknown
        return finish_tokens(self, tokens), unknown


class JapaneseProsodyFrontend(JapaneseFrontend):
    """Phonemes with ESPnet-style accent/prosody marks (``japanese_prosody``).

    Args:
        drop_unvoiced_vowels: write devoiced vowels in lowercase (ESPnet's default).
    """

    name = "japanese_prosody"

    def __init__(self, drop_unvoiced_vowels: bool = True) -> None:
        Frontend.__init__(self, JAPANESE_PROSODY_SYMBOLS, eos=None, space=None, char_level=False)
        self.drop_unvoiced_vowels = bool(drop_unvoiced_vowels)

    def _phones(self, text: str) -> list[str]:
        return prosody_from_labels(fullcontext_labels(text), self.drop_unvoiced_vowels)
