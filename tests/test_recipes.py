"""The recipes' scaffolding and the demo corpus: syntax, shellcheck, --help, flags, stage 0, make_corpus.

No model is trained here; the stages that need the CLIs are exercised end to end elsewhere.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import wave

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
DEMO = os.path.join(RECIPES, "demo")
ALL_RECIPES = ["demo", "ljspeech", "cmu_arctic", "jsut", "thchs30", "folder"]
# Real-corpus recipes: what stage 0 must print when the corpus is missing.
DOWNLOAD_PAGES = {
    "ljspeech": "https://keithito.com/LJ-Speech-Dataset/",
    "cmu_arctic": "http://festvox.org/cmu_arctic/",
    "jsut": "https://sites.google.com/site/shinnosuketakamichi/publication/jsut",
    "thchs30": "https://www.openslr.org/18/",
    "folder": "metadata.csv",  # nothing to download: it explains the layout instead
}
SHELL_FILES = [os.path.join(RECIPES, name, "run.sh") for name in ALL_RECIPES] + [
    os.path.join(RECIPES, "common", "recipe.sh")]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACOWAVE_")}
    env.update(extra)
    return env


def _recipe(name: str, *args: str, cwd: str = ROOT, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", os.path.join(RECIPES, name, "run.sh"), *args], cwd=cwd,
                          env=env if env is not None else _env(), capture_output=True, text=True,
                          timeout=timeout)


# ----------------------------------------------------------------------------- shell hygiene

@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: os.path.relpath(p, RECIPES))
def test_bash_syntax(path):
    proc = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed: run `bash tools/setup_env.sh` (it installs it)"
    proc = subprocess.run([shellcheck, "-x", *SHELL_FILES], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_recipe_is_strict_and_executable(name):
    path = os.path.join(RECIPES, name, "run.sh")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.stat(path).st_mode & stat.S_IXUSR
    # Each recipe uses its corpus preset; the folder recipe's is the user's choice (default ljspeech).
    preset = "ljspeech" if name == "folder" else name
    shown = "ljspeech" if name == "folder" else f"presets/{name}.json"
    assert f"--preset VALUE   (TACOWAVE_PRESET, default: {shown})" in _recipe(name, "--help").stdout
    assert os.path.isfile(os.path.join(ROOT, "presets", f"{preset}.json"))


# ----------------------------------------------------------------------------- --help and flags

@pytest.mark.parametrize("name", ALL_RECIPES)
def test_help_lists_stages_and_variables(name):
    proc = _recipe(name, "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"usage: recipes/{name}/run.sh")
    for stage in range(7):
        assert f"\n  {stage}  " in out, f"stage {stage} missing from --help"
    for option, env in [("--stage", "TACOWAVE_STAGE"), ("--stop-stage", "TACOWAVE_STOP_STAGE"),
                        ("--corpus-dir", "TACOWAVE_CORPUS_DIR"), ("--data-dir", "TACOWAVE_DATA_DIR"),
                        ("--exp-dir", "TACOWAVE_EXP_DIR"), ("--preset", "TACOWAVE_PRESET"),
                        ("--hparams", "TACOWAVE_HPARAMS"), ("--vocoder-features", "TACOWAVE_VOCODER_FEATURES")]:
        assert option in out and env in out, option
    assert f"default: data/{name})" in out and f"default: exp/{name})" in out
    assert proc.stderr == ""


def test_demo_help_shows_its_own_options_and_budgets():
    out = _recipe("demo", "--help").stdout
    assert "--quick | --no-quick" in out and "--voice VALUE" in out and "--limit VALUE" in out
    assert "--tacotron2-max-minutes VALUE   (TACOWAVE_TACOTRON2_MAX_MINUTES, default: 60)" in out
    assert "--wavenet-max-minutes VALUE   (TACOWAVE_WAVENET_MAX_MINUTES, default: 20)" in out


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_unknown_flag_is_one_line_and_nonzero(name):
    proc = _recipe(name, "--no-such-flag", "1")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "unknown option '--no-such-flag'" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--stage"], "option '--stage' needs a value"),
    (["--stage", "two"], "--stage must be a stage number"),
    (["--stage", "4", "--stop-stage", "2"], "--stage 4 is after --stop-stage 2"),
    (["--vocoder-features", "mfcc"], "--vocoder-features must be gta or gt"),
    (["--wer=maybe"], "--wer takes true or false"),
    (["extra"], "unexpected argument 'extra'"),
])
def test_bad_values_are_usage_errors(args, message):
    proc = _recipe("ljspeech", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_flags_beat_environment_which_beats_defaults():
    def shown(*args, **env):
        out = _recipe("ljspeech", *args, "--help", env=_env(**env)).stdout
        return {line.split()[0]: line for line in out.splitlines() if line.startswith("  --")}

    assert "default: 20)" in shown()["--eval-limit"]
    assert "default: 7)" in shown(TACOWAVE_EVAL_LIMIT="7")["--eval-limit"]
    assert "default: 3)" in shown("--eval-limit", "3", TACOWAVE_EVAL_LIMIT="7")["--eval-limit"]
    assert "default: 4)" in shown("--eval_limit=4")["--eval-limit"]  # underscores and '=' work too
    assert "default: false)" in shown("--no-wer")["--wer"]
    assert "default: false)" in shown("--wer", "false")["--wer"]
    assert "default: true)" in shown("--no-wer", "--wer")["--wer"]


# ----------------------------------------------------------------------------- stage 0

def _touch(root: str, *paths: str) -> None:
    for rel in paths:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").close()


FAKE_LAYOUTS = {  # empty files in the right places are enough for the layout check
    "ljspeech": ([], ["metadata.csv", "wavs/LJ001-0001.wav"]),
    "cmu_arctic": (["--speakers", "slt,awb"],
                   ["cmu_us_slt_arctic/wav/arctic_a0001.wav", "cmu_us_slt_arctic/etc/txt.done.data",
                    "cmu_us_awb_arctic/wav/arctic_a0001.wav", "cmu_us_awb_arctic/etc/txt.done.data"]),
    "jsut": ([], ["basic5000/wav/BASIC5000_0001.wav", "basic5000/transcript_utf8.txt"]),
    "thchs30": ([], ["data/A2_0.wav", "data/A2_0.wav.trn", "train/A2_0.wav", "dev/A2_33.wav",
                     "test/D4_750.wav"]),
    "folder": ([], ["metadata.csv", "wavs/take1.wav"]),
}


@pytest.mark.parametrize("name", sorted(DOWNLOAD_PAGES))
def test_stage0_missing_corpus_prints_where_to_get_it(name, tmp_path):
    missing = tmp_path / "nowhere"
    proc = _recipe(name, "--stop-stage", "0", "--corpus-dir", "nowhere", cwd=str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert DOWNLOAD_PAGES[name] in proc.stderr
    assert str(missing) in proc.stderr  # relative user paths resolve against the caller's cwd
    assert "stage 0 failed" in proc.stderr
    assert not missing.exists()  # stage 0 never downloads or creates the corpus


@pytest.mark.parametrize("name", sorted(FAKE_LAYOUTS))
def test_stage0_accepts_the_corpus_layout(name, tmp_path):
    args, files = FAKE_LAYOUTS[name]
    corpus = tmp_path / "corpus"
    _touch(str(corpus), *files)
    # The corpus dir comes from the environment here; flags are tested above.
    proc = _recipe(name, "--stop-stage", "0", *args, env=_env(TACOWAVE_CORPUS_DIR=str(corpus)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"layout found at {corpus}" in proc.stdout
    assert "===== stage 0:" in proc.stdout and "stage 0 done in" in proc.stdout
    assert "stage 1" not in proc.stdout


def test_stage0_names_the_missing_speaker(tmp_path):
    _touch(str(tmp_path), "cmu_us_slt_arctic/wav/arctic_a0001.wav", "cmu_us_slt_arctic/etc/txt.done.data")
    proc = _recipe("cmu_arctic", "--stop-stage", "0", "--speakers", "slt,bdl", "--corpus-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "cmu_us_bdl_arctic" in proc.stderr and "cmu_us_slt_arctic" not in proc.stderr
    assert "cmu_us_bdl_arctic.tar.bz2" in proc.stderr.replace("${spk}", "bdl")


def test_stage_without_its_cli_fails_clearly(tmp_path):
    """A checkout without preprocess.py: stage 1 says so and fails (it never fakes success)."""
    root = tmp_path / "checkout"
    for part in ("recipes", "tools", "presets"):
        shutil.copytree(os.path.join(ROOT, part), root / part)
    shutil.copy(os.path.join(ROOT, "setup.py"), root / "setup.py")
    # A stand-in venv whose stamp matches, so tools/setup_env.sh has nothing to install.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    digest = subprocess.run(["sha256sum"], input=(root / "setup.py").read_bytes(),
                            capture_output=True, check=True).stdout.split()[0].decode()
    (venv / ".tacowave-setup-stamp").write_text(digest + "\n")
    _touch(str(tmp_path / "lj"), "metadata.csv", "wavs/LJ001-0001.wav")
    proc = subprocess.run(["bash", str(root / "recipes/ljspeech/run.sh"), "--stop-stage", "1",
                           "--corpus-dir", str(tmp_path / "lj")], cwd=str(tmp_path),
                          env=_env(TACOWAVE_VENV=str(venv)), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stage 1 needs preprocess.py, which this checkout does not have yet" in proc.stderr
    assert "stage 1 failed" in proc.stderr
    assert "layout found" in proc.stdout  # stage 0 ran first
    assert not (root / "data").exists()


# ----------------------------------------------------------------------------- the demo corpus

def _read_lines(name: str) -> list[str]:
    with open(os.path.join(DEMO, name), encoding="utf-8") as f:
        return f.read().splitlines()


def test_sentence_lists():
    sentences, heldout = _read_lines("sentences.txt"), _read_lines("heldout.txt")
    for lines in (sentences, heldout):
        assert all(line and line == line.strip() for line in lines), "blank or padded line"
        assert all(all(" " <= c <= "~" for c in line) for line in lines), "non-ASCII-printable character"
        assert not any("|" in line for line in lines)
        assert len(set(lines)) == len(lines), "duplicate sentence"
    assert len(sentences) >= 300
    assert 15 <= len(heldout) <= 30
    assert not set(sentences) & set(heldout)
    words = [len(line.split()) for line in sentences]
    assert sum(5 <= n <= 14 for n in words) / len(words) > 0.9


def _wav_info(path: str) -> tuple[int, int, int, np.ndarray]:
    with wave.open(path, "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), data


def test_make_corpus_builds_ljspeech_layout_and_resumes(tmp_path):
    out = tmp_path / "demo_corpus"
    cmd = [sys.executable, os.path.join(DEMO, "make_corpus.py"), str(out), "--limit", "3", "--num-workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "min of audio" in proc.stdout
    sentences, heldout = _read_lines("sentences.txt")[:3], _read_lines("heldout.txt")[:3]
    for folder, prefix, texts in ((out, "DEMO", sentences), (out / "heldout", "HELDOUT", heldout)):
        lines = (folder / "metadata.csv").read_text(encoding="utf-8").splitlines()
        assert lines == [f"{prefix}-{i:04d}|{t}|{t}" for i, t in enumerate(texts, 1)]
        wavs = sorted(os.listdir(folder / "wavs"))
        assert wavs == [f"{prefix}-{i:04d}.wav" for i in range(1, 4)]  # no temporary files left
        for name in wavs:
            rate, channels, width, data = _wav_info(str(folder / "wavs" / name))
            assert (rate, channels, width) == (16000, 1, 2)
            assert 0.5 < len(data) / rate < 10.0
            assert np.sqrt(np.mean(data.astype(np.float64) ** 2)) > 300  # speech, not silence
    # Deterministic and resumable: a rerun writes nothing.
    files = [p for p in out.rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "6 wavs already there, 0 to synthesise" in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    # A deleted wav is made again, byte for byte.
    victim = out / "wavs" / "DEMO-0002.wav"
    original = victim.read_bytes()
    victim.unlink()
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=60).returncode == 0
    assert victim.read_bytes() == original


def test_make_corpus_refuses_an_unknown_voice(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(DEMO, "make_corpus.py"), str(tmp_path / "c"),
                           "--voice", "nosuchvoice", "--limit", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "no voice 'nosuchvoice'" in proc.stderr and "slt" in proc.stderr


def test_demo_stage0_builds_the_corpus_through_the_recipe(tmp_path):
    proc = _recipe("demo", "--stop-stage", "0", "--limit", "2", "--corpus-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(tmp_path / "c" / "wavs")) == ["DEMO-0001.wav", "DEMO-0002.wav"]
    assert sorted(os.listdir(tmp_path / "c" / "heldout" / "wavs")) == ["HELDOUT-0001.wav", "HELDOUT-0002.wav"]
    assert "make_corpus.py" in proc.stdout and "stage 0 done" in proc.stdout


def test_demo_quick_changes_only_defaults_the_user_left(tmp_path):
    out = _recipe("demo", "--quick", "--exp-dir", "mine", "--help").stdout
    # --help prints the values as parsed: --quick's defaults are applied later, when running.
    assert "--quick | --no-quick   (TACOWAVE_QUICK, default: true)" in out
    proc = _recipe("demo", "--quick", "--exp-dir", str(tmp_path / "mine"), "--stop-stage", "0",
                   "--corpus-dir", str(tmp_path / "c"), "--limit", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert f"exp {tmp_path / 'mine'}" in first and "data/demo_quick" in first
    assert "hparams tacotron2.max_decoder_steps=40" in first
    assert len(os.listdir(tmp_path / "c" / "wavs")) == 1


# ----------------------------------------------------------------------------- stages 1-6 wiring

# Stand-ins for the four CLIs: each call is logged (name + argv) and writes the outputs the real
# command writes, so the recipe's plumbing (arguments, stamps, budgets, skips) is checked without
# training anything. The real CLIs run end to end in the smoke test of the demo.
FAKE_CLI = r'''
import json, os, shutil, sys

def _opt(argv, name):
    for a in argv:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None

def main(cli):
    argv = sys.argv[1:]
    with open(os.environ["FAKE_CLI_LOG"], "a") as f:
        f.write(json.dumps([cli] + argv) + "\n")
    if cli == "preprocess":
        out = argv[-1]
        os.makedirs(os.path.join(out, "audio"), exist_ok=True)
        json.dump({"audio": {"sample_rate": 16000}}, open(os.path.join(out, "meta.json"), "w"))
        for split, ids in (("train", ["U1", "U2"]), ("dev", ["U3"]), ("eval", ["U4"])):
            with open(os.path.join(out, split + ".txt"), "w") as f:
                for i in ids:
                    f.write(f"{i}|spk|1600|8|text of {i}|t e k s t\n")
        import numpy as np
        np.save(os.path.join(out, "audio", "U4.npy"), np.zeros(1600, np.float32))
    elif cli == "train" and os.environ.get("FAKE_TRAIN_FAIL"):
        sys.exit("train.py: error: something went wrong before the first checkpoint")
    elif cli == "train":
        d = _opt(argv, "--checkpoint-dir")
        os.makedirs(d, exist_ok=True)
        if not os.path.exists(os.path.join(d, "checkpoint_latest.pth")):  # later: max steps reached
            open(os.path.join(d, "checkpoint_latest.pth"), "w").write("step 20\n")
    elif cli == "synthesis" and "--gta" in argv:
        d = os.path.join(_opt(argv, "--data-root"), "gta")
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "U1.npy"), "w").close()
    elif cli == "synthesis":
        out = argv[-1]
        for line in open(_opt(argv, "--text-file")):
            name = line.split("|")[0]
            shutil.copy(os.environ["FAKE_WAV"], os.path.join(out, name + ".wav"))
            for suffix in (".npy", "_alignment.npy", "_alignment.png"):
                open(os.path.join(out, name + suffix), "w").close()
    elif cli == "evaluate":
        json.dump({}, open(_opt(argv, "--out"), "w"))
        print("name MCD\nmean 1.0")
'''


def _fake_checkout(tmp_path):
    """recipes/ + tools/ + presets/ of this checkout, stub CLIs, and a stand-in venv."""
    root = tmp_path / "checkout"
    for part in ("recipes", "tools", "presets"):
        shutil.copytree(os.path.join(ROOT, part), root / part)
    shutil.copy(os.path.join(ROOT, "setup.py"), root / "setup.py")
    (root / "fakecli.py").write_text(FAKE_CLI)
    (root / "tacowave" / "cli").mkdir(parents=True)
    (root / "tacowave" / "__init__.py").write_text("")
    (root / "tacowave" / "cli" / "__init__.py").write_text("")
    for cli in ("preprocess", "train", "synthesis", "evaluate"):
        (root / f"{cli}.py").write_text(f"import fakecli\nfakecli.main({cli!r})\n")
        (root / "tacowave" / "cli" / f"{cli}.py").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    # PYTHONPATH: `import tacowave.cli.<name>` (the recipes' check) finds the stubs.
    (venv / "bin" / "python").write_text(
        f'#!/bin/sh\nPYTHONPATH="{root}" exec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    digest = subprocess.run(["sha256sum"], input=(root / "setup.py").read_bytes(),
                            capture_output=True, check=True).stdout.split()[0].decode()
    (venv / ".tacowave-setup-stamp").write_text(digest + "\n")
    return root, venv


def test_demo_stages_call_the_clis_as_documented(tmp_path):
    root, venv = _fake_checkout(tmp_path)
    log = tmp_path / "calls.jsonl"
    corpus = tmp_path / "corpus"
    env = _env(TACOWAVE_VENV=str(venv), FAKE_CLI_LOG=str(log))
    subprocess.run([sys.executable, os.path.join(DEMO, "make_corpus.py"), str(corpus), "--limit", "2"],
                   check=True, capture_output=True)
    env["FAKE_WAV"] = str(corpus / "wavs" / "DEMO-0001.wav")

    def run(*args):
        proc = subprocess.run(["bash", str(root / "recipes/demo/run.sh"), "--quick", "--corpus-dir", str(corpus),
                               "--limit", "2", *args], cwd=str(tmp_path), env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return proc.stdout, calls

    out, calls = run()
    data, exp = root / "data" / "demo_quick", root / "exp" / "demo_quick"
    preset, hp = f"--preset={root}/presets/demo.json", "--hparams=tacotron2.max_decoder_steps=40"
    t2, wn = exp / "tacotron2" / "checkpoint_latest.pth", exp / "wavenet_gta" / "checkpoint_latest.pth"
    syn = exp / "synthesis"
    assert [c[0] for c in calls] == ["preprocess", "train", "synthesis", "train"] + ["synthesis"] * 4 + ["evaluate"] * 2
    assert calls[0] == ["preprocess", preset, hp, "ljspeech", str(corpus), str(data)]
    assert calls[1] == ["train", preset, "--model=tacotron2", f"--data-root={data}",
                        f"--checkpoint-dir={exp / 'tacotron2'}", hp, "--max-steps=20", "--max-minutes=1.00"]
    assert calls[2] == ["synthesis", f"--tacotron2={t2}", "--gta", f"--data-root={data}"]
    assert calls[3] == ["train", preset, "--model=wavenet", f"--data-root={data}",
                        f"--checkpoint-dir={exp / 'wavenet_gta'}",
                        "--hparams=train_wavenet.use_gta_mels=true,tacotron2.max_decoder_steps=40",
                        "--max-steps=20", "--max-minutes=1.00"]
    assert calls[4] == ["synthesis", f"--tacotron2={t2}", f"--text-file={syn}/eval/texts.txt", "--griffin-lim",
                        f"{syn}/eval/griffin_lim"]
    assert calls[6] == ["synthesis", f"--tacotron2={t2}", f"--text-file={syn}/eval_wavenet/texts.txt",
                        f"--wavenet={wn}", f"{syn}/eval_wavenet/wavenet"]
    assert calls[8] == ["evaluate", f"--texts={syn}/eval/texts.txt", f"--out={exp}/metrics/griffin_lim.json",
                        f"--alignments={syn}/eval/griffin_lim", "--wer", f"--griffin-lim-ceiling={root}/presets/demo.json",
                        f"{syn}/eval/griffin_lim", f"{syn}/eval/refs"]
    assert calls[9][:5] == ["evaluate", f"--texts={syn}/eval_wavenet/texts.txt", f"--out={exp}/metrics/wavenet.json",
                            f"--alignments={syn}/eval_wavenet/wavenet", "--wer"]
    assert not any(c.startswith("--griffin-lim-ceiling") for c in calls[9])
    # The eval list is the held-out set (--quick: 2 sentences, 1 through WaveNet), refs are flite's.
    heldout = _read_lines("heldout.txt")
    assert (syn / "eval" / "texts.txt").read_text().splitlines() == [f"HELDOUT-{i:04d}|{heldout[i - 1]}" for i in (1, 2)]
    assert sorted(os.listdir(syn / "eval" / "refs")) == ["HELDOUT-0001.wav", "HELDOUT-0002.wav"]
    assert len((syn / "eval_wavenet" / "texts.txt").read_text().splitlines()) == 1
    assert len((syn / "fixed" / "texts.txt").read_text().splitlines()) == 3
    assert (exp / "metrics" / "griffin_lim.txt").read_text() == "name MCD\nmean 1.0\n"
    assert "stage 6 done" in out and "eval list, Tacotron-2 + WaveNet" in out

    # A rerun continues: preprocessing and training are called again (they resume by
    # themselves); GTA mels and synthesis are up to date and skipped.
    out, calls = run("--stage", "1")
    assert [c[0] for c in calls] == ["preprocess", "train", "train", "evaluate", "evaluate"]
    assert "are up to date" in out
    # A new Tacotron-2 checkpoint makes the GTA mels and the synthesis stale.
    t2.write_text("newer\n")
    out, calls = run("--stage", "3", "--stop-stage", "5", "--vocoder-features", "gta")
    assert [c[0] for c in calls] == ["synthesis", "train"] + ["synthesis"] * 4
    # The minutes budget is a total over reruns: once spent, training is skipped.
    (exp / "tacotron2" / ".recipe_seconds").write_text("60\n")
    out, calls = run("--stage", "2", "--stop-stage", "2")
    assert calls == [] and "budget of 1 min is spent" in out
    # Ground-truth mels for the vocoder: no GTA dump, a run directory of its own.
    out, calls = run("--stage", "3", "--stop-stage", "4", "--vocoder-features", "gt")
    assert [c[0] for c in calls] == ["train"]
    assert calls[0][4] == f"--checkpoint-dir={exp / 'wavenet_gt'}" and calls[0][5] == hp


def test_interpreter_runs_the_stages_without_the_venv(tmp_path):
    """--interpreter: the user's own Python runs every stage; tools/setup_env.sh is never called."""
    root, venv = _fake_checkout(tmp_path)
    (root / "tools" / "setup_env.sh").write_text("echo setup_env.sh was called >&2; exit 1\n")
    log = tmp_path / "calls.jsonl"
    _touch(str(tmp_path / "lj"), "metadata.csv", "wavs/LJ001-0001.wav")
    env = _env(FAKE_CLI_LOG=str(log), TACOWAVE_VENV=str(tmp_path / "nowhere"))
    args = ["bash", str(root / "recipes/ljspeech/run.sh"), "--stage", "1", "--stop-stage", "1",
            "--corpus-dir", str(tmp_path / "lj")]
    proc = subprocess.run(args + ["--interpreter", str(venv / "bin" / "python")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [json.loads(line)[0] for line in log.read_text().splitlines()] == ["preprocess"]
    assert f"+ {venv}/bin/python preprocess.py" in proc.stdout
    proc = subprocess.run(args + ["--interpreter", "no-such-python"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "--interpreter: no program no-such-python" in proc.stderr
    # one that lacks torch or tacowave is named before any stage runs it
    proc = subprocess.run(args + ["--interpreter", "false"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot import torch and tacowave" in proc.stderr


def test_stage_needing_a_missing_checkpoint_names_the_stage(tmp_path):
    root, venv = _fake_checkout(tmp_path)
    env = _env(TACOWAVE_VENV=str(venv), FAKE_CLI_LOG=str(tmp_path / "calls.jsonl"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    proc = subprocess.run(["bash", str(root / "recipes/ljspeech/run.sh"), "--stage", "3", "--data-dir", str(data),
                           "--exp-dir", str(tmp_path / "exp")], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"no Tacotron-2 checkpoint in {tmp_path / 'exp'}/tacotron2: run stage 2 first" in proc.stderr
    assert "stage 3 failed" in proc.stderr


def test_failed_training_run_costs_no_budget(tmp_path):
    root, venv = _fake_checkout(tmp_path)
    log = tmp_path / "calls.jsonl"
    data, exp = tmp_path / "data", tmp_path / "exp"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    argv = ["bash", str(root / "recipes/ljspeech/run.sh"), "--stage", "2", "--stop-stage", "2",
            "--data-dir", str(data), "--exp-dir", str(exp), "--tacotron2-max-minutes", "5"]
    env = _env(TACOWAVE_VENV=str(venv), FAKE_CLI_LOG=str(log), FAKE_TRAIN_FAIL="1")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "stage 2 failed" in proc.stderr
    assert not (exp / "tacotron2" / ".recipe_seconds").exists()
    del env["FAKE_TRAIN_FAIL"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int((exp / "tacotron2" / ".recipe_seconds").read_text()) < 60
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c[-1] for c in calls] == ["--max-minutes=5.00"] * 2
