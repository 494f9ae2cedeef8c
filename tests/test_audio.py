"""The feature definition: mel geometry, normalisation round trips, Griffin-Lim, mu-law, I/O."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from tacowave import audio
from tacowave.hparams import AudioConfig, load_hparams


def _cfg(**kw) -> AudioConfig:
    base = load_hparams("cmu_arctic").audio
    return dataclasses.replace(base, **kw)


def arctic_wav_path() -> str:
    import pysptk

    return os.path.join(os.path.dirname(pysptk.__file__), "example_audio_data", "arctic_a0007.wav")


@pytest.fixture(scope="module")
def arctic() -> np.ndarray:
    return audio.load_training_wav(arctic_wav_path(), _cfg())


def test_mel_of_sinusoid_peaks_in_the_band_containing_its_frequency():
    cfg = _cfg(fmin=0.0, fmax=8000.0)
    sr, f0 = cfg.sample_rate, 1000.0
    t = np.arange(sr) / sr
    mel = audio.melspectrogram(0.5 * np.sin(2 * np.pi * f0 * t), cfg)
    peak_band = int(np.argmax(mel[10:-10].mean(axis=0)))
    # Independent computation of each filter's centre frequency on the Slaney mel scale.
    import librosa

    centres = librosa.mel_frequencies(n_mels=cfg.num_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    expected = int(np.argmin(np.abs(centres - f0)))
    assert abs(peak_band - expected) <= 1, (peak_band, expected, centres[peak_band])


@pytest.mark.parametrize("n_samples", [1, 199, 200, 201, 16000, 16123])
def test_frame_count_follows_the_padding_rule(n_samples):
    cfg = _cfg()
    wav = np.random.default_rng(0).uniform(-0.5, 0.5, n_samples).astype(np.float32)
    mel = audio.melspectrogram(wav, cfg)
    frames = -(-n_samples // cfg.hop_size)
    assert mel.shape == (frames, cfg.num_mels)
    assert audio.num_frames(n_samples, cfg.hop_size) == frames
    padded = audio.pad_to_hop(wav, cfg.hop_size)
    assert len(padded) == frames * cfg.hop_size
    assert np.array_equal(padded[:n_samples], wav) and not padded[n_samples:].any()


def test_frame_i_analyses_the_hop_it_conditions():
    """A click inside hop i must light up frame i most (the alignment WaveNet relies on)."""
    cfg = _cfg(preemphasis=0.0)
    wav = np.zeros(cfg.hop_size * 40, dtype=np.float32)
    for i in (5, 17, 33):
        wav[:] = 0
        wav[i * cfg.hop_size + cfg.hop_size // 2] = 1.0
        energy = audio.denormalize_mel(audio.melspectrogram(wav, cfg), cfg).sum(axis=1)
        assert int(np.argmax(energy)) == i


@pytest.mark.parametrize("norm", ["db_scaled", "natural_log"])
def test_normalisations_invert_exactly_within_their_range(norm):
    cfg = _cfg(mel_normalization=norm)
    rng = np.random.default_rng(1)
    # Amplitudes between the floor of each scale and a loud 0 dB-ish level.
    floor = 10 ** ((cfg.min_level_db + cfg.ref_level_db) / 20) if norm == "db_scaled" else cfg.log_clamp
    mel_amp = np.exp(rng.uniform(np.log(floor * 1.01), np.log(9.0), size=(50, cfg.num_mels)))
    back = audio.denormalize_mel(audio.normalize_mel(mel_amp, cfg), cfg)
    np.testing.assert_allclose(back, mel_amp, rtol=1e-4)
    if norm == "db_scaled":
        norm_vals = audio.normalize_mel(mel_amp, cfg)
        assert norm_vals.min() >= 0.0 and norm_vals.max() <= 1.0


def test_natural_log_normalisation_is_nvidia_style_log_of_clamped_mel():
    cfg = _cfg(mel_normalization="natural_log")
    mel_amp = np.array([[1e-7, 1e-5, 0.5, 3.0]])
    np.testing.assert_allclose(audio.normalize_mel(mel_amp, cfg),
                               np.log([[1e-5, 1e-5, 0.5, 3.0]]), rtol=1e-6)


@pytest.mark.parametrize("norm", ["db_scaled", "natural_log"])
def test_mel_to_linear_to_mel_round_trip(arctic, norm):
    """mel -> linear (NNLS) -> mel reproduces the normalised mel: the inverse is consistent."""
    cfg = _cfg(mel_normalization=norm)
    mel = audio.melspectrogram(arctic, cfg)
    linear = audio.mel_to_linear(audio.denormalize_mel(mel, cfg), cfg)
    again = audio.normalize_mel(audio.linear_to_mel(linear, cfg), cfg)
    # Stated tolerance: mean absolute error below 1% of the feature's range.
    span = 1.0 if norm == "db_scaled" else float(mel.max() - mel.min())
    assert np.mean(np.abs(again - mel)) < 0.01 * span


def test_griffin_lim_of_a_real_recording_converges(arctic):
    cfg = _cfg()
    magnitude = np.abs(audio.stft(arctic, cfg))
    rebuilt = audio.griffin_lim(magnitude, cfg, n_iter=60)
    assert len(rebuilt) == len(arctic)
    sc = audio.spectral_convergence(arctic, rebuilt, cfg)
    # Measured 0.052 with momentum 0.99 and 60 iterations (0.086 without momentum).
    assert sc < 0.10, sc
    noise = np.random.default_rng(0).uniform(-0.1, 0.1, len(arctic)).astype(np.float32)
    assert audio.spectral_convergence(arctic, noise, cfg) > 0.8


def test_mel_inversion_reproduces_the_mel_it_came_from(arctic):
    # Power 1 makes the inversion a pure inverse (the default 1.5 deliberately sharpens harmonics).
    cfg = _cfg(griffin_lim_power=1.0)
    mel = audio.melspectrogram(arctic, cfg)
    wav = audio.inv_melspectrogram(mel, cfg, n_iter=30)
    assert len(wav) == len(arctic) and np.isfinite(wav).all()
    err = np.mean(np.abs(audio.melspectrogram(wav, cfg) - mel))
    # Measured 0.0087 on this recording (the [0, 1] scale spans 100 dB, so ~0.9 dB).
    assert err < 0.02, err


def test_preemphasis_round_trip_and_stft_istft_identity(arctic):
    cfg = _cfg()
    np.testing.assert_allclose(audio.inv_preemphasis(audio.preemphasis(arctic, 0.97), 0.97), arctic,
                               atol=1e-4)
    np.testing.assert_allclose(audio.istft(audio.stft(arctic, cfg), cfg), arctic, atol=1e-4)


@pytest.mark.parametrize("channels", [256, 65536])
def test_mulaw_round_trip_and_agreement_with_nnmnkwii(channels):
    from nnmnkwii.preprocessing import inv_mulaw, mulaw

    mu = channels - 1
    x = np.linspace(-1, 1, 4001)
    np.testing.assert_allclose(audio.mulaw_encode(x, mu), mulaw(x, mu), atol=1e-12)
    np.testing.assert_allclose(audio.mulaw_decode(x, mu), inv_mulaw(x, mu), atol=1e-12)
    q = audio.mulaw_quantize(x, channels)
    # Nearest class (nnmnkwii truncates instead, which biases reconstruction by half a step).
    np.testing.assert_array_equal(q, np.round((mulaw(x, mu) + 1) / 2 * mu).astype(np.int64))
    assert q.min() == 0 and q.max() == channels - 1
    # Quantisation error is bounded by the widest mu-law step (at |x| = 1).
    step = 1.0 - audio.mulaw_decode(1.0 - 2.0 / mu, mu)
    assert np.max(np.abs(audio.inv_mulaw_quantize(q, channels) - x)) <= step
    np.testing.assert_allclose(audio.mulaw_decode(audio.mulaw_encode(x, 255), 255), x, atol=1e-12)


def test_mulaw_on_tensors_matches_numpy():
    import torch

    x = np.linspace(-1, 1, 101)
    q_np = audio.mulaw_quantize(x, 256)
    q_t = audio.mulaw_quantize(torch.from_numpy(x), 256)
    np.testing.assert_array_equal(q_t.numpy(), q_np)
    np.testing.assert_allclose(audio.inv_mulaw_quantize(q_t, 256).numpy(),
                               audio.inv_mulaw_quantize(q_np, 256), atol=1e-6)


def test_load_resamples_and_save_is_16bit_and_atomic(tmp_path, arctic):
    import soundfile as sf

    path = tmp_path / "x.wav"
    audio.save_wav(arctic, str(path), 16000)
    info = sf.info(str(path))
    assert info.subtype == "PCM_16" and info.samplerate == 16000
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]
    back = audio.load_wav(str(path), 16000)
    np.testing.assert_allclose(back, np.clip(arctic, -1, 1), atol=2.0 / 32767)
    up = audio.load_wav(str(path), 24000)
    assert abs(len(up) - len(arctic) * 1.5) <= 1


def test_failed_write_leaves_no_file(tmp_path):
    def boom(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        audio.atomic_write(str(tmp_path / "out.npy"), boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"this is not audio at all"])
def test_unreadable_audio_is_one_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError, match="bad.wav"):
        audio.load_wav(str(path))
    with pytest.raises(audio.AudioError, match="missing.wav"):
        audio.load_wav(str(tmp_path / "missing.wav"))


def test_trim_removes_leading_and_trailing_silence(arctic):
    cfg = _cfg()
    silence = np.zeros(8000, dtype=np.float32)
    padded = np.concatenate([silence, arctic, silence])
    trimmed = audio.trim_silence(padded, cfg)
    assert len(padded) - len(trimmed) >= 2 * 8000 - 2 * cfg.trim_frame_length
    assert np.max(np.abs(trimmed)) == pytest.approx(np.max(np.abs(padded)))
    assert audio.rescale_peak(trimmed, 0.5).max() <= 0.5 + 1e-6


def test_atomic_files_get_umask_permissions_not_mkstemp_ones(tmp_path):
    old = os.umask(0o022)
    try:
        audio.save_npy(np.zeros(3, dtype=np.float32), str(tmp_path / "a.npy"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.npy").stat().st_mode & 0o777 == 0o644
