"""The Tacotron-2 task end to end: flite speech through preprocess.py, train.py, the Synthesizer
and ``synthesis.py --gta``, plus the task's batches (padding, stop targets), the r = 2 path, the
ARPAbet re-tokenisation and the refusals of a data dir made with another front-end.

The data dir: 8 flite utterances (voices slt and awb, so two speakers) preprocessed with the
demo preset (16 kHz, hop 200, 80 mels, r = 3); ``max_frames = 200`` excludes the longest one.
The model is tiny (embeddings 32, attention RNN 64, decoder 64, post-net 32, pre-net 32) so a
step takes a fraction of a second. Torch runs single-threaded here: with two intra-op threads
on two busy shared cores the decoder's small per-step ops ran about 30x slower.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from corpus_builders import build_folder
from tacowave.cli import preprocess, synthesis, train
from tacowave.data import DataDir, DataDirError, SampleKey
from tacowave.hparams import TextConfig, load_hparams
from tacowave.text import get_frontend, split_tokens
from tacowave.training import load_checkpoint
from tacotron2.task import (Tacotron2Batch, Tacotron2Dataset, Tacotron2Item, Tacotron2Task,
                            collate_items)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 20
MAX_FRAMES = 200
# The demo preset's audio section; the character front-end, whatever the demo itself reads.
CHARS = "text.frontend=english_chars"
TINY = (CHARS + ",tacotron2.symbols_embedding_dim=32,tacotron2.encoder_embedding_dim=32,"
        "tacotron2.attention_rnn_dim=64,tacotron2.decoder_rnn_dim=64,tacotron2.postnet_embedding_dim=32,"
        "tacotron2.prenet_dim=32,tacotron2.attention_dim=32,tacotron2.speaker_embedding_dim=8,"
        "train_tacotron2.batch_size=4,train_tacotron2.learning_rate=0.003,train_tacotron2.log_interval=1,"
        f"train_tacotron2.max_frames={MAX_FRAMES},train_tacotron2.seed=5")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, speech_cache) -> str:
    root = tmp_path_factory.mktemp("tacotron2_task")
    corpus = build_folder(str(root / "corpus"), speech_cache, n=8, speakers=["slt", "awb"])
    out = str(root / "data")
    assert preprocess.main(["folder", corpus, out, "--preset=demo", "--hparams=" + CHARS, "--num-workers=1",
                            "--dev-count=2", "--eval-count=1"]) == 0
    return out


def hparams(extra: str = ""):
    return load_hparams("demo", TINY + ("," + extra if extra else ""))


def train_cli(data: str, exp: str, steps: int, extra: str = "") -> int:
    return train.main(["--preset=demo", "--model=tacotron2", f"--data-root={data}",
                       f"--checkpoint-dir={exp}", "--device=cpu", "--no-progress", "--num-workers=0",
                       f"--max-steps={steps}", "--hparams=" + TINY + ("," + extra if extra else "")])


@pytest.fixture(scope="module")
def trained(one_torch_thread, data_dir, tmp_path_factory) -> str:
    exp = str(tmp_path_factory.mktemp("tacotron2_exp") / "exp")
    assert train_cli(data_dir, exp, STEPS, f"train_tacotron2.eval_interval={STEPS},"
                                           f"train_tacotron2.checkpoint_interval={STEPS}") == 0
    return exp


def events(exp: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(exp, "log"),
                           size_guidance={"scalars": 0, "audio": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: str, value: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


class RecordingLogger:
    """Collects what ``Task.evaluate`` logs: ``calls[kind][tag] = value``."""

    def __init__(self) -> None:
        self.calls: dict[str, dict] = {"image": {}, "scalar": {}, "audio": {}, "text": {}}

    def image(self, tag, image, step):
        self.calls["image"][tag] = np.asarray(image)

    def scalar(self, tag, value, step):
        self.calls["scalar"][tag] = float(value)

    def audio(self, tag, wave, sample_rate, step):
        self.calls["audio"][tag] = (np.asarray(wave), sample_rate)

    def text(self, tag, text, step):
        self.calls["text"][tag] = text


# --------------------------------------------------------------------------- end to end


def test_trains_through_train_cli_and_loss_falls(trained, data_dir):
    acc = events(trained)
    loss = [e.value for e in acc.Scalars("train/loss")]
    assert len(loss) == STEPS and np.isfinite(loss).all()
    assert np.mean(loss[-3:]) < 0.8 * np.mean(loss[:3]), loss
    for part in ("mel", "mel_postnet", "gate", "guided_attention"):
        assert np.isfinite([e.value for e in acc.Scalars(f"train/{part}")]).all()
        assert len(acc.Scalars(f"dev/{part}")) == 1
    # Evaluation: teacher-forced images of both dev utterances, the free-running synthesis.
    images = set(acc.Tags()["images"])
    assert {"dev/alignment_0", "dev/mel_0", "dev/alignment_1", "dev/mel_1",
            "infer/alignment", "infer/mel"} <= images
    for tag in ("infer/frames_ratio", "infer/focus_rate", "infer/diagonality", "infer/stopped", "dev/text_reliance"):
        assert np.isfinite(acc.Scalars(tag)[0].value)
    # The decoder-step cap bounds the free-running synthesis: at most ~2x the reference (+10 steps).
    assert 0 < acc.Scalars("infer/frames_ratio")[0].value <= 2.5
    preview = acc.Audio("infer/griffin_lim")[0]
    assert preview.sample_rate == 16000 and preview.length_frames % 200 == 0
    assert "infer/summary/text_summary" in acc.Tags()["tensors"]

    state = load_checkpoint(os.path.join(trained, "checkpoint_latest.pth"))
    assert state["model_type"] == "tacotron2" and state["step"] == STEPS
    assert state["symbols"] == get_frontend("english_chars").symbols
    assert state["speakers"] == ["awb", "slt"] and state["frontend"] == "english_chars"


def test_over_long_utterances_are_excluded_and_reported(data_dir):
    task = Tacotron2Task(hparams(), DataDir(data_dir))
    ds = task.train_dataset()
    listed = DataDir(data_dir).utterances("train")
    over = [u for u in listed if u.n_frames > MAX_FRAMES]
    assert over, "the longest utterance should be over max_frames"
    assert ds.excluded == len(over) and len(ds) == len(listed) - len(over)
    assert f"{len(over)} over {MAX_FRAMES} frames excluded" in ds.describe()
    assert ds.lengths.max() <= MAX_FRAMES
    item = ds[SampleKey(0, 99)]
    utt = ds.utterances[0]
    fe = get_frontend("english_chars")
    assert item.text.dtype == np.int64 and item.text.tolist() == fe.tokens_to_ids(split_tokens(utt.phones))
    assert item.mel.dtype == np.float32 and item.mel.shape == (utt.n_frames, 80)
    assert np.array_equal(item.mel, np.load(os.path.join(data_dir, "mel", utt.utt_id + ".npy")))
    assert item.speaker == ["awb", "slt"].index(utt.speaker)


def test_checkpoint_speaks_through_the_synthesizer(trained):
    from tacowave.synthesizer import Synthesizer

    tts = Synthesizer(tacotron2=os.path.join(trained, "checkpoint_latest.pth"), device="cpu",
                      griffin_lim_iters=4, edge_silence_s=0.0)
    [result] = tts.text_to_mel(["The paper is thick."], speaker="slt", max_decoder_steps=12)
    frames = result.mel.shape[0]
    assert 0 < frames <= 12 * 3 and result.mel.shape[1] == 80 and np.isfinite(result.mel).all()
    assert result.stop_reasons[0] in ("gate", "max_decoder_steps")
    [wav] = tts.vocode([result.mel], griffin_lim=True)
    assert wav.shape == (frames * 200,) and np.isfinite(wav).all()


def test_synthesizer_frames_speech_with_edge_silence_and_sentence_pauses(trained):
    """The default output starts and ends with 0.15 s of silence frames and puts 0.3 s between
    the sentences of a long text; the model's own frames are untouched in between."""
    from tacowave import audio
    from tacowave.synthesizer import SynthesisError, Synthesizer

    ckpt = os.path.join(trained, "checkpoint_latest.pth")
    bare = Synthesizer(tacotron2=ckpt, device="cpu", edge_silence_s=0, sentence_pause_s=0)
    framed = Synthesizer(tacotron2=ckpt, device="cpu")
    cfg = framed.audio_config
    edge, pause = round(0.15 * 16000 / 200), round(0.3 * 16000 / 200)   # 12 and 24 frames
    silence = audio.melspectrogram(np.zeros(4000, dtype=np.float32), cfg)[0]
    assert np.all(silence == 0.0)  # db_scaled: digital silence is the floor of the scale
    text = "The paper is thick. " + "A long sentence keeps the decoder busy for a while, " * 4 + "the end."
    assert len(text) > 200
    [plain], [padded] = bare.text_to_mel([text], "slt", 10), framed.text_to_mel([text], "slt", 10)
    first = plain.alignments[0].shape[0] * 3
    assert len(plain.alignments) == 2 and plain.mel.shape[0] == 3 * sum(a.shape[0] for a in plain.alignments)
    assert padded.mel.shape[0] == plain.mel.shape[0] + 2 * edge + pause
    assert np.array_equal(padded.mel[:edge], np.tile(silence, (edge, 1)))
    assert np.array_equal(padded.mel[-edge:], np.tile(silence, (edge, 1)))
    assert np.array_equal(padded.mel[edge + first:edge + first + pause], np.tile(silence, (pause, 1)))
    assert np.array_equal(padded.mel[edge:edge + first], plain.mel[:first])
    assert np.array_equal(padded.mel[edge + first + pause:-edge], plain.mel[first:])
    with pytest.raises(SynthesisError, match="sentence_pause_s"):
        Synthesizer(tacotron2=ckpt, device="cpu", sentence_pause_s=-0.1)


