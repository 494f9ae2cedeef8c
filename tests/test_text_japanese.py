"""Japanese front-ends: pyopenjtalk phonemes and ESPnet-style prosody marks."""
import pytest

pytest.importorskip("pyopenjtalk")

from tacowave.text import get_frontend
from tacowave.text.japanese import PHONEMES, g2p, prosody_from_labels

# JSUT BASIC5000_0001.
JSUT_0001 = "水をマレーシアから買わなくてはならないのです。"
JSUT_0001_PHONES = ("m i z u o m a r e e sh i a k a r a k a w a n a k U t e w a n a r a n a i "
                    "n o d e s U").split()
JSUT_0001_PROSODY = ("^ m i [ z u o # m a [ r e ] e sh i a k a r a # k a [ w a n a ] k u t e "
                     "w a n a r a n a i n o d e s u $").split()


@pytest.fixture(scope="module")
def ja():
    return get_frontend("japanese")


@pytest.fixture(scope="module")
def jp():
    return get_frontend("japanese_prosody")


def test_g2p_of_a_jsut_sentence(ja):
    assert g2p(JSUT_0001) == JSUT_0001_PHONES
    tokens, unknown = ja.text_to_tokens(JSUT_0001)
    assert unknown == []
    assert tokens == JSUT_0001_PHONES + ["<eos>"]
    ids = ja.tokens_to_ids(tokens)
    assert ids[-1] == ja.eos_id
    assert ja.sequence_to_text(ids) == " ".join(JSUT_0001_PHONES)


def test_prosody_of_a_jsut_sentence(jp):
    tokens, unknown = jp.text_to_tokens(JSUT_0001)
    assert unknown == []
    assert tokens[0] == "^" and tokens[-1] == "$"
    assert tokens == JSUT_0001_PROSODY
    # Without the marks (and with devoicing dropped) it is the plain g2p sequence.
    marks = set("^$?#[]_")
    assert [t for t in tokens if t not in marks] == [p.lower() for p in JSUT_0001_PHONES]


def test_prosody_marks():
    jp = get_frontend("japanese_prosody")
    # The example in ESPnet's documentation of pyopenjtalk_g2p_prosody.
    assert jp.text_to_tokens("こんにちは。")[0] == "^ k o [ N n i ch i w a $".split()
    # Pause and question end.
    assert jp.text_to_tokens("これは、ペンですか？")[0] == \
        "^ k o [ r e w a _ p e ] N d e s u k a ?".split()
    # Keeping devoiced vowels is an option; the table does not change with it.
    keep = get_frontend("japanese_prosody", drop_unvoiced_vowels=False)
    assert keep.symbols == jp.symbols
    assert "U" in keep.text_to_tokens(JSUT_0001)[0]


def test_prosody_from_labels_handles_degenerate_input():
    assert prosody_from_labels([]) == []


def test_pause_in_plain_phonemes(ja):
    assert ja.text_to_tokens("これは、ペンですか？")[0] == \
        "k o r e w a pau p e N d e s U k a <eos>".split()


def test_unknown_characters(ja, jp):
    text = "今日は😀いい天気ですね！한"
    tokens, unknown = ja.text_to_tokens(text)
    assert unknown == [(3, "😀"), (12, "한")]
    assert tokens == "ky o o w a i i t e N k i d e s U n e <eos>".split()
    assert jp.text_to_tokens(text)[1] == unknown
    for fe in (ja, jp):
        assert fe.text_to_tokens("") == ([], [])
        assert fe.text_to_tokens("。") == ([], [])
        assert fe.text_to_tokens("😀") == ([], [(0, "😀")])


def test_symbol_tables(ja, jp):
    assert len(ja.symbols) == 48
    assert len(jp.symbols) == 53
    assert ja.symbols[0] == jp.symbols[0] == "<pad>"
    assert jp.eos is None
    for phone in PHONEMES:
        assert phone in ja.symbols and phone in jp.symbols
    assert all(" " not in s for s in ja.symbols + jp.symbols)
