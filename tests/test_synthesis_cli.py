"""synthesis.py input handling and errors that need no trained model."""
from __future__ import annotations

import numpy as np
import pytest

from tacowave.cli import synthesis
from tacowave.cli.common import UserError
from tacowave.synthesizer import split_sentences


def test_text_file_accepts_named_and_plain_lines(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("# comment\nhello|Hello there.\n\nJust a plain line.\n", encoding="utf-8")
    assert synthesis.read_text_file(str(path)) == [("hello", "Hello there."),
                                                   ("line_0004", "Just a plain line.")]


@pytest.mark.parametrize("content, message", [
    ("a|one\na|two\n", "duplicate names a"),
    ("../x|escape\n", "bad output name"),
    ("# only a comment\n", "holds no text lines"),
])
def test_bad_text_files_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "texts.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        synthesis.read_text_file(str(path))


def test_long_text_is_split_at_sentence_ends_short_text_is_not():
    assert split_sentences("  Hello   there. How are you?  ") == ["Hello there. How are you?"]
    long = " ".join(["This is sentence number %d." % i for i in range(20)])
    parts = split_sentences(long, max_chars=60)
    assert len(parts) == 20 and parts[3] == "This is sentence number 3."
    assert split_sentences("今日は晴れです。明日は雨です。", max_chars=5) == ["今日は晴れです。", "明日は雨です。"]
    assert split_sentences("   ") == []


def test_block_diagonal_alignment_keeps_each_sentence_block():
    a, b = np.full((2, 3), 0.5, np.float32), np.ones((4, 1), np.float32)
    out = synthesis._block_diagonal([a, b])
    assert out.shape == (6, 4)
    assert np.array_equal(out[:2, :3], a) and np.array_equal(out[2:, 3:], b)
    assert out[:2, 3:].sum() == 0 and out[2:, :3].sum() == 0


def test_alignment_png_is_written(tmp_path):
    path = tmp_path / "a.png"
    synthesis.save_alignment_png(np.eye(5, dtype=np.float32), str(path), "x")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_checkpoint_and_mel_are_exit_one_naming_the_file(tmp_path, capsys):
    assert synthesis.main([str(tmp_path / "wn.pth"), str(tmp_path / "out"),
                           "--conditional=" + str(tmp_path / "m.npy")]) == 1
    assert "wn.pth" in capsys.readouterr().err
    assert synthesis.main(["--tacotron2=" + str(tmp_path / "t2.pth"), "--text=hi",
                           str(tmp_path / "out")]) == 1
    assert "t2.pth" in capsys.readouterr().err


def test_tacotron2_and_wavenet_trained_on_different_mels_is_one_error(monkeypatch):
    """The pair is refused before any synthesis, naming each differing key and both values."""
    from types import SimpleNamespace

    import tacowave.synthesizer as synthesizer
    from tacowave.hparams import load_hparams

    presets = {"t2.pth": load_hparams("demo"), "wn.pth": load_hparams("demo", "audio.fmax=8000,audio.fmin=55")}
    monkeypatch.setattr(synthesizer, "load_model",
                        lambda path, kind, device, use_ema=True: SimpleNamespace(hp=presets[path]))
    with pytest.raises(synthesizer.SynthesisError) as err:
        synthesizer.Synthesizer(tacotron2="t2.pth", wavenet="wn.pth", device="cpu")
    msg = str(err.value)
    assert "t2.pth and wn.pth were trained on different mels" in msg
    assert "audio.fmax = 7600.0 in the Tacotron-2 but 8000.0 in the WaveNet" in msg
    assert "audio.fmin = 80.0 in the Tacotron-2 but 55.0 in the WaveNet" in msg


def test_gl_power_overrides_the_checkpoint_audio_section(monkeypatch, tmp_path, capsys):
    """--gl-power reaches Griffin-Lim; without it the checkpoint's own power is used."""
    from dataclasses import replace
    from types import SimpleNamespace

    import tacowave.synthesizer as synthesizer
    from tacowave import audio
    from tacowave.hparams import load_hparams

    hp = load_hparams("demo", "audio.griffin_lim_power=1.5")
    monkeypatch.setattr(synthesizer, "load_model",
                        lambda path, kind, device, use_ema=True: SimpleNamespace(hp=hp))
    mel = np.random.default_rng(0).random((20, hp.audio.num_mels)).astype(np.float32)
    kept = synthesizer.Synthesizer(wavenet="wn.pth", device="cpu", griffin_lim_iters=3)
    changed = synthesizer.Synthesizer(wavenet="wn.pth", device="cpu", griffin_lim_iters=3,
                                      griffin_lim_power=1.0)
    [wav_kept] = kept.vocode([mel], griffin_lim=True)
    [wav_changed] = changed.vocode([mel], griffin_lim=True)
    assert np.allclose(wav_kept, audio.inv_melspectrogram(mel, hp.audio, n_iter=3))
    assert np.allclose(wav_changed, audio.inv_melspectrogram(
        mel, replace(hp.audio, griffin_lim_power=1.0), n_iter=3))
    assert not np.allclose(wav_kept, wav_changed)
    assert synthesis.main(["--tacotron2=t2.pth", "--text=hi", "--gl-power=0", str(tmp_path / "out")]) == 1
    assert "--gl-power must be >= 0.1" in capsys.readouterr().err
    assert synthesis.main(["--tacotron2=t2.pth", "--text=hi", "--edge-silence=-0.5", str(tmp_path / "out")]) == 1
    assert "--edge-silence must be >= 0.0" in capsys.readouterr().err