def test_gta_dump_through_synthesis_cli(trained, data_dir, tmp_path, capsys):
    data = str(tmp_path / "data")
    shutil.copytree(data_dir, data)
    ckpt = os.path.join(trained, "checkpoint_latest.pth")
    argv = [f"--tacotron2={ckpt}", "--gta", f"--data-root={data}", "--device=cpu", "--batch-size=3"]
    assert synthesis.main(argv) == 0
    utts = [u for split in ("train", "dev", "eval") for u in DataDir(data).utterances(split)]
    assert f"wrote {len(utts)} GTA mel(s)" in capsys.readouterr().out
    first = {}
    for u in utts:
        gta = np.load(os.path.join(data, "gta", u.utt_id + ".npy"))
        assert gta.dtype == np.float32 and gta.shape == (u.n_frames, 80), u.utt_id
        assert np.isfinite(gta).all() and gta.std() > 0
        first[u.utt_id] = gta
    assert not [n for n in os.listdir(os.path.join(data, "gta")) if n.startswith(".tmp")]

    # A rerun with the same weights resumes: only missing files are computed.
    os.unlink(os.path.join(data, "gta", utts[0].utt_id + ".npy"))
    assert synthesis.main(argv + ["--lists=train,dev,eval"]) == 0
    assert "wrote 1 GTA mel(s)" in capsys.readouterr().out
    assert np.load(os.path.join(data, "gta", utts[0].utt_id + ".npy")).shape == first[utts[0].utt_id].shape

    # A data dir made with another audio section or symbol table is refused, naming both values.
    meta_path = os.path.join(data, "meta.json")
    meta = read_json(meta_path)
    write_json(meta_path, {**meta, "audio": {**meta["audio"], "fmax": 8000.0}})
    assert synthesis.main(argv) == 1
    err = capsys.readouterr().err
    assert "audio.fmax = 7600.0 in the checkpoint but 8000.0 in the data" in err
    write_json(meta_path, {**meta, "frontend": "english_arpabet"})
    assert synthesis.main(argv) == 1
    err = capsys.readouterr().err
    assert "'english_chars'" in err and "'english_arpabet'" in err
    write_json(meta_path, meta)
    assert synthesis.main(argv + ["--lists=train,nope"]) == 1
    assert "nope.txt not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- the task's pieces


