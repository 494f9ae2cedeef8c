"""English number, currency and ordinal expansion ("$3.50" → "three dollars, fifty cents").

Two flavours live here:

* :func:`expand_currency` + :func:`expand_numbers`: tacowave's own rules, used by the
  ``english_chars`` and ``english_arpabet`` front-ends. Currency runs *before*
  transliteration (unidecode turns "£" into "PS" and "€" into "EUR").
* :func:`nvidia_normalize_numbers`: reproduces the behaviour of the number step of
  NVIDIA/tacotron2's ``english_cleaners`` (inherited from keithito/tacotron), quirks
  included, because the ``english_nvidia`` front-end must produce the ids their
  published checkpoint was trained on. It differs from ours in visible ways: it reads
  "3.14" as "three point fourteen", keeps inflect's commas ("three thousand, five
  hundred") and hyphens, and never sees "£" (transliterated before it runs).

Number words come from ``inflect``; it is imported lazily so that importing
``tacowave.text`` does not require the ``en`` extra.
"""
from __future__ import annotations

import re
import threading
from typing import Callable, Optional

_engine = None
_engine_lock = threading.Lock()


def _inflect():
    global _engine
    with _engine_lock:
        if _engine is None:
            try:
                import inflect
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError("English number expansion needs 'inflect': "
                                  "pip install 'tacowave[en]'") from exc
            _engine = inflect.engine()
    return _engine


_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digits_to_words(digits: str, zero: str = "zero") -> str:
    """Read a digit string one digit at a time ("007" → "zero zero seven")."""
    return " ".join(zero if d == "0" else _DIGIT_WORDS[int(d)] for d in digits if d.isdigit())


def cardinal(n: int) -> str:
    """American cardinal without "and", commas or hyphens: 1234 → "one thousand two hundred thirty four".

    Hyphens and commas are dropped because in our symbol set they are pause-like
    punctuation, and "twenty-three" is spoken without a break.
    """
    try:
        words = _inflect().number_to_words(n, andword="", comma="")
    except Exception:  # inflect gives up on absurdly large numbers; reading digits never fails
        return digits_to_words(str(n))
    return re.sub(r"\s+", " ", words.replace("-", " ").replace(",", " ")).strip()


def ordinal(n: int) -> str:
    """22 → "twenty second"."""
    try:
        words = _inflect().number_to_words(_inflect().ordinal(n), andword="", comma="")
    except Exception:
        return digits_to_words(str(n))
    return re.sub(r"\s+", " ", words.replace("-", " ").replace(",", " ")).strip()


def _year_or_cardinal(digits: str) -> str:
    """Words for a bare integer; four-digit numbers in (1000, 3000) read like years."""
    if len(digits) > 1 and digits[0] == "0":
        return digits_to_words(digits)           # "007", zip codes: spoken digit by digit
    if len(digits) > 15:
        return digits_to_words(digits)           # card/phone numbers, not quantities
    n = int(digits)
    if len(digits) == 4 and 1000 < n < 3000:
        hi, lo = divmod(n, 100)
        if n == 2000:
            return "two thousand"
        if 2000 < n < 2010:
            return "two thousand " + cardinal(lo)
        if lo == 0:
            return cardinal(hi) + " hundred"      # 1900 → nineteen hundred
        return cardinal(hi) + " " + ("oh " + cardinal(lo) if lo < 10 else cardinal(lo))
    return cardinal(n)


def _spaced(m: re.Match, words: str) -> str:
    """Pad ``words`` with a space where the match touches a letter or digit ("mp3" → "mp three")."""
    s = m.string
    left = " " if m.start() > 0 and s[m.start() - 1].isalnum() else ""
    right = " " if m.end() < len(s) and s[m.end()].isalnum() else ""
    return left + words + right


# ------------------------------------------------------------------ currency (tacowave)

# symbol: (singular, plural, minor singular, minor plural); None = no minor unit spoken.
_CURRENCIES: dict[str, tuple[str, str, Optional[str], Optional[str]]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
}
_SCALES = ("hundred", "thousand", "million", "billion", "trillion")
_CURRENCY_RE = re.compile(
    r"([$£€¥])\s?(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?"
    r"(?:\s?(" + "|".join(_SCALES) + r")\b)?",
    re.IGNORECASE,
)


def _expand_currency_match(m: re.Match) -> str:
    symbol, whole, frac, scale = m.group(1), m.group(2), m.group(3), m.group(4)
    if whole is None and frac is None:
        return m.group(0)   # a bare "$": leave it for the unknown-character report
    one, many, minor_one, minor_many = _CURRENCIES[symbol]
    major = int(whole.replace(",", "")) if whole else 0
    if scale:
        # "$1.5 million" → "one point five million dollars"
        amount = cardinal(major) + (" point " + digits_to_words(frac) if frac else "")
        return _spaced(m, f"{amount} {scale.lower()} {many}")
    if frac is not None and (len(frac) > 2 or minor_one is None):
        # Not a price in major/minor units ("$0.125", "¥3.5"): read the decimal.
        return _spaced(m, f"{cardinal(major)} point {digits_to_words(frac)} {many}")
    minor = int(frac.ljust(2, "0")) if frac else 0    # "$3.5" means fifty cents, not five
    parts = []
    if major or not minor:
        parts.append(f"{cardinal(major)} {one if major == 1 else many}")
    if minor:
        parts.append(f"{cardinal(minor)} {minor_one if minor == 1 else minor_many}")
    return _spaced(m, ", ".join(parts))


