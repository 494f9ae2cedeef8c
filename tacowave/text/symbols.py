"""Symbol sets and the :class:`Frontend` base class every text front-end derives from.

A front-end turns a transcript into *tokens* (strings, each a member of its
``symbols`` list) and tokens into integer ids (the index in ``symbols``). The
data dir stores the tokens of an utterance as one space-separated string in the
``phones`` column of ``train.txt`` (``utt_id|speaker|...|text|phones``), so a
token may contain neither whitespace nor ``|``; :class:`Frontend` checks this
when it is built.

Conventions shared by all front-ends
------------------------------------
* id 0 is the padding symbol (:data:`PAD` = ``"<pad>"``; ``"_"`` for
  ``english_nvidia``, whose table is NVIDIA's).
* :data:`EOS` (``"<eos>"``) ends every non-empty token sequence of the
  ``english_chars``, ``english_arpabet``, ``japanese`` and ``mandarin_pinyin``
  front-ends: Tacotron-2's encoder is bidirectional and its attention has to
  learn where the text stops, and an explicit, always-present last symbol makes
  that stop point the same for every utterance (the stop-token gate then only
  has to fire once attention reaches it). ``japanese_prosody`` ends with its
  own ``$`` / ``?`` mark instead, and ``english_nvidia`` has no end symbol
  because NVIDIA's model was trained without one. The EOS token is part of
  ``text_to_tokens``' output, so the phones column holds exactly what the
  model reads.
* Word boundaries are the visible token :data:`SPACE` (``"<sp>"``), never
  ``" "``. For ``english_nvidia`` the ``<sp>`` token sits at the id of NVIDIA's
  ``" "`` symbol (11); :data:`NVIDIA_SYMBOLS` keeps NVIDIA's literal list for
  code that must compare against it.
* Symbol lists are built from constants only (never from data), so the list
  saved in ``meta.json`` and in checkpoints is reproducible.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

PAD = "<pad>"
EOS = "<eos>"
SPACE = "<sp>"

# ARPAbet as used by CMUdict: 15 vowels carrying a lexical-stress digit, 24 consonants.
ARPABET_VOWELS = (
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
)
ARPABET_CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG",
    "P", "R", "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH",
)
# Every phone CMUdict can produce (vowels always carry a stress digit there).
ARPABET_STRESSED: tuple[str, ...] = tuple(sorted(
    list(ARPABET_CONSONANTS) + [v + s for v in ARPABET_VOWELS for s in "012"]
))
# keithito/NVIDIA's ``cmudict.valid_symbols``: the stressed phones plus the bare vowels,
# in plain lexicographic order (84 entries).
ARPABET_WITH_BARE_VOWELS: tuple[str, ...] = tuple(sorted(
    list(ARPABET_CONSONANTS) + [v + s for v in ARPABET_VOWELS for s in ("", "0", "1", "2")]
))
# ARPAbet phones are '@'-prefixed in token lists so that e.g. the phone "B" and the letter
# "b" can never be confused, and so english_arpabet tokens look like NVIDIA's.
ARPABET_PREFIX = "@"

# NVIDIA/tacotron2 text/symbols.py, in its order: pad, special, punctuation, letters, ARPAbet.
NVIDIA_PAD = "_"
NVIDIA_SPECIAL = "-"
NVIDIA_PUNCTUATION = "!'(),.:;? "
NVIDIA_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NVIDIA_SYMBOLS: tuple[str, ...] = tuple(
    [NVIDIA_PAD] + list(NVIDIA_SPECIAL) + list(NVIDIA_PUNCTUATION) + list(NVIDIA_LETTERS)
    + [ARPABET_PREFIX + p for p in ARPABET_WITH_BARE_VOWELS]
)

_FORBIDDEN_IN_TOKEN = re.compile(r"[\s|]")

UnknownChars = list[tuple[int, str]]


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens → the space-separated string stored in the data dir's ``phones`` column."""
    return " ".join(tokens)


def split_tokens(phones: str) -> list[str]:
    """Inverse of :func:`join_tokens` (an empty/blank string gives ``[]``)."""
    return phones.split()


