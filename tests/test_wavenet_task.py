"""The WaveNet task end to end: a real CMU Arctic recording through preprocess.py, train.py and
synthesis.py, plus the task's data path (crops, shift, collate, masked loss) and its errors.

The overfit run trains a tiny WaveNet (4 layers, 16 residual channels) for 100 steps on one
real utterance (pysptk's arctic_a0007, slt, 4 s) and asserts that the MoL negative
log-likelihood of that whole utterance falls by more than 1 nat per sample (measured: about
2 nats, 11.7 -> 9.6). Torch runs single-threaded here: with two intra-op threads on two busy
shared cores the tiny convolutions of this model ran 20x slower (0.14 s vs 2.9 s per step).
"""
from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from corpus_builders import build_cmu_arctic
from tacowave.cli import preprocess, synthesis, train
from tacowave.data import DataDir, SampleKey
from tacowave.hparams import load_hparams
from tacowave.training import get_task, load_checkpoint, rng
from wavenet_vocoder.task import EVAL_SECONDS, WaveNetDataset, WaveNetTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

UTT = "slt_arctic_a0007"
STEPS = 100
#: A tiny WaveNet on top of the demo preset (16 kHz, hop 200, 80 mels, cin_pad 2).
TINY = ("wavenet.layers=4,wavenet.stacks=2,wavenet.residual_channels=16,wavenet.gate_channels=32,"
        "wavenet.skip_out_channels=16,wavenet.dropout=0.0,train_wavenet.max_time_steps=1600,"
        "train_wavenet.batch_size=1,train_wavenet.lr_schedule=\"none\",train_wavenet.learning_rate=0.01,"
        "train_wavenet.ema_decay=0.9,train_wavenet.log_interval=1,train_wavenet.seed=3")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, speech_cache) -> str:
    """preprocess.py on the two real slt recordings; train and dev then both list arctic_a0007."""
    root = tmp_path_factory.mktemp("wavenet_task")
    corpus = build_cmu_arctic(str(root / "corpus"), speech_cache, speakers=("slt",), n=0, real=True)
    out = str(root / "data")
    assert preprocess.main(["cmu_arctic", corpus, out, "--preset=demo", "--num-workers=1",
                            "--dev-count=1", "--eval-count=0"]) == 0
    lines = [line for split in ("train", "dev") for line in open(os.path.join(out, f"{split}.txt"))
             if line.startswith(UTT + "|")]
    assert len(lines) == 1
    for split in ("train", "dev"):
        with open(os.path.join(out, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write(lines[0])
    return out


def hparams(extra: str = ""):
    return load_hparams("demo", TINY + ("," + extra if extra else ""))


def train_cli(data: str, exp: str, steps: int, extra: str = "") -> int:
    return train.main(["--preset=demo", "--model=wavenet", f"--data-root={data}", f"--checkpoint-dir={exp}",
                       "--device=cpu", "--no-progress", "--num-workers=0", f"--max-steps={steps}",
                       "--hparams=" + TINY + ("," + extra if extra else "")])


def events(exp: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(exp, "log"), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    acc.Reload()
    return acc


def utterance_nll(task: WaveNetTask, model: torch.nn.Module) -> float:
    """Nats per sample of the whole training utterance, teacher-forced, in eval mode."""
    ds = WaveNetDataset(task.data, "train", max_time_steps=0, mel_pad=task.hp.wavenet.cin_pad)
    batch = task.collate([ds[0]])
    model.eval()
    with torch.no_grad():
        loss, _ = task.compute_loss(model, batch, 0)
    return float(loss)


@pytest.fixture(scope="module")
def trained(one_torch_thread, data_dir, tmp_path_factory) -> str:
    exp = str(tmp_path_factory.mktemp("wavenet_exp") / "exp")
    assert train_cli(data_dir, exp, STEPS, f"train_wavenet.eval_interval={STEPS},"
                                           f"train_wavenet.checkpoint_interval={STEPS}") == 0
    return exp


# --------------------------------------------------------------------------- end to end


def test_tiny_wavenet_overfits_one_real_utterance(trained, data_dir):
    train_loss = [e.value for e in events(trained).Scalars("train/loss")]
    assert len(train_loss) == STEPS and np.isfinite(train_loss).all()
    assert np.mean(train_loss[-10:]) < np.mean(train_loss[:5]) - 1.0, train_loss

    hp = hparams()
    task = WaveNetTask(hp, DataDir(data_dir))
    rng.seed_everything(hp.train_wavenet.seed)
    initial = utterance_nll(task, task.build_model())
    state = load_checkpoint(os.path.join(trained, "checkpoint_latest.pth"))
    final_model = task.build_model()
    final_model.load_state_dict(state["ema"])
    final = utterance_nll(task, final_model)
    assert final < initial - 1.0, (initial, final)


def test_checkpoint_carries_speakers_and_ema(trained):
    state = load_checkpoint(os.path.join(trained, "checkpoint_latest.pth"))
    assert state["model_type"] == "wavenet" and state["step"] == STEPS
    assert state["speakers"] == ["slt"]
    assert state["ema"] is not None and state["ema"].keys() == state["model"].keys()
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in state["model"])


def test_evaluation_logs_dev_loss_clips_and_plot(trained):
    acc = events(trained)
    dev = [e.value for e in acc.Scalars("dev/loss")]
    assert len(dev) == 1 and np.isfinite(dev[0])
    generated, target = acc.Audio("dev/generated"), acc.Audio("dev/target")
    assert len(generated) == len(target) == 1
    assert generated[0].length_frames == target[0].length_frames == int(EVAL_SECONDS * 16000)
    assert generated[0].sample_rate == 16000
    assert acc.Images("dev/waveform")


def test_synthesis_cli_vocodes_the_training_mel(trained, data_dir, tmp_path, capsys):
    mel_path = os.path.join(data_dir, "mel", UTT + ".npy")
    frames = np.load(mel_path).shape[0]
    out = tmp_path / "out"
    ckpt = os.path.join(trained, "checkpoint_latest.pth")
    assert synthesis.main([ckpt, str(out), f"--conditional={mel_path}", "--device=cpu"]) == 0
    wav, sr = sf.read(str(out / (UTT + ".wav")), dtype="float32")
    assert sr == 16000 and wav.shape == (frames * 200,)
    assert np.isfinite(wav).all()
    rms = float(np.sqrt(np.mean(wav ** 2)))
    assert 1e-3 < rms < 0.5, rms
    assert np.mean(np.abs(wav) > 0.99) < 0.01  # not a clipped square wave

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((frames, 40), np.float32))
    capsys.readouterr()
    assert synthesis.main([ckpt, str(tmp_path / "out2"), f"--conditional={bad}", "--device=cpu"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "expected (frames, 80)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out2" / "bad.wav").exists()


@pytest.mark.parametrize("distribution", ["mulaw", "gaussian"])
def test_mulaw_and_gaussian_outputs_train(data_dir, tmp_path, distribution):
    exp = str(tmp_path / "exp")
    assert train_cli(data_dir, exp, 3, f"wavenet.output_distribution={distribution},"
                                       "train_wavenet.eval_interval=3,train_wavenet.checkpoint_interval=3") == 0
    acc = events(exp)
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert len(losses) == 3 and np.isfinite(losses).all()
    assert np.isfinite(acc.Scalars("dev/loss")[0].value)
    assert acc.Audio("dev/generated")[0].length_frames == int(EVAL_SECONDS * 16000)
    state = load_checkpoint(os.path.join(exp, "checkpoint_latest.pth"))
    assert state["hparams"]["wavenet"]["output_distribution"] == distribution


# --------------------------------------------------------------------------- data errors


def test_gta_mels_missing_is_a_clear_error_and_present_are_used(data_dir, tmp_path, capsys):
    data = str(tmp_path / "data")
    shutil.copytree(data_dir, data)
    extra = "train_wavenet.use_gta_mels=true"
    assert train_cli(data, str(tmp_path / "exp"), 2, extra) == 1
    err = capsys.readouterr().err
    assert os.path.join(data, "gta") in err and "does not exist" in err
    assert f"synthesis.py --tacotron2=CKPT --gta --data-root={data}" in err
    assert len(err.strip().splitlines()) == 1

    # GTA mels present (here: the real ones scaled, so they are distinguishable): they are read.
    os.makedirs(os.path.join(data, "gta"))
    mel = np.load(os.path.join(data, "mel", UTT + ".npy"))
    np.save(os.path.join(data, "gta", UTT + ".npy"), mel * 0.5)
    task = WaveNetTask(hparams(extra), DataDir(data))
    task.check_data()
    _, crop, _ = task.train_dataset()[SampleKey(0, 11)]
    _, real_crop, _ = WaveNetDataset(task.data, "train", max_time_steps=1600, mel_pad=2)[SampleKey(0, 11)]
    np.testing.assert_allclose(crop, real_crop * 0.5)
    assert train_cli(data, str(tmp_path / "exp"), 2, extra) == 0


def test_mels_with_other_bins_than_cin_channels_are_refused(data_dir, tmp_path, capsys):
    data = str(tmp_path / "data")
    shutil.copytree(data_dir, data)
    path = os.path.join(data, "mel", UTT + ".npy")
    np.save(path, np.load(path)[:, :40])
    assert train_cli(data, str(tmp_path / "exp"), 2) == 1
    err = capsys.readouterr().err
    assert path in err and "wavenet.cin_channels is 80" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the data path


def test_registry_and_checkpoint_extra(data_dir):
    assert get_task("wavenet") is WaveNetTask
    task = WaveNetTask(hparams(), DataDir(data_dir))
    assert task.checkpoint_extra() == {"speakers": ["slt"]}
    # Sent to every DataLoader worker with its collate: it must pickle and stay light.
    assert len(pickle.dumps(task)) < 20_000


def test_crops_are_hop_aligned_reproducible_and_short_utterances_whole(data_dir):
    data = DataDir(data_dir)
    utt = data.utterances("train")[0]
    ds = WaveNetDataset(data, "train", max_time_steps=1650, mel_pad=2)
    audio, mel, spk = ds[SampleKey(0, 5)]
    assert audio.shape == (1600,) and mel.shape == (8 + 4, 80) and spk == 0
    again, mel_again, _ = ds[SampleKey(0, 5)]
    assert np.array_equal(audio, again) and np.array_equal(mel, mel_again)
    # Locate the crop in the utterance: its mel frames are the matching ones (plus context).
    full_audio = data.read_audio(utt.utt_id)
    full_mel = data.read_mel(utt.utt_id)
    starts = [f for f in range(utt.n_frames - 7) if np.array_equal(full_audio[f * 200:f * 200 + 1600], audio)]
    assert len(starts) == 1
    f0 = starts[0]
    padded = np.pad(full_mel, ((2, 2), (0, 0)), mode="edge")
    assert np.array_equal(mel, padded[f0:f0 + 12])
    assert list(ds.lengths) == [8]

    whole = WaveNetDataset(data, "train", max_time_steps=10 ** 7, mel_pad=2)
    audio, mel, _ = whole[SampleKey(0, 5)]
    assert audio.shape == (utt.n_samples,) and mel.shape == (utt.n_frames + 4, 80)


def test_collate_pads_and_masks(data_dir):
    task = WaveNetTask(hparams(), DataDir(data_dir))
    long_item = (np.ones(1000, np.float32), np.arange(5 * 3, dtype=np.float32).reshape(5, 3) + 1, 0)
    short_item = (np.full(400, 0.5, np.float32), np.full((2 + 2, 3), 7.0, np.float32), 0)
    batch = task.collate([long_item, short_item])
    assert batch["audio"].shape == batch["mask"].shape == (2, 1000)
    assert batch["mels"].shape == (2, 3, 5) and batch["speakers"].tolist() == [0, 0]
    assert batch["lengths"].tolist() == [1000, 400]
    assert batch["mask"][1, :400].all() and not batch["mask"][1, 400:].any() and batch["mask"][0].all()
    assert (batch["audio"][1, 400:] == 0).all() and (batch["audio"][1, :400] == 0.5).all()
    assert torch.equal(batch["mels"][0], torch.from_numpy(long_item[1].T))
    assert (batch["mels"][1] == 7.0).all()  # edge-padded past the short item's end
    assert task.count_frames(batch) == 1400


@pytest.mark.parametrize("distribution", ["mol", "mulaw"])
def test_input_is_the_target_shifted_behind_the_initial_silence(data_dir, distribution):
    task = WaveNetTask(hparams(f"wavenet.output_distribution={distribution}"), DataDir(data_dir))
    model = task.build_model()
    audio = torch.tensor([[0.3, -0.2, 0.9, 0.05], [0.1, 0.2, 0.3, 0.4]])
    x = task.model_input(audio)
    assert torch.equal(x[:, :, :1], model.initial_input(2))
    if distribution == "mulaw":
        from tacowave.audio import mulaw_quantize

        assert x.shape == (2, 256, 4) and torch.equal(x.sum(1), torch.ones(2, 4))
        assert torch.equal(x.argmax(1)[:, 1:], mulaw_quantize(audio[:, :-1], 256))
    else:
        assert x.shape == (2, 1, 4) and torch.equal(x[:, 0, 1:], audio[:, :-1])


def test_loss_is_the_mean_of_per_item_masked_means(data_dir):
    task = WaveNetTask(hparams(), DataDir(data_dir))
    rng.seed_everything(0)
    model = task.build_model().eval()
    ds = task.train_dataset()
    long_item = ds[SampleKey(0, 1)]
    short = WaveNetDataset(task.data, "train", max_time_steps=800, mel_pad=2)[SampleKey(0, 2)]
    with torch.no_grad():
        both, metrics = task.compute_loss(model, task.collate([long_item, short]), 0)
        alone = [float(task.compute_loss(model, task.collate([item]), 0)[0]) for item in (long_item, short)]
    assert metrics == {}
    # Only the upsampler's smoothing at the short item's last frame sees the padding.
    assert float(both) == pytest.approx(np.mean(alone), rel=1e-3)
