"""Mandarin front-end ``mandarin_pinyin``: pinyin initials and tonal finals.

Every syllable becomes its initial (if any) followed by its final with the tone digit:
``zhong1 guo2`` → ``zh ong1 g uo2``. Conventions (one spelling per sound, so the same
final gets the same token wherever it occurs):

* Finals are written in full, the way tables of the pinyin scheme list them: ``ü`` is ``v``
  (input ``ü``, ``v`` and ``u:`` are all accepted), ``ju/qu/xu`` → ``j v``, ``lüe``/``lue``
  → ``l ve``, ``liu`` → ``l iou``, ``gui`` → ``g uei``, ``lun`` → ``l uen``, ``jun`` → ``j vn``.
* ``y``/``w`` are spelling devices, not initials: a zero-initial syllable is just its
  final, ``yi1`` → ``i1``, ``ya1`` → ``ia1``, ``you3`` → ``iou3``, ``wu3`` → ``u3``,
  ``wei4`` → ``uei4``, ``yu2`` → ``v2``, ``yue4`` → ``ve4``, ``er4`` → ``er4``, ``a1`` → ``a1``.
* Tones are 1-4 and 5 for the neutral tone (a missing digit or ``0`` means 5; tone marks
  such as ``zhōng`` are accepted). Tone sandhi is *not* applied: THCHS30's transcripts use
  citation tones, and synthesis must produce what training saw.
* Erhua written on the syllable (``huar1``) becomes the syllable plus ``er5``.
* Punctuation becomes a pause token: ``,`` (，、；： and dashes), ``.`` (。…), ``?`` and
  ``!``; brackets and quotes are dropped silently; leading pauses are dropped and a run of
  pauses keeps its last one.
* Hanzi go through pypinyin (``Style.TONE3``, ``neutral_tone_with_five=True``); Arabic
  numbers are read in Chinese first (``2008年`` → 二零零八年, ``25`` → 二十五, ``3.5`` →
  三点五, ``50%`` → 百分之五十). Pinyin syllables may also be typed directly in the text.

227 symbols: ``<pad>``, ``<eos>``, 4 pauses, 21 initials and 40 finals × 5 tones.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Optional

from tacowave.text.symbols import EOS, PAD, Frontend, UnknownChars

INITIALS: tuple[str, ...] = (
    "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
    "j", "q", "x", "zh", "ch", "sh", "r", "z", "c", "s",
)
FINALS: tuple[str, ...] = tuple(sorted((
    "a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er",
    "i", "ia", "ian", "iang", "iao", "ie", "in", "ing", "io", "iong", "iou",
    "m", "n", "ng", "o", "ong", "ou",
    "u", "ua", "uai", "uan", "uang", "uei", "uen", "ueng", "uo",
    "v", "van", "ve", "vn",
)))
TONES: tuple[str, ...] = ("1", "2", "3", "4", "5")
PAUSES: tuple[str, ...] = (",", ".", "?", "!")
MANDARIN_SYMBOLS: tuple[str, ...] = (
    (PAD, EOS) + PAUSES + INITIALS + tuple(f + t for f in FINALS for t in TONES)
)

_FINAL_SET = frozenset(FINALS)
# Longest first, so "zh" wins over "z".
_INITIALS_BY_LENGTH = tuple(sorted(INITIALS, key=len, reverse=True))
# Syllables that are a syllabic nasal, with or without the h- initial (呣 m, 嗯 n/ng, 哼 hng).
_NASAL_SYLLABLES = {"m": ("", "m"), "n": ("", "n"), "ng": ("", "ng"),
                    "hm": ("h", "m"), "hn": ("h", "n"), "hng": ("h", "ng")}

_TONE_MARKS = {}
for _plain, _marked in (("a", "āáǎà"), ("e", "ēéěè"), ("i", "īíǐì"), ("o", "ōóǒò"),
                        ("u", "ūúǔù"), ("v", "ǖǘǚǜ"), ("n", "\u0144\u0148\u01f9"),
                        ("m", "\u1e3f")):
    for _k, _ch in enumerate(_marked):
        # ń ň ǹ carry tones 2, 3, 4; ḿ tone 2.
        _tone = _k + 1 if _plain not in "nm" else {"n": (2, 3, 4), "m": (2,)}[_plain][_k]
        _TONE_MARKS[_ch] = (_plain, str(_tone))


def parse_syllable(syllable: str) -> Optional[list[str]]:
    """One pinyin syllable → ``[initial, final+tone]`` or ``[final+tone]``; ``None`` if invalid.

    >>> parse_syllable("zhong1"), parse_syllable("yu2"), parse_syllable("lu:4")
    (['zh', 'ong1'], ['v2'], ['l', 'v4'])
    """
    s = syllable.strip().lower().replace("u:", "v").replace("ü", "v").replace("ê", "e")
    tone = ""
    if s and s[-1].isdigit():
        s, tone = s[:-1], s[-1]
    marked = ""
    plain = []
    for ch in s:
        if ch in _TONE_MARKS:
            ch, marked = _TONE_MARKS[ch]
        plain.append(ch)
    s = "".join(plain)
    tone = tone or marked or "5"
    if tone == "0":
        tone = "5"
    if tone not in TONES or not s or not s.isascii() or not s.isalpha():
        return None
    if s == "r":                          # a detached erhua suffix
        return ["er" + tone]
    if s.endswith("r") and s != "er" and len(s) > 1:
        base = parse_syllable(s[:-1] + tone)
        return None if base is None else base + ["er5"]
    if s in _NASAL_SYLLABLES:
        initial, final = _NASAL_SYLLABLES[s]
    elif s[0] == "y":
        rest = s[1:]
        if rest[:1] in ("u", "v"):
            final = "v" + rest[1:]        # yu, yue, yuan, yun
        elif rest[:1] == "i":
            final = rest                  # yi, yin, ying
        else:
            final = "i" + rest            # ya, ye, yao, you, yan, yang, yong, yo
        initial = ""
    elif s[0] == "w":
        rest = s[1:]
        final = rest if rest[:1] == "u" else "u" + rest
        initial = ""
    else:
        initial = next((i for i in _INITIALS_BY_LENGTH if s.startswith(i)), "")
        final = s[len(initial):]
        if initial in ("j", "q", "x") and final[:1] == "u":
            final = "v" + final[1:]
        elif initial in ("n", "l") and final == "ue":
            final = "ve"
        # Restore the vowels that pinyin spelling abbreviates.
        final = {"iu": "iou", "ui": "uei", "un": "uen"}.get(final, final)
    if final not in _FINAL_SET:
        return None
    return ([initial] if initial else []) + [final + tone]


# ------------------------------------------------------------------ numbers

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("千", "百", "十", "")
_BIG_UNITS = ("", "万", "亿", "万亿")


def _below_10000(n: int) -> str:
    out, zero = "", False
    for unit, d in zip(_SMALL_UNITS, f"{n:04d}"):
        if d == "0":
            zero = bool(out)
        else:
            out += ("零" if zero else "") + _DIGITS[int(d)] + unit
            zero = False
    return out


def int_to_hanzi(n: int) -> str:
    """Cardinal reading: 10001 → 一万零一, 15 → 十五, 2000000 → 二百万 (n < 10^16)."""
    if n == 0:
        return "零"
    groups = []
    while n:
        n, g = divmod(n, 10000)
        groups.append(g)
    out, gap = "", False
    for idx in range(len(groups) - 1, -1, -1):
        g = groups[idx]
        if g == 0:
            gap = bool(out)
            continue
        if out and (gap or g < 1000):
            out += "零"
        out += _below_10000(g) + _BIG_UNITS[idx]
        gap = False
    return out[1:] if out.startswith("一十") else out


def number_to_hanzi(number: str, next_char: str = "") -> str:
    """Read an Arabic number in Chinese; years, codes and long numbers digit by digit."""
    percent = number.endswith("%")
    number = number.rstrip("%")
    whole, _, frac = number.partition(".")
    if (next_char == "年" or len(whole) > 16 or (len(whole) > 1 and whole[0] == "0")) and not frac:
        reading = "".join(_DIGITS[int(d)] for d in whole)
    else:
        reading = int_to_hanzi(int(whole))
        if frac:
            reading += "点" + "".join(_DIGITS[int(d)] for d in frac)
    return ("百分之" + reading) if percent else reading


# ------------------------------------------------------------------ pypinyin

_pypinyin: Any = None
_pypinyin_lock = threading.Lock()


def hanzi_to_pinyin(hanzi: str) -> list[Optional[str]]:
    """One TONE3 pinyin (``"zhong1"``) per character of a run of hanzi; ``None`` where unknown.

    The whole run goes to pypinyin at once so that its phrase dictionary can pick the
    reading of polyphonic characters from context (银行 hang2, 行走 xing2).
    """
    global _pypinyin
    with _pypinyin_lock:
        if _pypinyin is None:
            try:
                import pypinyin
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("mandarin_pinyin needs pypinyin: pip install 'tacowave[zh]'") from exc
            _pypinyin = pypinyin
    result = _pypinyin.lazy_pinyin(
        hanzi, style=_pypinyin.Style.TONE3, neutral_tone_with_five=True,
        errors=lambda chars: [""] * len(chars))
    if len(result) != len(hanzi):
        # Should not happen for pure hanzi; fall back to character by character.
        result = [hanzi_to_pinyin(c)[0] if len(hanzi) > 1 else None for c in hanzi]
    return [r if r else None for r in result]


# ------------------------------------------------------------------ text scanning

# Full-width ASCII → ASCII, one character for one, so input positions stay valid.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FULLWIDTH[0x3000] = 0x20

_PAUSE_OF = {}
for _chars, _pause in ((",，、;；:：—–-~～", ","), (".。…‥", "."), ("?？", "?"), ("!！", "!")):
    for _c in _chars:
        _PAUSE_OF[_c] = _pause
_SILENT = frozenset("\"'“”‘’「」『』《》〈〉()（）[]【】{}<>·・〔〕")

_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_PINYIN_LETTERS = "a-zA-Z" + "".join(_TONE_MARKS) + "üÜêÊ"
_SCAN_RE = re.compile(
    rf"(?P<py>(?:[uU]:|[{_PINYIN_LETTERS}])+[0-5]?)"
    rf"|(?P<num>\d+(?:\.\d+)?%?)"
    rf"|(?P<han>[{_HAN}]+)"
    r"|(?P<ws>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def _tokens(text: str, allow_hanzi: bool) -> tuple[list[str], UnknownChars]:
    norm = text.translate(_FULLWIDTH)
    tokens: list[str] = []
    unknown: UnknownChars = []

    def pause(p: str) -> None:
        if not tokens:
            return                       # nothing to pause after
        if tokens[-1] in PAUSES:
            tokens[-1] = p
        else:
            tokens.append(p)

    def hanzi(run: str, start: int) -> None:
        for k, py in enumerate(hanzi_to_pinyin(run)):
            parsed = parse_syllable(py) if py else None
            if parsed is None:
                unknown.append((start + k, text[start + k]))
            else:
                tokens.extend(parsed)

    for m in _SCAN_RE.finditer(norm):
        kind, s, start = m.lastgroup, m.group(0), m.start()
        if kind == "py":
            parsed = parse_syllable(s)
            if parsed is None:
                unknown.extend((start + k, text[start + k]) for k in range(len(s)))
            else:
                tokens.extend(parsed)
        elif kind == "num" and allow_hanzi:
            next_char = norm[m.end():m.end() + 1]
            reading = number_to_hanzi(s, next_char)
            for py in hanzi_to_pinyin(reading):
                tokens.extend(parse_syllable(py) or [])
        elif kind == "han" and allow_hanzi:
            hanzi(s, start)
        elif kind == "ws" or (kind == "other" and s in _SILENT):
            continue
        elif kind == "other" and s in _PAUSE_OF:
            pause(_PAUSE_OF[s])
        else:
            unknown.extend((start + k, text[start + k]) for k in range(len(s)))
    if not any(t not in PAUSES for t in tokens):
        return [], unknown
    return tokens + [EOS], unknown


class MandarinPinyinFrontend(Frontend):
    """Pinyin initials + tonal finals from hanzi or pinyin text (``mandarin_pinyin``)."""

    name = "mandarin_pinyin"

    def __init__(self) -> None:
        super().__init__(MANDARIN_SYMBOLS, eos=EOS, space=None, char_level=False)

    def text_to_tokens(self, text: str) -> tuple[list[str], UnknownChars]:
        """Hanzi (and/or typed pinyin syllables, numbers, punctuation) → tokens."""
        return _tokens(text, allow_hanzi=True)

    def pinyin_to_tokens(self, pinyin_line: str) -> tuple[list[str], UnknownChars]:
        """A pinyin transcription such as THCHS30's (``"lv4 shi4 yang2 ..."``) → tokens.

        Only pinyin syllables and punctuation are accepted; anything else (including hanzi
        and bare numbers) is reported as unknown.
        """
        return _tokens(pinyin_line, allow_hanzi=False)
