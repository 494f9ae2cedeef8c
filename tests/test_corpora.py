"""Corpus readers on tiny copies of each corpus's real layout (no audio processing here)."""
from __future__ import annotations

import os

import pytest

from corpus_builders import (REAL_ARCTIC, THCHS30_SPLIT, build_cmu_arctic, build_folder, build_jsut,
                             build_ljspeech, build_thchs30, pinyin_of)
from tacowave.corpora import CORPORA, CorpusError, SkipReason, get_corpus, open_corpus


def by_id(utts):
    return {u.utt_id: u for u in utts}


def problems(utts):
    return {u.utt_id: u.problem[0] for u in utts if u.problem}


def test_registry_names_and_errors(tmp_path):
    assert set(CORPORA) == {"ljspeech", "cmu_arctic", "jsut", "thchs30", "folder"}
    with pytest.raises(CorpusError, match="unknown corpus 'vctk'.*ljspeech, cmu_arctic, jsut, thchs30, folder"):
        get_corpus("vctk")
    with pytest.raises(CorpusError, match="input directory not found"):
        open_corpus("ljspeech", str(tmp_path / "nope"))
    with pytest.raises(CorpusError, match="'speakers' does not apply to the ljspeech corpus"):
        open_corpus("ljspeech", str(tmp_path), speakers="slt")


def test_ljspeech(tmp_path, speech_cache):
    base = build_ljspeech(str(tmp_path), speech_cache, n=3)
    # The parent of LJSpeech-1.1 works as well as the folder itself.
    for in_dir in (base, str(tmp_path)):
        utts = open_corpus("ljspeech", in_dir).utterances()
        assert [u.utt_id for u in utts] == ["LJ001-0001", "LJ001-0002", "LJ001-0003"]
    u = utts[0]
    # The normalized (third) column, not the raw one with its literal quotes.
    assert u.text.startswith("Printing") and u.speaker == "ljspeech" and u.problem is None
    assert os.path.isfile(u.wav_path)

    with open(os.path.join(base, "metadata.csv"), "a", encoding="utf-8") as f:
        f.write("\nLJ009-0001|two fields only\nLJ009-0002|raw|no wav for this line\n")
    os.rename(os.path.join(base, "wavs", "LJ001-0003.wav"), os.path.join(base, "wavs", "LJ099-0001.wav"))
    got = problems(open_corpus("ljspeech", base).utterances())
    assert got == {"LJ009-0001": SkipReason.MALFORMED, "LJ009-0002": SkipReason.MISSING_WAV,
                   "LJ001-0003": SkipReason.MISSING_WAV, "LJ099-0001": SkipReason.MISSING_TRANSCRIPT}

    os.remove(os.path.join(base, "metadata.csv"))
    with pytest.raises(CorpusError, match="metadata.csv not found"):
        open_corpus("ljspeech", base)


def test_cmu_arctic(tmp_path, speech_cache):
    root = build_cmu_arctic(str(tmp_path), speech_cache, speakers=("slt", "awb"), n=2)
    utts = by_id(open_corpus("cmu_arctic", root).utterances())
    assert sorted(utts) == ["awb_arctic_b0001", "awb_arctic_b0002", "slt_arctic_a0007", "slt_arctic_a0009",
                            "slt_arctic_b0001", "slt_arctic_b0002"]
    assert utts["slt_arctic_a0009"].text == REAL_ARCTIC["arctic_a0009"][2]
    assert utts["awb_arctic_b0001"].speaker == "awb"

    only_awb = open_corpus("cmu_arctic", root, speakers="awb").utterances()
    assert {u.speaker for u in only_awb} == {"awb"}
    one_dir = open_corpus("cmu_arctic", os.path.join(root, "cmu_us_slt_arctic")).utterances()
    assert {u.speaker for u in one_dir} == {"slt"}

    with pytest.raises(CorpusError, match="speaker rms.*not found.*speakers found: awb, slt"):
        open_corpus("cmu_arctic", root, speakers=["slt", "rms"])
    with pytest.raises(CorpusError, match="unknown CMU Arctic speaker 'xyz'"):
        open_corpus("cmu_arctic", root, speakers="xyz")
    with pytest.raises(CorpusError, match="no cmu_us_<speaker>_arctic folder"):
        open_corpus("cmu_arctic", str(tmp_path / "cmu_us_slt_arctic" / "wav"))

    with open(os.path.join(root, "cmu_us_awb_arctic", "etc", "txt.done.data"), "a") as f:
        f.write("( arctic_b0009 no quotes here )\n")
    assert problems(open_corpus("cmu_arctic", root, speakers="awb").utterances()) == {
        "awb_arctic_b0009": SkipReason.MALFORMED}