def test_collate_pads_to_multiple_of_r_with_nvidia_stop_targets():
    rng = np.random.default_rng(0)
    items = [Tacotron2Item("a", np.array([5, 6, 7], np.int64), rng.random((5, 4), dtype=np.float32), 1),
             Tacotron2Item("b", np.array([8, 9], np.int64), rng.random((3, 4), dtype=np.float32), 0)]
    batch = collate_items(items, r=3)
    assert isinstance(batch, Tacotron2Batch)
    assert batch.text.tolist() == [[5, 6, 7], [8, 9, 0]] and batch.text_lengths.tolist() == [3, 2]
    assert batch.mels.shape == (2, 6, 4) and batch.mel_lengths.tolist() == [5, 3]
    assert torch.equal(batch.mels[0, :5], torch.from_numpy(items[0].mel))
    assert torch.equal(batch.mels[1, :3], torch.from_numpy(items[1].mel))
    assert batch.mels[0, 5:].abs().sum() == 0 and batch.mels[1, 3:].abs().sum() == 0
    # 1 from the last valid frame on (NVIDIA: gate_padded[i, len - 1:] = 1).
    assert batch.stop_targets.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert batch.speaker_ids.tolist() == [1, 0] and batch.utt_ids == ("a", "b")
    assert batch.n_frames == 8
    one = collate_items(items, r=1)
    assert one.mels.shape == (2, 5, 4)
    assert one.stop_targets.tolist() == [[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]]
    assert collate_items(items, r=2).mels.shape == (2, 6, 4)


