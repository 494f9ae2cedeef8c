"""``preprocess.py`` end to end on tiny corpora: the data dir, resume, bad input, splits, errors."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from corpus_builders import (ENGLISH, THCHS30_SPLIT, build_cmu_arctic, build_folder, build_jsut, build_ljspeech,
                             build_thchs30)
from tacowave.audio import load_training_wav
from tacowave.cli.preprocess import main
from tacowave.features import Outcome, SplitSpec, assign_splits, held_out_size
from tacowave.hparams import load_hparams
from tacowave.text import get_frontend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args: str) -> int:
    return main([str(a) for a in args])


def read_list(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("|") for line in f]


def read_lists(out: str) -> dict[str, list[list[str]]]:
    return {name: read_list(os.path.join(out, f"{name}.txt")) for name in ("train", "dev", "eval")}


def read_skipped(out: str) -> dict[str, str]:
    return dict(line.split("|", 1) for line in open(os.path.join(out, "skipped.txt"), encoding="utf-8").read()
                .splitlines())


def mtimes(out: str) -> dict[str, int]:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(out) for f in files}


def check_data_dir(out: str, corpus: str, preset: str) -> dict:
    """Everything the data-dir contract promises, for every listed utterance."""
    meta = json.load(open(os.path.join(out, "meta.json"), encoding="utf-8"))
    hp = load_hparams(preset)
    cfg = hp.audio
    assert meta["corpus"] == corpus
    assert meta["audio"] == hp.to_dict()["audio"] and meta["text"] == hp.to_dict()["text"]
    assert meta["frontend"] == hp.text.frontend
    assert meta["symbols"] == get_frontend(hp.text.frontend).symbols
    assert meta["tacowave_version"]
    lists = read_lists(out)
    symbols = set(meta["symbols"])
    seen = set()
    for name, rows in lists.items():
        assert meta["counts"][name] == len(rows)
        for utt_id, speaker, n_samples, n_frames, text, phones in rows:
            assert utt_id not in seen and speaker in meta["speakers"] and text
            seen.add(utt_id)
            assert phones.split() and set(phones.split()) <= symbols
            n_samples, n_frames = int(n_samples), int(n_frames)
            wav = np.load(os.path.join(out, "audio", utt_id + ".npy"))
            mel = np.load(os.path.join(out, "mel", utt_id + ".npy"))
            assert wav.dtype == mel.dtype == np.float32
            assert wav.shape == (n_samples,) and n_samples == n_frames * cfg.hop_size
            assert mel.shape == (n_frames, cfg.num_mels)
            assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0
            assert np.isfinite(mel).all() and mel.min() >= 0.0 and mel.max() <= 1.0  # db_scaled
            assert mel.max() > 0.5  # speech, not silence at the floor
            assert cfg.min_duration_s <= n_samples / cfg.sample_rate <= cfg.max_duration_s
    total = sum(int(r[2]) for rows in lists.values() for r in rows) / cfg.sample_rate
    assert meta["counts"]["total_seconds"] == pytest.approx(total, abs=1e-3)
    return meta


@pytest.fixture(scope="module")
def lj_corpus(tmp_path_factory, speech_cache):
    return build_ljspeech(str(tmp_path_factory.mktemp("lj")), speech_cache, n=5)


@pytest.fixture(scope="module")
def lj_out(tmp_path_factory, lj_corpus):
    """One reference run, shared by the read-only checks."""
    out = str(tmp_path_factory.mktemp("lj_out") / "data")
    assert run("ljspeech", lj_corpus, out, "--num-workers=1") == 0
    return out


def test_ljspeech_data_dir(lj_out):
    meta = check_data_dir(lj_out, "ljspeech", "ljspeech")
    assert meta["speakers"] == ["ljspeech"]
    assert (meta["counts"]["train"], meta["counts"]["dev"], meta["counts"]["eval"], meta["counts"]["skipped"]) \
        == (3, 1, 1, 0)
    assert open(os.path.join(lj_out, "skipped.txt")).read() == ""
    rows = {r[0]: r for rows in read_lists(lj_out).values() for r in rows}
    assert rows["LJ001-0001"][4] == ENGLISH[0]  # the normalized column, no literal quotes


def test_resume_touches_nothing_and_overwrite_redoes_all(lj_corpus, lj_out, tmp_path, capsys):
    out = str(tmp_path / "data")
    shutil.copytree(lj_out, out)
    before = mtimes(out)
    assert run("ljspeech", lj_corpus, out, "--num-workers=1") == 0
    assert "0 computed, 5 already done" in capsys.readouterr().out
    assert mtimes(out) == before

    # A truncated array (an interrupted write by another tool) is not taken as complete.
    mel = os.path.join(out, "mel", "LJ001-0002.npy")
    with open(mel, "r+b") as f:
        f.truncate(200)
    assert run("ljspeech", lj_corpus, out, "--num-workers=1") == 0
    assert "1 computed, 4 already done" in capsys.readouterr().out
    assert np.load(mel).shape[1] == 80

    before = mtimes(out)
    assert run("ljspeech", lj_corpus, out, "--num-workers=1", "--overwrite") == 0
    assert "5 computed, 0 already done" in capsys.readouterr().out
    after = mtimes(out)
    assert all(after[p] != before[p] for p in before if p.endswith(".npy"))
    assert read_lists(out) == read_lists(lj_out)


def test_other_audio_section_refused_without_overwrite(lj_corpus, lj_out, tmp_path, capsys):
    out = str(tmp_path / "data")
    shutil.copytree(lj_out, out)
    assert run("ljspeech", lj_corpus, out, "--num-workers=1", "--hparams=audio.fmin=0") == 1
    err = capsys.readouterr().err
    assert "different audio section (fmin: 125.0 -> 0.0)" in err and "--overwrite" in err
    assert run("ljspeech", lj_corpus, out, "--num-workers=1", "--hparams=audio.fmin=0", "--overwrite") == 0
    assert json.load(open(os.path.join(out, "meta.json")))["audio"]["fmin"] == 0.0


def test_split_is_deterministic_and_respects_counts(lj_corpus, lj_out, tmp_path):
    out = str(tmp_path / "again")
    assert run("ljspeech", lj_corpus, out, "--num-workers=1") == 0
    assert read_lists(out) == read_lists(lj_out)
    out2 = str(tmp_path / "counts")
    assert run("ljspeech", lj_corpus, out2, "--num-workers=1", "--dev-count=2", "--eval-fraction=0") == 0
    assert [len(rows) for rows in read_lists(out2).values()] == [3, 2, 0]


def test_split_sizes_and_speaker_stratification():
    assert [held_out_size(n, 0.05, None) for n in (1, 2, 3, 100, 13100)] == [0, 0, 1, 5, 100]
    assert held_out_size(10, 0.05, 4) == 4
    kept = [Outcome(f"{spk}_{i:03d}", spk, None) for spk in ("a", "b", "c") for i in range(40)]
    kept.append(Outcome("d_000", "d", None))  # a speaker with one utterance keeps it in train
    lists = assign_splits(kept, SplitSpec(dev_fraction=0.1, eval_fraction=0.1), official=False)
    assert [len(lists[n]) for n in ("train", "dev", "eval")] == [97, 12, 12]
    for name in ("dev", "eval"):
        assert sorted({o.speaker for o in lists[name]}) == ["a", "b", "c"]
    assert {o.speaker for o in lists["train"]} == {"a", "b", "c", "d"}
    again = assign_splits(list(reversed(kept)), SplitSpec(dev_fraction=0.1, eval_fraction=0.1), official=False)
    assert {n: [o.utt_id for o in v] for n, v in again.items()} == {n: [o.utt_id for o in v]
                                                                     for n, v in lists.items()}


def test_cmu_arctic_multispeaker_with_workers(tmp_path, speech_cache):
    root = build_cmu_arctic(str(tmp_path / "cmu"), speech_cache, speakers=("slt", "awb", "rms"), n=3)
    out = str(tmp_path / "data")
    # Two worker processes: the pool path (forkserver) must give the same data dir as one process.
    assert run("cmu_arctic", root, out, "--speakers=slt,awb", "--num-workers=2") == 0
    meta = check_data_dir(out, "cmu_arctic", "cmu_arctic")
    assert meta["speakers"] == ["awb", "slt"]
    lists = read_lists(out)
    assert {r[1] for r in lists["train"]} == {"awb", "slt"}
    rows = {r[0]: r for rows in lists.values() for r in rows}
    assert len(rows) == 8 and rows["slt_arctic_a0007"][1] == "slt" and rows["awb_arctic_b0001"][1] == "awb"
    assert "superlative" in rows["slt_arctic_a0007"][4]
    inline = str(tmp_path / "inline")
    assert run("cmu_arctic", root, inline, "--speakers=slt,awb", "--num-workers=1") == 0
    assert read_lists(inline) == lists
    for utt_id in rows:
        assert np.array_equal(np.load(os.path.join(out, "mel", utt_id + ".npy")),
                              np.load(os.path.join(inline, "mel", utt_id + ".npy")))


def test_jsut_48k_resampled_to_24k(tmp_path, speech_cache):
    base = build_jsut(str(tmp_path / "jsut"), speech_cache, subsets={"basic5000": 2, "voiceactress100": 1})
    out = str(tmp_path / "data")
    assert run("jsut", str(tmp_path / "jsut"), out, "--num-workers=1", "--subsets=basic5000") == 0
    meta = check_data_dir(out, "jsut", "jsut")
    assert meta["audio"]["sample_rate"] == 24000 and meta["counts"]["train"] + meta["counts"]["dev"] == 2
    cfg = load_hparams("jsut").audio
    for rows in read_lists(out).values():
        for utt_id, _, n_samples, *_ in rows:
            src = os.path.join(base, "basic5000", "wav", utt_id + ".wav")
            assert sf.info(src).samplerate == 48000
            assert int(n_samples) == len(load_training_wav(src, cfg))
            assert int(n_samples) <= sf.info(src).frames // 2 + cfg.hop_size


def test_thchs30_official_split_and_pinyin(tmp_path, speech_cache, capsys):
    base = build_thchs30(str(tmp_path / "thchs"), speech_cache)
    out = str(tmp_path / "data")
    assert run("thchs30", base, out, "--num-workers=1") == 0
    meta = check_data_dir(out, "thchs30", "thchs30")
    assert meta["split"] == "official" and meta["speakers"] == ["A11", "B2", "C8"]
    lists = read_lists(out)
    assert {name: [r[0] for r in rows] for name, rows in lists.items()} == {
        "train": THCHS30_SPLIT["train"], "dev": THCHS30_SPLIT["dev"], "eval": THCHS30_SPLIT["test"]}
    mandarin = get_frontend("mandarin_pinyin")
    for rows in lists.values():
        for utt_id, _, _, _, text, phones in rows:
            pinyin = open(os.path.join(base, "data", utt_id + ".wav.trn"), encoding="utf-8").read().split("\n")[1]
            assert phones.split() == mandarin.pinyin_to_tokens(pinyin)[0]
    assert run("thchs30", base, str(tmp_path / "x"), "--dev-fraction=0.1") == 1
    assert "official" in capsys.readouterr().err


def test_folder_needs_a_preset(tmp_path, speech_cache, capsys):
    root = build_folder(str(tmp_path / "folder"), speech_cache, n=3, speakers=["slt", "awb"])
    assert run("folder", root, str(tmp_path / "data")) == 1
    assert "--preset" in capsys.readouterr().err
    out = str(tmp_path / "data")
    assert run("folder", root, out, "--preset=demo", "--num-workers=1") == 0
    assert check_data_dir(out, "folder", "demo")["speakers"] == ["awb", "slt"]


def _sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True)


def test_bad_input_is_skipped_with_reasons(tmp_path, speech_cache, capsys):
    base = build_ljspeech(str(tmp_path / "lj"), speech_cache, n=2)
    wavs = os.path.join(base, "wavs")
    good = os.path.join(wavs, "LJ001-0001.wav")
    extra = {  # utt_id: (normalized text, how its wav is made)
        "LJ002-0001": ("A line whose wav is missing.", None),
        "LJ002-0002": ("An empty file.", lambda p: open(p, "wb").close()),
        "LJ002-0003": ("Not audio at all.", lambda p: open(p, "w").write("RIFF? no, just text\n")),
        "LJ002-0004": ("", lambda p: shutil.copy(good, p)),
        "LJ002-0005": ("☃ ♪ 🙂", lambda p: shutil.copy(good, p)),
        "LJ002-0006": ("Far too long.", lambda p: _sox(good, good, good, good, good, p)),
        "LJ002-0007": ("Too short.", lambda p: _sox(good, p, "trim", "0.5", "0.1")),
        "LJ002-0008": ("Nothing but zeros.", lambda p: sf.write(p, np.zeros(22050, np.int16), 22050)),
        "LJ002-0009": ("Hello ☃ world, a kept utterance.", lambda p: shutil.copy(good, p)),
    }
    with open(os.path.join(base, "metadata.csv"), "a", encoding="utf-8") as f:
        for utt_id, (text, make) in extra.items():
            f.write(f"{utt_id}|{text}|{text}\n")
            if make:
                make(os.path.join(wavs, utt_id + ".wav"))
        f.write("LJ002-0010|a line with two fields\n")
    shutil.copy(good, os.path.join(wavs, "LJ003-0001.wav"))  # a wav without a transcript line

    out = str(tmp_path / "data")
    assert run("ljspeech", base, out, "--num-workers=1") == 0
    report = capsys.readouterr().out
    skipped = read_skipped(out)
    expected = {
        "LJ002-0001": "missing wav", "LJ002-0002": "unreadable audio", "LJ002-0003": "unreadable audio",
        "LJ002-0004": "empty text", "LJ002-0005": "no known symbols", "LJ002-0006": "too long",
        "LJ002-0007": "too short", "LJ002-0008": "silent audio", "LJ002-0010": "malformed transcript",
        "LJ003-0001": "missing transcript"}
    assert set(skipped) == set(expected)
    for utt_id, reason in expected.items():
        assert skipped[utt_id].startswith(reason), (utt_id, skipped[utt_id])
    assert "> audio.max_duration_s = 12.0" in skipped["LJ002-0006"]
    assert "skipped 10 utterance(s)" in report and "unreadable audio" in report

    kept = {r[0] for rows in read_lists(out).values() for r in rows}
    assert kept == {"LJ001-0001", "LJ001-0002", "LJ002-0009"}
    check_data_dir(out, "ljspeech", "ljspeech")
    assert not any(name.startswith("LJ002-000") and name != "LJ002-0009.npy"
                   for name in os.listdir(os.path.join(out, "mel")))
    unknown = open(os.path.join(out, "unknown_chars.txt"), encoding="utf-8").read()
    assert "LJ002-0009|'☃'(U+2603)" in unknown and "LJ002-0005|" in unknown
    assert "dropped unknown characters in 2 utterance(s)" in report


def test_nothing_usable_is_an_error(tmp_path, speech_cache, capsys):
    base = build_ljspeech(str(tmp_path / "lj"), speech_cache, n=1)
    for name in os.listdir(os.path.join(base, "wavs")):
        open(os.path.join(base, "wavs", name), "wb").close()
    out = str(tmp_path / "data")
    assert run("ljspeech", base, out, "--num-workers=1") == 1
    assert "no usable utterance" in capsys.readouterr().err
    assert read_skipped(out)["LJ001-0001"].startswith("unreadable audio")
    assert not os.path.exists(os.path.join(out, "meta.json"))


def test_user_errors(tmp_path, capsys):
    assert run("vctk", tmp_path, tmp_path / "o") == 1
    assert "unknown corpus 'vctk'" in capsys.readouterr().err
    assert run("ljspeech", tmp_path / "missing", tmp_path / "o") == 1
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert run("ljspeech", tmp_path, tmp_path / "o") == 1
    assert "metadata.csv not found" in capsys.readouterr().err
    assert run("jsut", tmp_path, tmp_path / "o", "--speakers=slt") == 1
    assert "'speakers' does not apply to the jsut corpus" in capsys.readouterr().err
    assert run("ljspeech", tmp_path, tmp_path / "o", "--num-workers=0") == 1
    with pytest.raises(SystemExit) as e:
        run("ljspeech")
    assert e.value.code == 2


def test_top_level_script(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "preprocess.py"), "nope", str(tmp_path),
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 1 and "unknown corpus 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert subprocess.run([sys.executable, os.path.join(ROOT, "preprocess.py"), "--help"],
                          capture_output=True).returncode == 0