class Frontend:
    """Base class: a fixed symbol table plus a text → tokens conversion.

    Subclasses implement :meth:`text_to_tokens`. Everything else (ids, checks,
    debug rendering) is shared so every front-end behaves the same way.

    Attributes:
        name: the registry name (``get_frontend(name)``).
        symbols: token strings; ``symbols[i]`` is the token of id ``i``; id 0 is padding.
        eos: the end-of-sequence token appended by ``text_to_tokens``, or ``None``.
        space: the word-boundary token, or ``None`` when the front-end has none.
        char_level: ``True`` when tokens are (mostly) characters, which changes how
            :meth:`sequence_to_text` renders ids.
    """

    name: str = ""

    def __init__(self, symbols: Sequence[str], *, eos: Optional[str], space: Optional[str],
                 char_level: bool) -> None:
        self.symbols: list[str] = list(symbols)
        self.eos = eos
        self.space = space
        self.char_level = char_level
        self._symbol_to_id: dict[str, int] = {}
        for i, s in enumerate(self.symbols):
            # Fail at import/definition time: a bad table would silently corrupt data dirs.
            if not s or _FORBIDDEN_IN_TOKEN.search(s):
                raise ValueError(f"{self.name}: symbol {s!r} (id {i}) is empty or contains "
                                 "whitespace or '|', which the data dir cannot store")
            if s in self._symbol_to_id:
                raise ValueError(f"{self.name}: duplicate symbol {s!r}")
            self._symbol_to_id[s] = i
        for special in (eos, space):
            if special is not None and special not in self._symbol_to_id:
                raise ValueError(f"{self.name}: special token {special!r} missing from symbols")

    # ------------------------------------------------------------------ ids

    @property
    def pad(self) -> str:
        """The padding token (``symbols[0]``)."""
        return self.symbols[0]

    @property
    def pad_id(self) -> int:
        """Id of the padding symbol (always 0)."""
        return 0

    @property
    def eos_id(self) -> Optional[int]:
        """Id of the end-of-sequence symbol, or ``None`` when the front-end has none."""
        return None if self.eos is None else self._symbol_to_id[self.eos]

    @property
    def num_symbols(self) -> int:
        """Size of the symbol table (the embedding's first dimension)."""
        return len(self.symbols)

    def text_to_tokens(self, text: str) -> tuple[list[str], UnknownChars]:
        """Normalise ``text`` into tokens.

        Returns:
            ``(tokens, unknown)``: tokens, each a member of :attr:`symbols` (ending with
            :attr:`eos` when the front-end has one, ``[]`` when nothing in ``text`` is
            usable), and the dropped characters as ``(position in text, character)``.
            Never raises on unknown characters.
        """
        raise NotImplementedError

    def tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Map tokens to ids; a token not in :attr:`symbols` raises ``ValueError`` naming it."""
        tokens = list(tokens)
        try:
            return [self._symbol_to_id[t] for t in tokens]
        except KeyError:
            bad = sorted({t for t in tokens if t not in self._symbol_to_id})
            raise ValueError(f"front-end {self.name!r} has no symbol for token(s) {bad}") from None

    def text_to_sequence(self, text: str) -> list[int]:
        """``tokens_to_ids(text_to_tokens(text)[0])``; unknown characters are dropped."""
        return self.tokens_to_ids(self.text_to_tokens(text)[0])

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to tokens; an id outside the table raises ``ValueError``."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.symbols):
                raise ValueError(f"front-end {self.name!r}: id {i} is outside [0, {len(self.symbols)})")
            out.append(self.symbols[i])
        return out

    def sequence_to_text(self, ids: Iterable[int]) -> str:
        """Render ids for humans (debugging, logs). Padding and EOS are left out.

        Character front-ends give text (``<sp>`` → ``" "``, ARPAbet runs in ``{...}``);
        phone front-ends give the tokens joined by spaces.
        """
        tokens = [t for t in self.ids_to_tokens(ids) if t not in (self.pad, self.eos)]
        if not self.char_level:
            return join_tokens(tokens)
        out: list[str] = []
        phones: list[str] = []
        for t in tokens + [""]:
            if t.startswith(ARPABET_PREFIX) and len(t) > 1:
                phones.append(t[len(ARPABET_PREFIX):])
                continue
            if phones:
                out.append("{" + " ".join(phones) + "}")
                phones = []
            out.append(" " if t == self.space else t)
        return "".join(out)

    # ------------------------------------------------------------------ checks

    def check_symbols(self, saved: Sequence[str]) -> None:
        """Raise ``ValueError`` unless ``saved`` (from meta.json / a checkpoint) equals :attr:`symbols`."""
        saved = list(saved)
        if saved == self.symbols:
            return
        if len(saved) != len(self.symbols):
            detail = f"{len(saved)} saved symbols vs {len(self.symbols)}"
        else:
            i = next(k for k, (a, b) in enumerate(zip(saved, self.symbols)) if a != b)
            detail = f"first difference at id {i}: saved {saved[i]!r} vs {self.symbols[i]!r}"
        raise ValueError(f"symbol table of front-end {self.name!r} differs from the saved one ({detail})")

    def describe(self) -> dict:
        """What meta.json and checkpoints store about the front-end."""
        return {"frontend": self.name, "symbols": list(self.symbols)}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.symbols)} symbols>"


def finish_tokens(frontend: Frontend, tokens: list[str]) -> list[str]:
    """Trim boundary tokens at both ends, squeeze repeated ones, and append EOS.

    Shared by front-ends so that "nothing usable" is ``[]`` everywhere (never a lone EOS).
    """
    out: list[str] = []
    for t in tokens:
        if t == frontend.space and (not out or out[-1] == frontend.space):
            continue
        out.append(t)
    while out and out[-1] == frontend.space:
        out.pop()
    if out and frontend.eos is not None:
        out.append(frontend.eos)
    return out
