"""English front-ends: cleaners, CMUdict, NVIDIA/tacotron2 compatibility, the registry."""
import pytest

pytest.importorskip("inflect")
pytest.importorskip("unidecode")

from tacowave.text import FRONTEND_NAMES, NVIDIA_SYMBOLS, SPACE, get_frontend, join_tokens, split_tokens
from tacowave.text.english import cmudict_lookup, english_cleaners


@pytest.fixture(scope="module")
def chars():
    return get_frontend("english_chars")


@pytest.fixture(scope="module")
def arpabet():
    return get_frontend("english_arpabet")


@pytest.fixture(scope="module")
def nvidia():
    return get_frontend("english_nvidia")


# ------------------------------------------------------------------ cleaners

@pytest.mark.parametrize("text, expected", [
    # currencies
    ("$3.50", "three dollars, fifty cents"),
    ("$1", "one dollar"),
    ("$0.01", "one cent"),
    ("$3.5", "three dollars, fifty cents"),
    ("$1,250", "one thousand two hundred fifty dollars"),
    ("$1.5 million", "one point five million dollars"),
    ("£2.05", "two pounds, five pence"),
    ("£1", "one pound"),
    ("€1", "one euro"),
    ("€20.99", "twenty euros, ninety nine cents"),
    # ordinals
    ("1st", "first"),
    ("22nd", "twenty second"),
    ("the 103rd day", "the one hundred third day"),
    # decimals, percentages, negatives
    ("3.14", "three point one four"),
    ("0.5", "zero point five"),
    ("45%", "forty five percent"),
    ("-7 degrees", "minus seven degrees"),
    # years and large numbers
    ("1984", "nineteen eighty four"),
    ("1900", "nineteen hundred"),
    ("1905", "nineteen oh five"),
    ("2000", "two thousand"),
    ("2005", "two thousand five"),
    ("2019", "twenty nineteen"),
    ("1,000,000", "one million"),
    ("123456", "one hundred twenty three thousand four hundred fifty six"),
    ("12", "twelve"),
    ("007", "zero zero seven"),
    ("mp3", "mp three"),
    # abbreviations
    ("Mr. Smith", "mister smith"),
    ("Mrs. Smith", "missus smith"),
    ("Dr. Who", "doctor who"),
    ("St. Louis", "saint louis"),
    ("Acme Co. Ltd. vs. Jones Jr.", "acme company limited versus jones junior."),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    # transliteration, symbols, whitespace
    ("Café   naïve\tRÉSUMÉ", "cafe naive resume"),
    ("Tom & Jerry", "tom and jerry"),
    ('He said "yes".', "he said yes."),
])
def test_english_cleaners(text, expected):
    assert english_cleaners(text).strip() == expected


def test_char_tokens_and_round_trip(chars):
    tokens, unknown = chars.text_to_tokens("Dr. Smith paid $3.50 on the 1st!")
    assert unknown == []
    assert tokens[:7] == ["d", "o", "c", "t", "o", "r", SPACE]
    assert tokens[-1] == "<eos>"
    ids = chars.tokens_to_ids(tokens)
    assert ids[-1] == chars.eos_id == 1
    assert chars.sequence_to_text(ids) == "doctor smith paid three dollars, fifty cents on the first!"
    # The data dir stores tokens space-separated: no token may contain whitespace.
    assert split_tokens(join_tokens(tokens)) == tokens
    assert all(not any(c.isspace() for c in s) for s in chars.symbols)


def test_unknown_characters_reported_with_positions(chars):
    text = "Hi 😀 #1 ok"
    tokens, unknown = chars.text_to_tokens(text)
    assert unknown == [(3, "😀"), (5, "#")]
    assert chars.sequence_to_text(chars.tokens_to_ids(tokens)) == "hi one ok"
    assert chars.text_to_tokens("😀🎉") == ([], [(0, "😀"), (1, "🎉")])
    assert chars.text_to_tokens("") == ([], [])
    assert chars.text_to_tokens("   \n ") == ([], [])


def test_tokens_to_ids_rejects_unknown_tokens(chars):
    with pytest.raises(ValueError, match="@XX"):
        chars.tokens_to_ids(["a", "@XX"])


def test_symbol_tables(chars, arpabet, nvidia):
    assert len(chars.symbols) == 39
    assert len(arpabet.symbols) == 108
    assert len(nvidia.symbols) == 148
    assert chars.symbols[:3] == ["<pad>", "<eos>", "<sp>"]
    # Deterministic: a second instance has the identical table.
    assert get_frontend("english_arpabet").symbols == arpabet.symbols
    arpabet.check_symbols(list(arpabet.symbols))
    with pytest.raises(ValueError, match="differs"):
        arpabet.check_symbols(chars.symbols)


# ------------------------------------------------------------------ CMUdict / ARPAbet

def test_cmudict_lookup():
    assert cmudict_lookup("speech") == ["S", "P", "IY1", "CH"]
    assert cmudict_lookup("Speech") == ["S", "P", "IY1", "CH"]
    assert cmudict_lookup("cat") == ["K", "AE1", "T"]
    assert cmudict_lookup("xyzzyq") is None


