"""Mandarin front-end: pinyin splitting, hanzi via pypinyin, numbers, punctuation."""
import pytest

from tacowave.text import get_frontend
from tacowave.text.mandarin import int_to_hanzi, number_to_hanzi, parse_syllable

# THCHS30 A11_0 (its pinyin line).
THCHS30_PINYIN = ("lv4 shi4 yang2 chun1 yan1 jing3 da4 kuai4 wen2 zhang1 de5 di3 se4 si4 yue4 de5 "
                  "lin2 luan2 geng4 shi4 lv4 de5 xian1 huo2 xiu4 mei4 shi1 yi4 ang4 ran2")
THCHS30_TOKENS = ("l v4 sh i4 iang2 ch uen1 ian1 j ing3 d a4 k uai4 uen2 zh ang1 d e5 d i3 s e4 "
                  "s i4 ve4 d e5 l in2 l uan2 g eng4 sh i4 l v4 d e5 x ian1 h uo2 x iou4 m ei4 "
                  "sh i1 i4 ang4 r an2").split()


@pytest.fixture(scope="module")
def zh():
    return get_frontend("mandarin_pinyin")


def test_thchs30_pinyin_line(zh):
    tokens, unknown = zh.pinyin_to_tokens(THCHS30_PINYIN)
    assert unknown == []
    assert tokens == THCHS30_TOKENS + ["<eos>"]
    ids = zh.tokens_to_ids(tokens)
    assert zh.sequence_to_text(ids) == " ".join(THCHS30_TOKENS)


@pytest.mark.parametrize("syllable, expected", [
    ("zhong1", ["zh", "ong1"]),
    ("guo2", ["g", "uo2"]),
    ("er4", ["er4"]),
    ("a1", ["a1"]),
    ("yi1", ["i1"]),
    ("wu3", ["u3"]),
    ("yu2", ["v2"]),
    ("you3", ["iou3"]),
    ("wei4", ["uei4"]),
    ("yuan2", ["van2"]),
    ("ju4", ["j", "v4"]),
    ("qun2", ["q", "vn2"]),
    ("lv4", ["l", "v4"]),
    ("lu:4", ["l", "v4"]),
    ("lü4", ["l", "v4"]),
    ("nve4", ["n", "ve4"]),
    ("lue4", ["l", "ve4"]),
    ("liu2", ["l", "iou2"]),
    ("gui4", ["g", "uei4"]),
    ("lun2", ["l", "uen2"]),
    ("de5", ["d", "e5"]),
    ("de0", ["d", "e5"]),
    ("de", ["d", "e5"]),
    ("zhōng", ["zh", "ong1"]),
    ("n2", ["n2"]),
    ("huar1", ["h", "ua1", "er5"]),
    ("xyz1", None),
    ("zh1", None),
    ("ma6", None),
])
def test_parse_syllable(syllable, expected):
    assert parse_syllable(syllable) == expected


def test_hanzi_through_pypinyin(zh):
    pytest.importorskip("pypinyin")
    assert zh.text_to_tokens("中国") == (["zh", "ong1", "g", "uo2", "<eos>"], [])
    # Punctuation becomes pauses; the neutral tone is 5.
    tokens, _ = zh.text_to_tokens("你好，世界！我的。")
    assert tokens == "n i3 h ao3 , sh i4 j ie4 ! uo3 d e5 . <eos>".split()
    # Polyphones are resolved from context by pypinyin's phrase dictionary.
    assert zh.text_to_tokens("银行")[0] == ["in2", "h", "ang2", "<eos>"]


def test_numbers(zh):
    pytest.importorskip("pypinyin")
    assert [int_to_hanzi(n) for n in (10, 12, 101, 1010, 10001, 100010, 2000000)] == \
        ["十", "十二", "一百零一", "一千零一十", "一万零一", "十万零一十", "二百万"]
    assert number_to_hanzi("2008", next_char="年") == "二零零八"
    assert number_to_hanzi("3.5") == "三点五"
    assert number_to_hanzi("50%") == "百分之五十"
    assert zh.text_to_tokens("25")[0] == "er4 sh i2 u3 <eos>".split()


def test_unknown_characters(zh):
    pytest.importorskip("pypinyin")
    tokens, unknown = zh.text_to_tokens("中😀国ok")
    assert tokens == ["zh", "ong1", "g", "uo2", "<eos>"]
    assert unknown == [(1, "😀"), (3, "o"), (4, "k")]
    # The pinyin reader takes no hanzi.
    assert zh.pinyin_to_tokens("ni3 好")[1] == [(4, "好")]
    assert zh.text_to_tokens("") == ([], [])
    assert zh.text_to_tokens("，。") == ([], [])


def test_symbol_table(zh):
    assert len(zh.symbols) == 227
    assert zh.symbols[:6] == ["<pad>", "<eos>", ",", ".", "?", "!"]
    assert get_frontend("mandarin_pinyin").symbols == zh.symbols
    assert all(" " not in s and "|" not in s for s in zh.symbols)
