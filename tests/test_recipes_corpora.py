"""Every corpus recipe's stages 0-2 through the real scripts, on a tiny corpus in that corpus's
real on-disk layout: the layout check, preprocessing with the corpus preset and front-end, and
a few Tacotron-2 steps (a tiny model: the preset's audio and text sections, not its sizes)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from corpus_builders import build_cmu_arctic, build_folder, build_jsut, build_ljspeech, build_thchs30

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ",".join([
    "tacotron2.symbols_embedding_dim=32", "tacotron2.encoder_embedding_dim=32", "tacotron2.attention_rnn_dim=32",
    "tacotron2.attention_dim=16", "tacotron2.prenet_dim=16", "tacotron2.decoder_rnn_dim=32",
    "tacotron2.postnet_embedding_dim=16", "train_tacotron2.batch_size=2",
])


def _ljspeech(tmp, cache):
    return build_ljspeech(tmp, cache, n=6), []


def _cmu_arctic(tmp, cache):
    return build_cmu_arctic(tmp, cache, speakers=("slt", "awb"), n=3), ["--speakers", "slt,awb"]


def _jsut(tmp, cache):
    return build_jsut(tmp, cache, {"basic5000": 4, "voiceactress100": 2}), ["--subsets", "basic5000,voiceactress100"]


def _thchs30(tmp, cache):
    return build_thchs30(tmp, cache), []


def _folder(tmp, cache):
    return build_folder(os.path.join(tmp, "my_voice"), cache, n=5), ["--preset", "cmu_arctic"]


# recipe -> (corpus builder, sample rate of its preset, front-end, speakers in the data dir)
CORPORA = {
    "ljspeech": (_ljspeech, 22050, "english_chars", 1),
    "cmu_arctic": (_cmu_arctic, 16000, "english_chars", 2),
    "jsut": (_jsut, 24000, "japanese", 1),
    "thchs30": (_thchs30, 16000, "mandarin_pinyin", 3),
    "folder": (_folder, 16000, "english_chars", 1),
}


@pytest.mark.parametrize("recipe", list(CORPORA))
def test_recipe_stages_0_to_2_on_its_corpus_layout(recipe, tmp_path, speech_cache):
    build, sample_rate, frontend, n_speakers = CORPORA[recipe]
    corpus, extra = build(str(tmp_path / "corpus"), speech_cache)
    data, exp = tmp_path / "data", tmp_path / "exp"
    cmd = ["bash", os.path.join(ROOT, "recipes", recipe, "run.sh"), "--stop-stage", "2", "--corpus-dir", corpus,
           "--data-dir", str(data), "--exp-dir", str(exp), "--hparams", TINY, "--tacotron2-max-steps", "2", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACOWAVE_")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in range(3):
        assert f"stage {stage} done" in proc.stdout, f"stage {stage} did not finish"

    meta = json.loads((data / "meta.json").read_text())
    assert meta["audio"]["sample_rate"] == sample_rate
    assert len(meta["speakers"]) == n_speakers
    train = (data / "train.txt").read_text().splitlines()
    assert train, "no training utterances"
    for line in train:
        assert (data / "mel" / f"{line.split('|')[0]}.npy").is_file()

    ckpt = torch.load(exp / "tacotron2" / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    assert ckpt["model_type"] == "tacotron2" and ckpt["step"] == 2
    assert ckpt["hparams"]["audio"]["sample_rate"] == sample_rate
    assert ckpt["hparams"]["text"]["frontend"] == frontend
    assert ckpt["hparams"]["tacotron2"]["decoder_rnn_dim"] == 32  # --hparams reached training
    assert len(ckpt["speakers"]) == n_speakers