def test_reduction_factor_two_through_the_task(data_dir, monkeypatch):
    from tacowave import audio

    # Griffin-Lim is covered by the end-to-end run; here it would only cost time.
    monkeypatch.setattr(audio, "inv_melspectrogram",
                        lambda mel, cfg, n_iter=None: np.zeros(mel.shape[0] * cfg.hop_size, np.float32))
    task = Tacotron2Task(hparams("tacotron2.n_frames_per_step=2"), DataDir(data_dir))
    task.check_data()
    torch.manual_seed(0)
    model = task.build_model()
    assert model.r == 2
    ds = task.train_dataset()
    batch = task.collate([ds[i] for i in range(min(3, len(ds)))])
    assert batch.mels.shape[1] % 2 == 0 and batch.mels.shape[1] >= int(batch.mel_lengths.max())
    assert task.count_frames(batch) == int(batch.mel_lengths.sum())
    torch.manual_seed(1)
    loss, metrics = task.compute_loss(model, batch, step=0)
    loss.backward()
    # Under autocast (bf16 here; the trainer's GPU amp) the loss stays fp32 and close to it.
    torch.manual_seed(1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss_bf16, _ = task.compute_loss(model, batch, step=0)
    assert loss_bf16.dtype == torch.float32 and float(loss_bf16) == pytest.approx(float(loss.detach()), rel=0.05)
    assert torch.isfinite(loss) and {"mel", "mel_postnet", "gate", "guided_attention"} <= set(metrics)
    assert all(not v.requires_grad for v in metrics.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for name, p in model.named_parameters() if not name.startswith("speaker_embedding"))

    logger = RecordingLogger()
    model.eval()
    dev = task.dev_dataset()
    with torch.no_grad():
        task.evaluate(model, dev, logger, step=1)
    item = dev[0]
    steps = -(-item.mel.shape[0] // 2)
    assert logger.calls["image"]["dev/alignment_0"].shape == (len(item.text), steps)
    assert logger.calls["image"]["dev/mel_0"].shape == (160, item.mel.shape[0])
    infer = logger.calls["image"]["infer/mel"]
    # Free-running is capped at 2 x reference decoder steps + 10.
    assert infer.shape[0] == 80 and infer.shape[1] <= 2 * (2 * steps + 10)
    assert logger.calls["scalar"]["infer/frames_ratio"] == pytest.approx(infer.shape[1] / item.mel.shape[0])
    assert set(logger.calls["scalar"]) >= {"infer/focus_rate", "infer/diagonality", "infer/stopped", "dev/text_reliance"}
    assert logger.calls["audio"]["infer/griffin_lim"][1] == 16000
    assert "stop reason" in logger.calls["text"]["infer/summary"]
    assert task.checkpoint_extra()["speakers"] == ["awb", "slt"]


def test_data_dir_of_another_front_end_is_refused(data_dir, tmp_path, capsys):
    code = train_cli(data_dir, str(tmp_path / "exp"), 1, "text.frontend=english_arpabet")
    assert code == 1
    err = capsys.readouterr().err
    assert "'english_arpabet'" in err and "'english_chars'" in err and "meta.json" in err
    assert not (tmp_path / "exp" / "checkpoint_latest.pth").exists()

    # Same front-end name but another symbol table (e.g. data from another tacowave version).
    data = str(tmp_path / "data")
    shutil.copytree(data_dir, data, ignore=shutil.ignore_patterns("audio", "mel"))
    meta = read_json(os.path.join(data, "meta.json"))
    write_json(os.path.join(data, "meta.json"), {**meta, "symbols": meta["symbols"][:-1]})
    with pytest.raises(DataDirError, match="symbol table"):
        Tacotron2Task(hparams(), DataDir(data)).check_data()

    # A phones column the front-end cannot read names the utterance.
    with pytest.raises(DataDirError, match=r"utterance \S+ has token\(s\)"):
        Tacotron2Dataset(DataDir(data_dir), "train", symbols=get_frontend("japanese").symbols,
                         speakers=["awb", "slt"], text=TextConfig("japanese"), num_mels=80)


def test_arpabet_probability_retokenises_with_the_item_rng(data_dir):
    fe = get_frontend("english_arpabet")
    ds = Tacotron2Dataset(DataDir(data_dir), "train", symbols=fe.symbols, speakers=["awb", "slt"],
                          text=TextConfig("english_arpabet", 0.5), num_mels=80)
    ids = [tuple(ds[SampleKey(0, seed)].text.tolist()) for seed in range(6)]
    assert ids[0] == tuple(ds[SampleKey(0, 0)].text.tolist())  # the item's seed decides
    assert len(set(ids)) > 1                                     # fresh per-word draws
    phones = {fe.symbols[i] for seq in ids for i in seq}
    assert any(t.startswith("@") for t in phones) and phones & set("abcdefghijklmnopqrstuvwxyz")
    # With probability 1 the phones column is read as it is.
    plain = Tacotron2Dataset(DataDir(data_dir), "train", symbols=fe.symbols, speakers=["awb", "slt"],
                             text=TextConfig("english_arpabet", 1.0), num_mels=80)
    assert plain[SampleKey(0, 1)].text.tolist() == fe.tokens_to_ids(split_tokens(plain.utterances[0].phones))


def _reliance_batch() -> Tacotron2Batch:
    g = torch.Generator().manual_seed(0)
    text = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 2, 0, 0]])
    mels = torch.rand(2, 12, 4, generator=g)
    mels[1, 9:] = 0
    return Tacotron2Batch(text=text, text_lengths=torch.tensor([6, 4]), mels=mels,
                          mel_lengths=torch.tensor([12, 9]), stop_targets=torch.zeros(2, 12),
                          speaker_ids=torch.zeros(2, dtype=torch.long), utt_ids=("a", "b"), n_frames=21)