def test_arpabet_tokens_with_letter_fallback(arpabet):
    tokens, unknown = arpabet.text_to_tokens("Speech, xyzzyq cat!")
    assert unknown == []
    assert tokens == ["@S", "@P", "@IY1", "@CH", ",", SPACE, "x", "y", "z", "z", "y", "q", SPACE,
                      "@K", "@AE1", "@T", "!", "<eos>"]
    assert arpabet.sequence_to_text(arpabet.tokens_to_ids(tokens)) == "{S P IY1 CH}, xyzzyq {K AE1 T}!"


def test_arpabet_braces_and_probability(arpabet):
    tokens, unknown = arpabet.text_to_tokens("{HH AH0 L OW1 QQ} world")
    assert tokens[:4] == ["@HH", "@AH0", "@L", "@OW1"]
    assert unknown == [(14, "QQ")]
    letters_only = get_frontend("english_arpabet", arpabet_probability=0.0)
    assert letters_only.text_to_tokens("cat")[0] == ["c", "a", "t", "<eos>"]
    with pytest.raises(ValueError):
        get_frontend("english_arpabet", arpabet_probability=1.5)


# ------------------------------------------------------------------ NVIDIA/tacotron2

# NVIDIA/tacotron2 text/symbols.py (published order): pad, special, punctuation, letters,
# then '@' + keithito's cmudict.valid_symbols.
_NV_PUBLISHED = (
    ["_", "-"] + list("!'(),.:;? ") + list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    + ["@" + s for s in (
        "AA AA0 AA1 AA2 AE AE0 AE1 AE2 AH AH0 AH1 AH2 AO AO0 AO1 AO2 AW AW0 AW1 AW2 AY AY0 AY1 AY2 "
        "B CH D DH EH EH0 EH1 EH2 ER ER0 ER1 ER2 EY EY0 EY1 EY2 F G HH IH IH0 IH1 IH2 IY IY0 IY1 IY2 "
        "JH K L M N NG OW OW0 OW1 OW2 OY OY0 OY1 OY2 P R S SH T TH UH UH0 UH1 UH2 UW UW0 UW1 UW2 "
        "V W Y Z ZH").split()]
)


def test_nvidia_symbol_table_is_the_published_one(nvidia):
    assert list(NVIDIA_SYMBOLS) == _NV_PUBLISHED
    assert len(_NV_PUBLISHED) == 148
    # Only the space is spelt differently (the data dir cannot store " " as a token).
    assert nvidia.symbols[11] == SPACE and NVIDIA_SYMBOLS[11] == " "
    assert [s for i, s in enumerate(nvidia.symbols) if i != 11] == \
        [s for i, s in enumerate(_NV_PUBLISHED) if i != 11]
    assert nvidia.eos is None


def test_nvidia_ids_for_a_sentence(nvidia):
    # Hand-built from the published order: '!'=2, ','=6, '.'=7, ' '=11, 'a'=38 ... 'z'=63.
    assert nvidia.text_to_sequence("Hello, world!") == [45, 42, 49, 49, 52, 6, 11, 60, 52, 55, 49, 41, 2]
    # english_cleaners: "Dr. Smith paid $3.50." → "doctor smith paid three dollars, fifty cents."
    table = {s: i for i, s in enumerate(_NV_PUBLISHED)}
    expected = [table[c] for c in "doctor smith paid three dollars, fifty cents."]
    assert nvidia.text_to_sequence("Dr. Smith paid $3.50.") == expected
    # NVIDIA keeps inflect's hyphens and commas and reads decimals pairwise.
    assert nvidia.text_to_sequence("Mrs.") == [table[c] for c in "misess"]
    assert nvidia.text_to_sequence("22nd 3.14") == [table[c] for c in "twenty-second three point fourteen"]
    # ARPAbet in braces, as in their text_to_sequence.
    assert nvidia.text_to_sequence("{S P IY1 CH}") == [table["@S"], table["@P"], table["@IY1"], table["@CH"]]
    ids = nvidia.text_to_sequence("Turn left on {HH AW1 S T AH0 N} Street.")
    assert nvidia.sequence_to_text(ids) == "turn left on {HH AW1 S T AH0 N} street."


def test_nvidia_reports_what_it_drops(nvidia):
    tokens, unknown = nvidia.text_to_tokens('"Hi" #1')
    assert unknown == [(0, '"'), (3, '"'), (5, "#")]
    assert nvidia.sequence_to_text(nvidia.tokens_to_ids(tokens)) == "hi one"
    # NVIDIA's brace loop stops at the end of the line after a "{...}" group; same ids, but
    # the lost text is reported.
    tokens, unknown = nvidia.text_to_tokens("{HH AH0} x\nlost")
    assert tokens == ["@HH", "@AH0", SPACE, "x"]
    assert unknown == [(11, "l"), (12, "o"), (13, "s"), (14, "t")]


# ------------------------------------------------------------------ registry

def test_registry():
    assert set(FRONTEND_NAMES) == {"english_chars", "english_arpabet", "english_nvidia",
                                   "japanese", "japanese_prosody", "mandarin_pinyin"}
    with pytest.raises(ValueError, match="english_chars.*mandarin_pinyin"):
        get_frontend("klingon")
    with pytest.raises(ValueError, match="bad option"):
        get_frontend("english_chars", arpabet_probability=0.5)


def test_frontend_from_config():
    from tacowave.hparams import TextConfig
    from tacowave.text import frontend_from_config

    cfg = TextConfig(frontend="english_arpabet", arpabet_probability=0.0)
    assert frontend_from_config(cfg).arpabet_probability == 1.0
    assert frontend_from_config(cfg, training=True).arpabet_probability == 0.0
