"""Objective evaluation: MCD with DTW, log-F0 RMSE and V/UV error, attention quality, RTF.

Spectral and F0 metrics follow the recipe of ESPnet / ParallelWaveGAN's ``evaluate_mcd`` and
``evaluate_f0`` so that numbers are comparable with published ones:

- **Mel-cepstrum**: the waveform is scaled to the int16 range, cut into frames of
  ``frame_length`` samples every ``frame_shift`` samples (no padding: ``(T - frame_length) //
  frame_shift + 1`` frames, frame ``i`` covers samples ``[i*shift, i*shift + frame_length)``),
  windowed by SPTK's (power-normalised) Hamming window and analysed by ``pysptk.mcep`` with
  ``etype=1, eps=1e-6``. Order and all-pass constant come from :data:`MCEP_PARAMS` by sample
  rate unless given. The result has ``order + 1`` coefficients ``c0 .. c_order`` per frame.
- **DTW**: ``fastdtw`` (approximate multi-resolution DTW, radius 1 by default) with the
  Euclidean distance between the synthesised and the reference mel-cepstra, *all* coefficients
  including c0, exactly as ESPnet does.
- **MCD** = mean over the path of ``(10 / ln 10) * sqrt(2 * sum_d (c_d - c'_d)^2)`` in dB.
  ``include_c0=True`` (the default, ESPnet's choice) sums over ``d = 0 .. order``; ``False``
  sums over ``d = 1 .. order`` (c0 is the log gain, so it then ignores loudness). The
  "no DTW" variant pairs frame ``i`` with frame ``i`` over the shorter length: a diagnostic that
  shows how much of the distance is timing.
- **F0**: ``pyworld.harvest`` (40–800 Hz by default) with frame period ``frame_shift``; harvest
  frame ``k`` sits at sample ``k * frame_shift``, so mel-cepstrum frame ``i`` (centred at
  ``i * shift + frame_length / 2``) is paired with F0 frame ``round(i + frame_length / (2 *
  shift))``. Frames are aligned by the *same* DTW path as the MCD. log-F0 RMSE is over path
  frames voiced in both signals and is reported in **cents** (``1200 * log2``; ESPnet's
  natural-log-Hz value is ``cents * ln 2 / 1200``, see :attr:`F0Errors.log_f0_rmse`). V/UV error
  is the fraction of path frames whose voiced/unvoiced decisions differ.

Attention metrics take one alignment matrix ``(T_dec, T_enc)`` (decoder steps × encoder
positions, rows normally summing to 1) and are pure numpy. The real-time factor is defined as
**compute seconds ÷ audio seconds** (lower is better; < 1 is faster than real time).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Callable

import numpy as np


class MetricError(ValueError):
    """A metric cannot be computed on these inputs (too short, unsupported rate, bad shape)."""


# (order, all-pass alpha) by sample rate: the values ESPnet / ParallelWaveGAN use.
MCEP_PARAMS: dict[int, tuple[int, float]] = {
    16000: (23, 0.42),
    22050: (34, 0.45),
    24000: (34, 0.46),
    44100: (39, 0.53),
    48000: (39, 0.55),
}

# (10 / ln 10) turns a natural-log cepstral distance into decibels.
_DB = 10.0 / math.log(10.0)
# Cepstra are computed on int16-scaled samples, as the field reads wavs as int16; the scale
# matters only through the analysis floor eps=1e-6, but keeps numbers comparable.
_INT16_SCALE = 32768.0
_CENTS_PER_LN = 1200.0 / math.log(2.0)


def _import(name: str) -> ModuleType:
    """Import an evaluation dependency, or say which extra installs it."""
    import importlib

    try:
        with warnings.catch_warnings():
            # pysptk 1.0 imports the deprecated pkg_resources; nothing a caller can act on.
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"{name} is needed for evaluation metrics: pip install 'tacowave[eval]'") from None


# --------------------------------------------------------------------------- mel-cepstral distortion


def mcep_params(sample_rate: int) -> tuple[int, float]:
    """Mel-cepstrum ``(order, alpha)`` for a sample rate from :data:`MCEP_PARAMS`.

    Raises :class:`MetricError` for a rate not in the table (give order and alpha explicitly,
    or resample to a listed rate).
    """
    try:
        return MCEP_PARAMS[int(sample_rate)]
    except KeyError:
        rates = ", ".join(str(r) for r in MCEP_PARAMS)
        raise MetricError(f"no default mel-cepstrum order/alpha for {sample_rate} Hz (known: {rates} Hz); "
                          "resample to one of them or give order and alpha") from None


def _resolve_mcep(sample_rate: int, order: int | None, alpha: float | None) -> tuple[int, float]:
    """Fill whichever of ``order`` / ``alpha`` is None from :data:`MCEP_PARAMS`."""
    if order is not None and alpha is not None:
        return int(order), float(alpha)
    default_order, default_alpha = mcep_params(sample_rate)
    return (default_order if order is None else int(order)), (default_alpha if alpha is None else float(alpha))


def _frames(wav: np.ndarray, frame_length: int, frame_shift: int) -> np.ndarray:
    """``(T,)`` -> ``(n_frames, frame_length)`` int16-scaled float64 view, no padding."""
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim != 1:
        raise MetricError(f"expected a mono waveform of shape (T,), got shape {x.shape}")
    if frame_length <= 0 or frame_shift <= 0:
        raise MetricError(f"frame_length and frame_shift must be positive, got {frame_length}, {frame_shift}")
    if len(x) < frame_length:
        raise MetricError(f"waveform of {len(x)} samples is shorter than one analysis frame "
                          f"({frame_length} samples)")
    return np.lib.stride_tricks.sliding_window_view(x * _INT16_SCALE, frame_length)[::frame_shift]


def mel_cepstrum(wav: np.ndarray, sample_rate: int, *, frame_length: int = 1024, frame_shift: int = 256,
                 order: int | None = None, alpha: float | None = None) -> np.ndarray:
    """Mel-cepstra of a waveform in [-1, 1] the ESPnet way (see the module docstring).

    Args:
        wav: ``(T,)`` float samples in [-1, 1], ``T >= frame_length``.
        sample_rate: Hz; picks ``order``/``alpha`` from :data:`MCEP_PARAMS` when they are None.
    Returns:
        ``(n_frames, order + 1)`` float64, column 0 is c0.
    """
    pysptk = _import("pysptk")
    order, alpha = _resolve_mcep(sample_rate, order, alpha)
    frames = _frames(wav, frame_length, frame_shift) * pysptk.sptk.hamming(frame_length)
    return np.atleast_2d(pysptk.mcep(frames, order=order, alpha=alpha, etype=1, eps=1e-6))


def dtw_path(x: np.ndarray, y: np.ndarray, radius: int = 1) -> np.ndarray:
    """fastdtw alignment of two feature sequences with the Euclidean distance.

    Args:
        x: ``(N, D)``; y: ``(M, D)``.
        radius: fastdtw's search radius around the coarser resolution's path (1 = ESPnet).
    Returns:
        ``(L, 2)`` int64 path of ``(i, j)`` index pairs, monotone, from (0, 0) to (N-1, M-1).
    """
    fastdtw = _import("fastdtw").fastdtw
    from scipy.spatial.distance import euclidean

    _, path = fastdtw(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64),
                      radius=radius, dist=euclidean)
    return np.asarray(path, dtype=np.int64).reshape(-1, 2)


def _aligned_pairs(n_x: int, n_y: int, path: np.ndarray | None) -> np.ndarray:
    if path is None:
        idx = np.arange(min(n_x, n_y))
        return np.stack([idx, idx], axis=1)
    path = np.asarray(path, dtype=np.int64)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) == 0:
        raise MetricError(f"a DTW path must have shape (L, 2) with L > 0, got {path.shape}")
    return path


def mcd_from_cepstra(mc_synth: np.ndarray, mc_ref: np.ndarray, path: np.ndarray | None = None,
                     include_c0: bool = True) -> float:
    """MCD in dB between two mel-cepstrum sequences.

    ``mean over (i, j) in path of (10 / ln 10) * sqrt(2 * sum_d (mc_synth[i, d] - mc_ref[j, d])^2)``
    with ``d`` from 0 (``include_c0``) or 1 to the last coefficient.

    Args:
        mc_synth: ``(N, D)``; mc_ref: ``(M, D)``.
        path: ``(L, 2)`` index pairs (e.g. from :func:`dtw_path`); None pairs frame ``i`` with
            frame ``i`` over ``min(N, M)`` frames (the no-DTW diagnostic).
    """
    a = np.atleast_2d(np.asarray(mc_synth, dtype=np.float64))
    b = np.atleast_2d(np.asarray(mc_ref, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise MetricError(f"mel-cepstra differ in dimension: {a.shape[1]} vs {b.shape[1]}")
    pairs = _aligned_pairs(len(a), len(b), path)
    start = 0 if include_c0 else 1
    diff = a[pairs[:, 0], start:] - b[pairs[:, 1], start:]
    return float(np.mean(_DB * np.sqrt(2.0 * np.sum(diff * diff, axis=1))))


def mel_cepstral_distortion(synth: np.ndarray, ref: np.ndarray, sample_rate: int, *,
                            frame_length: int = 1024, frame_shift: int = 256, order: int | None = None,
                            alpha: float | None = None, include_c0: bool = True, use_dtw: bool = True,
                            dtw_radius: int = 1) -> float:
    """MCD in dB between two waveforms at ``sample_rate`` (ESPnet recipe; c0 included by default).

    ``use_dtw=False`` gives the frame-aligned, truncated variant.
    """
    mc_s = mel_cepstrum(synth, sample_rate, frame_length=frame_length, frame_shift=frame_shift,
                        order=order, alpha=alpha)
    mc_r = mel_cepstrum(ref, sample_rate, frame_length=frame_length, frame_shift=frame_shift,
                        order=order, alpha=alpha)
    path = dtw_path(mc_s, mc_r, dtw_radius) if use_dtw else None
    return mcd_from_cepstra(mc_s, mc_r, path, include_c0)


# --------------------------------------------------------------------------- F0


def harvest_f0(wav: np.ndarray, sample_rate: int, *, frame_shift: int = 256, f0_floor: float = 40.0,
               f0_ceil: float = 800.0) -> np.ndarray:
    """F0 contour by WORLD's harvest: ``(T,)`` -> ``(T // frame_shift + 1,)`` Hz, 0 = unvoiced.

    Frame ``k`` is centred on sample ``k * frame_shift``.
    """
    pyworld = _import("pyworld")
    if not 0 < f0_floor < f0_ceil:
        raise MetricError(f"need 0 < f0_floor < f0_ceil, got {f0_floor}, {f0_ceil}")
    x = np.ascontiguousarray(np.asarray(wav, dtype=np.float64) * _INT16_SCALE)
    f0, _ = pyworld.harvest(x, sample_rate, f0_floor=float(f0_floor), f0_ceil=float(f0_ceil),
                            frame_period=1000.0 * frame_shift / sample_rate)
    return f0


@dataclass(frozen=True)
class F0Errors:
    """F0 agreement over an alignment path.

    ``rmse_cents`` is NaN when no path frame is voiced in both signals.
    """

    rmse_cents: float
    vuv_error: float
    voiced_frames: int
    path_frames: int

    @property
    def log_f0_rmse(self) -> float:
        """The same RMSE in natural-log Hz (ESPnet / ParallelWaveGAN's unit)."""
        return self.rmse_cents / _CENTS_PER_LN


def f0_errors(f0_synth: np.ndarray, f0_ref: np.ndarray, path: np.ndarray | None = None) -> F0Errors:
    """log-F0 RMSE (cents) and V/UV error between two F0 contours (Hz, 0 = unvoiced).

    Args:
        f0_synth: ``(N,)``; f0_ref: ``(M,)``.
        path: ``(L, 2)`` pairs of *F0 frame* indices; None pairs frame ``i`` with ``i`` over
            ``min(N, M)`` frames.
    """
    a = np.asarray(f0_synth, dtype=np.float64).ravel()
    b = np.asarray(f0_ref, dtype=np.float64).ravel()
    pairs = _aligned_pairs(len(a), len(b), path)
    fa, fb = a[pairs[:, 0]], b[pairs[:, 1]]
    va, vb = fa > 0, fb > 0
    both = va & vb
    voiced = int(both.sum())
    if voiced:
        cents = _CENTS_PER_LN * (np.log(fa[both]) - np.log(fb[both]))
        rmse = float(np.sqrt(np.mean(cents * cents)))
    else:
        rmse = float("nan")
    return F0Errors(rmse_cents=rmse, vuv_error=float(np.mean(va != vb)), voiced_frames=voiced,
                    path_frames=len(pairs))


def _cepstral_to_f0_index(idx: np.ndarray, frame_length: int, frame_shift: int, n_f0: int) -> np.ndarray:
    # Mel-cepstrum frame i is centred at i*shift + frame_length/2; F0 frame k at k*shift.
    k = np.rint(idx + frame_length / (2.0 * frame_shift)).astype(np.int64)
    return np.clip(k, 0, n_f0 - 1)


# --------------------------------------------------------------------------- one pair, all metrics


@dataclass(frozen=True)
class PairMetrics:
    """Spectral and F0 metrics of one synthesised / reference pair (see the module docstring).

    F0 fields are None when F0 was not computed; ``f0_rmse_cents`` is NaN when no path frame is
    voiced in both.
    """

    mcd_db: float
    mcd_no_dtw_db: float
    include_c0: bool
    order: int
    alpha: float
    frames_synth: int
    frames_ref: int
    path_length: int
    f0_rmse_cents: float | None = None
    log_f0_rmse: float | None = None
    vuv_error: float | None = None
    voiced_frames: int | None = None


def compare_waveforms(synth: np.ndarray, ref: np.ndarray, sample_rate: int, *, frame_length: int = 1024,
                      frame_shift: int = 256, order: int | None = None, alpha: float | None = None,
                      include_c0: bool = True, dtw_radius: int = 1, f0: bool = True,
                      f0_floor: float = 40.0, f0_ceil: float = 800.0) -> PairMetrics:
    """MCD (with and without DTW) and, if ``f0``, log-F0 RMSE and V/UV error on one DTW path.

    Args:
        synth, ref: ``(T,)`` float waveforms in [-1, 1] at ``sample_rate``.
    """
    order, alpha = _resolve_mcep(sample_rate, order, alpha)
    kw: dict[str, Any] = dict(frame_length=frame_length, frame_shift=frame_shift, order=order, alpha=alpha)
    mc_s = mel_cepstrum(synth, sample_rate, **kw)
    mc_r = mel_cepstrum(ref, sample_rate, **kw)
    path = dtw_path(mc_s, mc_r, dtw_radius)
    out: dict[str, Any] = dict(
        mcd_db=mcd_from_cepstra(mc_s, mc_r, path, include_c0),
        mcd_no_dtw_db=mcd_from_cepstra(mc_s, mc_r, None, include_c0),
        include_c0=include_c0, order=int(order), alpha=float(alpha),
        frames_synth=len(mc_s), frames_ref=len(mc_r), path_length=len(path),
    )
    if f0:
        f0_s = harvest_f0(synth, sample_rate, frame_shift=frame_shift, f0_floor=f0_floor, f0_ceil=f0_ceil)
        f0_r = harvest_f0(ref, sample_rate, frame_shift=frame_shift, f0_floor=f0_floor, f0_ceil=f0_ceil)
        f0_path = np.stack([_cepstral_to_f0_index(path[:, 0], frame_length, frame_shift, len(f0_s)),
                            _cepstral_to_f0_index(path[:, 1], frame_length, frame_shift, len(f0_r))], axis=1)
        err = f0_errors(f0_s, f0_r, f0_path)
        out.update(f0_rmse_cents=err.rmse_cents, log_f0_rmse=err.log_f0_rmse, vuv_error=err.vuv_error,
                   voiced_frames=err.voiced_frames)
    return PairMetrics(**out)


# --------------------------------------------------------------------------- attention


def _alignment(alignment: Any) -> np.ndarray:
    a = np.asarray(alignment, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise MetricError(f"an alignment must be a non-empty (T_dec, T_enc) matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise MetricError("alignment contains NaN or inf")
    return a


def focus_rate(alignment: Any) -> float:
    """Mean over decoder steps of the largest attention weight, in [0, 1] for softmax rows.

    1 for a hard (one-hot) alignment, ``1 / T_enc`` for uniform attention.

    Args:
        alignment: ``(T_dec, T_enc)``.
    """
    return float(np.mean(np.max(_alignment(alignment), axis=1)))


def diagonality(alignment: Any, band: float = 0.1) -> float:
    """Fraction of attention mass within a band around the straight diagonal, in [0, 1].

    The diagonal runs from (0, 0) to (T_dec, T_enc): decoder step ``t`` expects encoder position
    ``c_t = (t + 0.5) * T_enc / T_dec - 0.5`` (cell centres, so a square identity matrix lies
    exactly on it). The band keeps cells with ``|j - c_t| <= max(1, band * T_enc)``; the result
    is ``sum(A * band_mask) / sum(A)`` (0 for an all-zero matrix). Any monotone hard alignment
    that advances at a constant rate scores 1; uniform attention scores about ``2 * band``.

    Args:
        alignment: ``(T_dec, T_enc)``.
        band: half-width of the band as a fraction of ``T_enc``.
    """
    a = _alignment(alignment)
    t_dec, t_enc = a.shape
    centre = (np.arange(t_dec) + 0.5) * (t_enc / t_dec) - 0.5
    half = max(1.0, band * t_enc)
    mask = np.abs(np.arange(t_enc)[None, :] - centre[:, None]) <= half
    total = float(a.sum())
    return float((a * mask).sum() / total) if total > 0 else 0.0


def monotonicity(alignment: Any) -> float:
    """Fraction of consecutive decoder steps whose argmax encoder position does not move back.

    1.0 for a single decoder step. Ties in a row resolve to the first position (numpy argmax),
    so uniform attention also scores 1: read it together with :func:`focus_rate`.

    Args:
        alignment: ``(T_dec, T_enc)``.
    """
    peaks = np.argmax(_alignment(alignment), axis=1)
    if len(peaks) < 2:
        return 1.0
    return float(np.mean(np.diff(peaks) >= 0))


def attention_metrics(alignment: Any, band: float = 0.1) -> dict[str, float]:
    """``{"focus_rate", "diagonality", "monotonicity"}`` of one ``(T_dec, T_enc)`` alignment."""
    a = _alignment(alignment)
    return {"focus_rate": focus_rate(a), "diagonality": diagonality(a, band), "monotonicity": monotonicity(a)}


# --------------------------------------------------------------------------- real-time factor


def real_time_factor(compute_seconds: float, audio_seconds: float) -> float:
    """RTF = compute seconds ÷ audio seconds (lower is better; < 1 is faster than real time)."""
    if audio_seconds <= 0:
        raise MetricError(f"audio duration must be positive to compute an RTF, got {audio_seconds} s")
    return compute_seconds / audio_seconds


class SynthesisTimer:
    """Accumulates synthesis compute time over ``with`` blocks and the audio they produced.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called before each clock reading so
    asynchronous GPU work is counted where it happens::

        timer = SynthesisTimer()
        for text in texts:
            with timer:
                wav = synthesise(text)
            timer.add_audio(len(wav), sample_rate)
        print(f"RTF {timer.rtf:.3f}")
    """

    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self.compute_seconds = 0.0
        self.audio_seconds = 0.0
        self._synchronize = synchronize
        self._start: float | None = None

    def _now(self) -> float:
        if self._synchronize is not None:
            self._synchronize()
        return time.perf_counter()

    def __enter__(self) -> SynthesisTimer:
        self._start = self._now()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._start is not None:
            self.compute_seconds += self._now() - self._start
            self._start = None

    def add_audio(self, n_samples: int, sample_rate: int) -> None:
        """Count ``n_samples`` of generated audio at ``sample_rate`` Hz."""
        self.audio_seconds += n_samples / sample_rate

    @property
    def rtf(self) -> float:
        """:func:`real_time_factor` of everything timed and counted so far."""
        return real_time_factor(self.compute_seconds, self.audio_seconds)