def test_jsut(tmp_path, speech_cache):
    base = build_jsut(str(tmp_path), speech_cache, subsets={"basic5000": 2, "voiceactress100": 1})
    for in_dir in (base, str(tmp_path)):
        utts = by_id(open_corpus("jsut", in_dir).utterances())
        assert sorted(utts) == ["BASIC5000_0001", "BASIC5000_0002", "VOICEACTRESS100_001"]
    assert utts["BASIC5000_0001"].text == "水をマレーシアから買わなくてはならないのです。"
    assert [u.utt_id for u in open_corpus("jsut", base, subsets="voiceactress100").utterances()] == [
        "VOICEACTRESS100_001"]
    with pytest.raises(CorpusError, match="unknown JSUT subset 'basic9'"):
        open_corpus("jsut", base, subsets="basic9")
    with pytest.raises(CorpusError, match="subset travel1000.*not found"):
        open_corpus("jsut", base, subsets="basic5000,travel1000")
    with pytest.raises(CorpusError, match="no <subset>/transcript_utf8.txt"):
        open_corpus("jsut", str(tmp_path / "jsut_ver1.1" / "basic5000"))


@pytest.mark.parametrize("pointer", ["file", "symlink"])
def test_thchs30_official_split(tmp_path, speech_cache, pointer):
    base = build_thchs30(str(tmp_path), speech_cache, pointer=pointer)
    # Only the split folder's pointer leads to the transcript: the reader must follow it.
    os.remove(os.path.join(base, "data", "A11_1.wav.trn"))
    os.rename(os.path.join(base, "data", "A11_0.wav.trn"), os.path.join(base, "A11_0.moved.trn"))
    os.remove(os.path.join(base, "train", "A11_0.wav.trn"))
    with open(os.path.join(base, "train", "A11_0.wav.trn"), "w") as f:
        f.write("../A11_0.moved.trn\n")
    utts = by_id(open_corpus("thchs30", str(tmp_path)).utterances())
    assert {split: sorted(u.utt_id for u in utts.values() if u.split == split)
            for split in ("train", "dev", "eval")} == {
        "train": THCHS30_SPLIT["train"], "dev": THCHS30_SPLIT["dev"], "eval": THCHS30_SPLIT["test"]}
    a0 = utts["A11_0"]
    assert a0.speaker == "A11" and a0.problem is None
    assert a0.text == "绿 是 阳春 烟 景" and a0.pinyin == pinyin_of(a0.text)
    assert problems(utts.values()) == {"A11_1": SkipReason.MISSING_TRANSCRIPT}


def test_thchs30_layout_problems(tmp_path, speech_cache):
    base = build_thchs30(str(tmp_path), speech_cache, split={"train": ["A2_0", "A2_1"], "test": ["D4_0"]})
    os.symlink(os.path.join("..", "data", "A2_0.wav"), os.path.join(base, "test", "A2_0.wav"))
    os.remove(os.path.join(base, "train", "A2_1.wav"))
    os.remove(os.path.join(base, "train", "A2_1.wav.trn"))
    os.remove(os.path.join(base, "data", "D4_0.wav"))
    os.remove(os.path.join(base, "test", "D4_0.wav"))
    assert problems(open_corpus("thchs30", base).utterances()) == {
        "A2_0": SkipReason.DUPLICATE, "A2_1": SkipReason.NOT_IN_SPLIT, "D4_0": SkipReason.MISSING_WAV}
    for folder in ("train", "test"):
        os.rename(os.path.join(base, folder), os.path.join(base, folder + ".old"))
    with pytest.raises(CorpusError, match="none of the official split folders train, dev, test"):
        open_corpus("thchs30", base)


def test_folder(tmp_path, speech_cache):
    root = build_folder(str(tmp_path / "plain"), speech_cache, n=3)
    utts = open_corpus("folder", root).utterances()
    assert [(u.utt_id, u.speaker, u.problem) for u in utts] == [
        ("clip01", "default", None), ("clip02", "default", None), ("clip03", "default", None)]

    root = build_folder(str(tmp_path / "multi"), speech_cache, n=2, speakers=["slt", "awb"])
    os.makedirs(os.path.join(root, "wavs"))
    os.rename(os.path.join(root, "clip02.wav"), os.path.join(root, "wavs", "clip02.wav"))
    os.link(os.path.join(root, "clip01.wav"), os.path.join(root, "stray.wav"))
    with open(os.path.join(root, "metadata.csv"), "a") as f:
        f.write("gone.wav|slt|a line whose file is missing\njust one field\n")
    utts = by_id(open_corpus("folder", root).utterances())
    assert utts["clip01"].speaker == "slt" and utts["clip02"].speaker == "awb"
    assert utts["clip02"].wav_path.endswith(os.path.join("wavs", "clip02.wav"))
    assert problems(utts.values()) == {"gone": SkipReason.MISSING_WAV, "just_one_field": SkipReason.MALFORMED,
                                       "stray": SkipReason.MISSING_TRANSCRIPT}
    assert {u.utt_id for u in open_corpus("folder", root, speakers="awb").utterances()} == {"clip02"}
    with pytest.raises(CorpusError, match=r"speaker\(s\) rms not in .*speakers found: awb, slt"):
        open_corpus("folder", root, speakers="awb,rms").utterances()
    with pytest.raises(CorpusError, match="metadata.csv not found"):
        open_corpus("folder", str(tmp_path))
