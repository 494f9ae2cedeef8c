"""tacowave-evaluate / evaluate.py end to end on temporary directories."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tacowave.audio import load_wav, save_wav
from tacowave.cli.evaluate import __doc__ as DOC
from tacowave.cli.evaluate import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
GAIN = 0.8


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """ref/{a,b,d}.wav, synth/{a,b,c,d}.wav: a identical, b quieter by GAIN, c without a
    reference, d too short to analyse; align/a.npy a perfect diagonal."""
    import pysptk

    root = tmp_path_factory.mktemp("eval")
    ref, synth, align = (str(root / n) for n in ("ref", "synth", "align"))
    for d in (ref, synth, align):
        os.makedirs(d)
    clip = load_wav(os.path.join(os.path.dirname(pysptk.__file__), "example_audio_data", "arctic_a0007.wav"))
    a, b = clip[: int(1.2 * SR)], clip[int(1.2 * SR): int(2.4 * SR)]
    save_wav(a, os.path.join(ref, "a.wav"), SR)
    save_wav(a, os.path.join(synth, "a.wav"), SR)
    save_wav(b, os.path.join(ref, "b.wav"), SR)
    save_wav(GAIN * b, os.path.join(synth, "b.wav"), SR)
    save_wav(b, os.path.join(synth, "c.wav"), SR)
    save_wav(a, os.path.join(ref, "d.wav"), SR)
    save_wav(a[:500], os.path.join(synth, "d.wav"), SR)
    np.save(os.path.join(align, "a.npy"), np.eye(25)[np.repeat(np.arange(25), 2)][None])
    return {"ref": ref, "synth": synth, "align": align, "root": str(root)}


def test_end_to_end(dirs: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    out = os.path.join(dirs["root"], "results", "eval.json")
    assert main([dirs["synth"], dirs["ref"], f"--alignments={dirs['align']}", f"--out={out}"]) == 0
    captured = capsys.readouterr()
    table = captured.out
    assert "c0 included" in table
    assert re.search(r"^utterance\s+MCD\s+MCD-noDTW\s+F0RMSE\s+VUV\s+dur\s+focus\s+diag\s+mono$", table, re.M)
    assert re.search(r"^a\s+0\.000\s+0\.000\s+0\.0\s+0\.000\s+1\.00\s+1\.000\s+1\.000\s+1\.000$", table, re.M)
    assert re.search(r"^mean\s+\d", table, re.M) and re.search(r"^std\s+\d", table, re.M)
    assert re.search(r"^b\s", table, re.M) and not re.search(r"^[cd]\s", table, re.M)
    assert "c" in captured.err and "no reference" in captured.err
    assert "skipped d:" in captured.err and "shorter than one analysis frame" in captured.err

    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    utts = result["utterances"]
    assert sorted(utts) == ["a", "b"]
    assert utts["a"]["mcd_db"] < 1e-6 and utts["a"]["f0_rmse_cents"] == 0.0
    assert utts["a"]["focus_rate"] == 1.0 and utts["a"]["diagonality"] == 1.0
    # int16 rounding of the saved files keeps this within a few thousandths of a dB.
    expected = 10.0 / math.log(10.0) * math.sqrt(2.0) * abs(math.log(GAIN))
    assert utts["b"]["mcd_db"] == pytest.approx(expected, abs=0.01)
    assert utts["b"]["order"] == 23 and utts["b"]["alpha"] == 0.42 and utts["b"]["include_c0"] is True
    assert result["summary"]["mcd_db"]["n"] == 2
    assert result["summary"]["mcd_db"]["mean"] == pytest.approx((utts["a"]["mcd_db"] + utts["b"]["mcd_db"]) / 2)
    assert result["summary"]["focus_rate"]["n"] == 1
    assert result["skipped"]["no_reference"] == ["c"]
    assert result["skipped"]["no_alignment"] == ["b"]
    assert list(result["skipped"]["failed"]) == ["d"]
    assert result["settings"]["units"]["f0_rmse_cents"] == "cents"
    assert not [n for n in os.listdir(os.path.dirname(out)) if n != "eval.json"]  # no temp file left


def test_duration_ratio_is_synthesised_over_reference_seconds(dirs: dict[str, str], tmp_path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ref, synth = tmp_path / "ref", tmp_path / "synth"
    os.makedirs(ref)
    os.makedirs(synth)
    # speech of 1.2 s and 0.6 s; edge silence (here 0.5 s of it) is not speech
    speech = load_wav(os.path.join(dirs["ref"], "a.wav"))  # 1.2 s, no edge below -40 dB
    pad = np.zeros(int(0.25 * SR), np.float32)
    save_wav(np.concatenate([pad, speech, pad]), str(ref / "x.wav"), SR)
    save_wav(speech[: int(0.6 * SR)], str(synth / "x.wav"), SR)
    out = tmp_path / "r.json"
    assert main([str(synth), str(ref), "--no-f0", f"--out={out}"]) == 0
    capsys.readouterr()
    assert json.loads(out.read_text())["utterances"]["x"]["duration_ratio"] == pytest.approx(0.5, abs=0.04)


def test_options_change_the_analysis(dirs: dict[str, str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r.json")
    assert main([dirs["synth"], dirs["ref"], "--no-c0", "--no-f0", "--sample-rate=22050", f"--out={out}"]) == 0
    assert "c0 excluded" in capsys.readouterr().out
    with open(out, encoding="utf-8") as f:
        utts = json.load(f)["utterances"]
    assert utts["b"]["sample_rate"] == 22050 and utts["b"]["order"] == 34
    assert utts["b"]["mcd_db"] < 0.05  # only the gain differs, and c0 is left out
    assert utts["b"]["f0_rmse_cents"] is None


def test_missing_directory_is_one_error(dirs: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    missing = os.path.join(dirs["root"], "nope")
    assert main([missing, dirs["ref"]]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and missing in err


def test_no_pairs_and_bad_values_are_errors(dirs: dict[str, str], tmp_path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    empty = str(tmp_path)
    assert main([empty, dirs["ref"]]) == 1
    assert "no <name>.wav is in both" in capsys.readouterr().err
    assert main([dirs["synth"], dirs["ref"], "--wer"]) == 1
    assert "--wer needs --texts" in capsys.readouterr().err
    assert main([dirs["synth"], dirs["ref"], "--frame-shift=abc"]) == 1
    assert "--frame-shift" in capsys.readouterr().err
    assert main([dirs["synth"], dirs["ref"], "--sample-rate=8000"]) == 1
    assert "8000 Hz" in capsys.readouterr().err
    assert main([dirs["synth"], dirs["ref"], "--griffin-lim-ceiling=demo"]) == 1
    assert "--griffin-lim-ceiling scores WER: give --wer" in capsys.readouterr().err
    texts = tmp_path / "t.txt"
    texts.write_text("a|some words\n", encoding="utf-8")
    assert main([dirs["synth"], dirs["ref"], "--wer", f"--texts={texts}", "--griffin-lim-ceiling=nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--griffin-lim-ceiling" in err and "'nosuch'" in err


def test_corrupt_wav_is_named(dirs: dict[str, str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    synth = str(tmp_path)
    (tmp_path / "a.wav").write_bytes(b"not a wav")
    assert main([synth, dirs["ref"]]) == 1
    assert os.path.join(synth, "a.wav") in capsys.readouterr().err


def test_bad_flag_exits_2(dirs: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([dirs["synth"], dirs["ref"], "--bogus"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_help_documents_every_option() -> None:
    options = re.findall(r"^\s+(--[a-z0-9-]+)", DOC.split("Options:")[1], re.M)
    assert {"--alignments", "--texts", "--wer", "--sample-rate", "--out", "--no-c0"} <= set(options)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0
    for option in options:
        assert option in result.stdout
    assert "c0" in result.stdout and "cents" in result.stdout


def _flite_reference(tmp_path, text: str):
    """tmp_path/ref/fox.wav spoken by flite slt, and an empty tmp_path/synth."""
    ref, synth = tmp_path / "ref", tmp_path / "synth"
    ref.mkdir()
    synth.mkdir()
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(ref / "fox.wav")], check=True)
    return ref, synth


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_wer_on_flite_speech(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pocketsphinx")
    # digits in the transcript: flite says "three", the recogniser writes "three", and the
    # score compares against the spoken form, not the digit
    text = "The quick brown fox jumps over the lazy dog 3 times."
    ref, synth = _flite_reference(tmp_path, text)
    shutil.copy(ref / "fox.wav", synth / "fox.wav")
    (tmp_path / "texts.txt").write_text(f"fox|{text}\nother|unused\n", encoding="utf-8")
    out = str(tmp_path / "r.json")
    assert main([str(synth), str(ref), "--no-f0", "--wer", f"--texts={tmp_path / 'texts.txt'}",
                 f"--out={out}"]) == 0
    assert "corpus WER" in capsys.readouterr().out
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    fox = result["utterances"]["fox"]
    # pocketsphinx gets this sentence right on flite slt (measured), on both sides.
    assert fox["hypothesis"] == "the quick brown fox jumps over the lazy dog three times"
    assert fox["text_spoken"] == fox["hypothesis"]
    assert fox["wer"] == 0.0 and fox["wer_ref"] == 0.0
    assert result["summary"]["corpus_wer"] == {"wer": 0.0, "wer_ref": 0.0}


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_griffin_lim_ceiling_hears_the_reference_through_its_own_mel(tmp_path, capsys) -> None:
    """WERgl transcribes the reference as the demo's Griffin-Lim renders its training mel: the
    same hypothesis as that pipeline run here by hand, a different signal from the reference
    itself, and still understood (flite slt's fox sentence: 0 errors through Griffin-Lim,
    measured)."""
    pytest.importorskip("pocketsphinx")
    from tacowave.asr import Recognizer
    from tacowave.audio import inv_melspectrogram, load_training_wav, melspectrogram
    from tacowave.hparams import load_hparams

    text = "The quick brown fox jumps over the lazy dog."
    ref, synth = _flite_reference(tmp_path, text)
    save_wav(np.zeros(16000, dtype=np.float32), str(synth / "fox.wav"), 16000)  # silence: not understood
    (tmp_path / "texts.txt").write_text(f"fox|{text}\n", encoding="utf-8")
    out = str(tmp_path / "r.json")
    assert main([str(synth), str(ref), "--no-f0", "--wer", f"--texts={tmp_path / 'texts.txt'}",
                 "--griffin-lim-ceiling=demo", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "WERgl" in printed and "reference through its mel and Griffin-Lim 0.0% (0/9)" in printed
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    fox = result["utterances"]["fox"]
    cfg = load_hparams("demo").audio
    wav = load_training_wav(str(ref / "fox.wav"), cfg)
    rendered = inv_melspectrogram(melspectrogram(wav, cfg), cfg)
    assert float(np.abs(rendered[:len(wav)] - wav[:len(rendered)]).max()) > 0.05  # not the reference
    assert fox["hypothesis_gl"] == Recognizer().transcribe(rendered, cfg.sample_rate)
    assert fox["wer_gl"] == 0.0 and fox["wer"] > 0.5
    assert result["summary"]["corpus_wer"]["wer_gl"] == 0.0
    assert result["settings"]["griffin_lim_ceiling"] == "demo"


def test_alignments_are_read_where_synthesis_writes_them(tmp_path):
    """synthesis.py puts <name>.npy (the mel) and <name>_alignment.npy side by side."""
    import json

    import numpy as np

    from tacowave.audio import save_wav

    synth, ref = tmp_path / "synth", tmp_path / "ref"
    synth.mkdir()
    ref.mkdir()
    rng = np.random.default_rng(0)
    wav = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16000) / 16000)
           + 0.01 * rng.standard_normal(16000)).astype(np.float32)
    save_wav(wav, str(synth / "a.wav"), 16000)
    save_wav(wav, str(ref / "a.wav"), 16000)
    np.save(synth / "a.npy", rng.random((50, 80), dtype=np.float32))  # the mel: not an alignment
    np.save(synth / "a_alignment.npy", np.eye(10, dtype=np.float32))
    out = tmp_path / "m.json"
    assert main([str(synth), str(ref), f"--alignments={synth}", f"--out={out}", "--no-f0"]) == 0
    row = json.loads(out.read_text())["utterances"]["a"]
    assert row["focus_rate"] == pytest.approx(1.0)
