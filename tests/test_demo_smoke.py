"""The demo recipe, every stage, through the real scripts, at CI size (a handful of utterances,
a few steps per model). It proves the stages chain: corpus -> data dir -> Tacotron-2 -> GTA ->
WaveNet -> synthesis -> metrics. Quality is the full demo's business, not this test's."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_recipe_runs_every_stage(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = ["bash", os.path.join(ROOT, "recipes", "demo", "run.sh"), "--quick", "--limit", "8",
           "--corpus-dir", str(tmp_path / "corpus"), "--data-dir", str(tmp_path / "data"),
           "--exp-dir", str(tmp_path / "exp"), "--tacotron2-max-steps", "3",
           "--wavenet-max-steps", "3", "--eval-limit", "1", "--wavenet-limit", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for stage in range(7):
        assert f"stage {stage} done" in proc.stdout + proc.stderr, f"stage {stage} did not finish"

    data = tmp_path / "data"
    meta = json.loads((data / "meta.json").read_text())
    assert meta["audio"]["sample_rate"] == 16000
    train_ids = [line.split("|")[0] for line in (data / "train.txt").read_text().splitlines()]
    for utt in train_ids:
        gta = np.load(data / "gta" / f"{utt}.npy")
        assert gta.shape == np.load(data / "mel" / f"{utt}.npy").shape

    exp = tmp_path / "exp"
    assert (exp / "tacotron2" / "checkpoint_latest.pth").is_file()
    wavenet_runs = [p for p in exp.iterdir() if p.name.startswith("wavenet")]
    assert wavenet_runs and (wavenet_runs[0] / "checkpoint_latest.pth").is_file()
    wavs = sorted((exp / "synthesis").rglob("*.wav"))
    synthesised = [w for w in wavs if "refs" not in w.parts]
    assert any("wavenet" in str(w) for w in synthesised)
    assert any("griffin" in str(w) for w in synthesised)
    for wav in synthesised:
        samples, sr = sf.read(wav)
        assert sr == 16000 and len(samples) > 0 and np.isfinite(samples).all()
    metrics = sorted((exp / "metrics").glob("*.json"))
    assert metrics, "stage 6 wrote no metrics"
    report = json.loads(metrics[0].read_text())
    assert report, metrics[0]