class _StubOutput:
    def __init__(self, post):
        self.mel_outputs_postnet = post


def test_text_reliance_tells_a_clock_from_a_reader():
    from tacotron2.task import text_reliance

    batch = _reliance_batch()

    def clock(text, text_lengths, mels, mel_lengths, speakers):
        # predicts the same whatever the text: the failure the metric exists to catch
        return _StubOutput(mels + 0.1)

    def reader(text, text_lengths, mels, mel_lengths, speakers):
        # its error grows with every symbol that is not the real one
        wrong = (text != batch.text).float().sum(1)[:, None, None]
        return _StubOutput(mels + 0.1 * (1 + wrong))

    assert text_reliance(clock, batch) == pytest.approx(1.0)
    value = text_reliance(reader, batch)
    assert value > 1.5, value
    # padding is never shuffled in and padded frames never count
    seen = []
    text_reliance(lambda t, *a: seen.append(t.clone()) or _StubOutput(a[1] + 0.1), batch)
    assert torch.equal(seen[0][1, 4:], torch.zeros(2, dtype=torch.long))
    assert sorted(seen[0][1, :4].tolist()) == [2, 9, 10, 11]


def test_text_reliance_of_a_real_model_is_deterministic():
    from tacotron2.task import text_reliance
    from tacotron2.model import build_tacotron2
    from tacowave.hparams import Tacotron2Config

    cfg = Tacotron2Config(symbols_embedding_dim=16, encoder_embedding_dim=16, attention_rnn_dim=16,
                          attention_dim=8, prenet_dim=8, decoder_rnn_dim=16, postnet_embedding_dim=8,
                          n_frames_per_step=3)
    torch.manual_seed(0)
    model = build_tacotron2(cfg, 12, 4).eval()
    value = text_reliance(model, _reliance_batch())
    assert np.isfinite(value) and value > 0
    assert text_reliance(model, _reliance_batch()) == value  # deterministic: same dropout, same shuffle


def test_fresh_model_starts_at_the_corpus_mean_frame_with_a_silent_postnet(data_dir):
    data = DataDir(data_dir)
    task = Tacotron2Task(hparams(), data)
    frames = np.concatenate([np.load(os.path.join(data_dir, "mel", u.utt_id + ".npy"))
                             for u in data.utterances("train")])
    model = task.build_model()
    bias = model.decoder.mel_proj.bias.detach().numpy().reshape(task.r, -1)
    for row in bias:  # every one of the r frames a step emits
        np.testing.assert_allclose(row, frames.mean(0), rtol=1e-5, atol=1e-6)
    # A zero batch-norm scale on its last layer: the post-net adds nothing until it learns to.
    mel = torch.rand(2, 9, bias.shape[1])
    assert torch.all(model.postnet.eval()(mel) == 0)