def expand_currency(text: str) -> str:
    """Spell out amounts after $, £, €, ¥ ("£2.05" → "two pounds, five pence")."""
    return _CURRENCY_RE.sub(_expand_currency_match, text)


# ------------------------------------------------------------------ numbers (tacowave)

_THOUSANDS_RE = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_NEGATIVE_RE = re.compile(r"(?<![\w.])-(?=\d)")
_ORDINAL_RE = re.compile(r"(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL_RE = re.compile(r"(\d*)\.(\d+)")
_NUMBER_RE = re.compile(r"\d+")


def _expand_decimal(m: re.Match) -> str:
    whole, frac = m.group(1), m.group(2)
    if not whole and m.start() > 0 and m.string[m.start() - 1].isalnum():
        return m.group(0)      # "v.2", "no.5": a dot glued to a word is not a decimal point
    # A decimal is a quantity: "1984.5" is not read like a year.
    return _spaced(m, f"{cardinal(int(whole)) if whole else 'zero'} point {digits_to_words(frac)}")


def expand_numbers(text: str) -> str:
    """Spell out numbers in transliterated text.

    Handles thousands separators ("1,000,000" → "one million"), percentages, negative
    numbers, decimals ("3.14" → "three point one four"), ordinals ("22nd" → "twenty
    second"), years ("1984" → "nineteen eighty four", "2005" → "two thousand five") and
    plain cardinals. Currency is handled earlier by :func:`expand_currency`.
    """
    text = _THOUSANDS_RE.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _PERCENT_RE.sub(r"\1 percent", text)
    text = _NEGATIVE_RE.sub("minus ", text)
    text = _ORDINAL_RE.sub(lambda m: _spaced(m, ordinal(int(m.group(1)))), text)
    text = _DECIMAL_RE.sub(_expand_decimal, text)
    text = _NUMBER_RE.sub(lambda m: _spaced(m, _year_or_cardinal(m.group(0))), text)
    return text


# ------------------------------------------------------------------ NVIDIA/tacotron2 behaviour

# The patterns below define *which* spans NVIDIA's cleaner rewrites; they have to match the
# same spans for english_nvidia ids to equal theirs.
_NV_COMMA_NUMBER_RE = re.compile(r"([0-9][0-9,]+[0-9])")
_NV_POUNDS_RE = re.compile(r"£([0-9,]*[0-9]+)")
_NV_DOLLARS_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
_NV_DECIMAL_RE = re.compile(r"([0-9]+\.[0-9]+)")
_NV_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_NV_NUMBER_RE = re.compile(r"[0-9]+")


def _nv_int(s: str) -> int:
    # NVIDIA's code would raise on e.g. "$,5"; we read what digits there are instead.
    digits = s.replace(",", "")
    return int(digits) if digits.isdigit() else 0


def _nv_dollars(m: re.Match) -> str:
    amount = m.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " dollars"
    dollars = _nv_int(parts[0]) if parts[0] else 0
    cents = _nv_int(parts[1]) if len(parts) > 1 and parts[1] else 0   # "$3.5" → 5 cents (sic)
    dollar_unit = "dollar" if dollars == 1 else "dollars"
    cent_unit = "cent" if cents == 1 else "cents"
    if dollars and cents:
        return f"{dollars} {dollar_unit}, {cents} {cent_unit}"
    if dollars:
        return f"{dollars} {dollar_unit}"
    if cents:
        return f"{cents} {cent_unit}"
    return "zero dollars"


def _nv_words(fn: Callable[[], str], fallback: str) -> str:
    try:
        return fn()
    except Exception:   # keep going where NVIDIA's code would crash (huge numbers)
        return digits_to_words(fallback)


def _nv_number(m: re.Match) -> str:
    n = int(m.group(0))
    eng = _inflect()
    if 1000 < n < 3000:
        if n == 2000:
            return "two thousand"
        if 2000 < n < 2010:
            return "two thousand " + eng.number_to_words(n % 100)
        if n % 100 == 0:
            return eng.number_to_words(n // 100) + " hundred"
        return eng.number_to_words(n, andword="", zero="oh", group=2).replace(", ", " ")
    return _nv_words(lambda: eng.number_to_words(n, andword=""), m.group(0))


def nvidia_normalize_numbers(text: str) -> str:
    """The number step of NVIDIA/tacotron2's ``english_cleaners``, same order, same output."""
    text = _NV_COMMA_NUMBER_RE.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _NV_POUNDS_RE.sub(r"\1 pounds", text)
    text = _NV_DOLLARS_RE.sub(_nv_dollars, text)
    text = _NV_DECIMAL_RE.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _NV_ORDINAL_RE.sub(
        lambda m: _nv_words(lambda: _inflect().number_to_words(m.group(0)), m.group(0)), text)
    text = _NV_NUMBER_RE.sub(_nv_number, text)
    return text
