"""Fast incremental generation: a compiled step loop fed with packed weights.

The plain PyTorch generator (:meth:`WaveNet.incremental_forward`) spends most of each sample in
framework overhead: ~10 operator calls per layer, 24 layers. Here one C call runs a whole chunk
of steps for a group of utterances (``_fastwavenet_src.py``), with

- weight normalisation folded and every matrix packed in the order the loop reads it
  (16-column panels), the k taps of each dilated convolution fused into one product whose k
  input blocks come straight from a per-layer ring buffer of past inputs;
- the residual and skip 1x1 convolutions fused into one (G/2 -> R+S) product;
- local conditioning prepared a chunk ahead on another thread as every layer's 1x1 projection
  of the few mel frames around the chunk (one matrix product) plus the upsampler's impulse
  response as per-step mixing weights (see ``conditioning_window``); the loop mixes them inside
  its gate computation, so no per-sample conditioning array streams through memory. The
  speaker projection + convolution bias is computed once per utterance;
- sampling (Gumbel-max mixture choice, logistic / Gaussian / categorical draw) inside the loop,
  from the same pre-drawn noise as the reference path, so both produce the same waveform.

The C source is compiled on first use (about a second; see :mod:`tacowave.native` for the
compiler and the cache). Without a working compiler, :func:`load_library` returns None with
one warning and generation falls back to the PyTorch path.
"""
from __future__ import annotations

import ctypes
import functools
import subprocess
import warnings
from typing import Optional, Sequence

import numpy as np
import torch
from torch.nn.utils import parametrize

from tacowave import native
from wavenet_vocoder._fastwavenet_src import SOURCE
from wavenet_vocoder.mixture import StepNoise, decode_mulaw, noise_dim
from wavenet_vocoder.model import WaveNet

PANEL = 16  # must match PW in the C source
MAX_TAPS = 16
MAX_WINDOW_FRAMES = 64  # must match MAXFRAMES in the C source
_DISTRIBUTION_CODES = {"mol": 0, "gaussian": 1, "mulaw": 2}

_f32p = ctypes.POINTER(ctypes.c_float)


class _WNModel(ctypes.Structure):
    _fields_ = ([(name, ctypes.c_int32) for name in
                 ("L", "R", "G", "H", "S", "C", "KT", "n_in", "onehot", "dist", "nmix", "Gp", "RSp", "Sp", "Cp")]
                + [(name, ctypes.c_float) for name in ("log_scale_min", "temperature", "skip_scale")]
                + [(name, _f32p) for name in ("w_first", "b_first", "w_conv", "w_res", "b_res",
                                               "w_post1", "b_post1", "w_post2", "b_post2")]
                + [("dilation", ctypes.POINTER(ctypes.c_int32)), ("ring_offset", ctypes.POINTER(ctypes.c_int64))])


class _WNState(ctypes.Structure):
    _fields_ = ([("ldb", ctypes.c_int32)]
                + [(name, _f32p) for name in ("ring", "skip", "y", "z", "o", "h1", "h2", "pr", "cur", "mixw")]
                + [(name, ctypes.POINTER(ctypes.c_int32)) for name in ("mixf", "mixn")])


# --------------------------------------------------------------------------- building the library


_find_compiler = native.find_compiler  # module-level so tests can stub it


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.wn_run.restype = ctypes.c_int
    lib.wn_run.argtypes = [ctypes.POINTER(_WNModel), ctypes.POINTER(_WNState), ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int, _f32p, _f32p, _f32p, _f32p, ctypes.c_int, _f32p, ctypes.c_int, _f32p,
                           _f32p, _f32p]
    return lib


@functools.lru_cache(maxsize=None)
def load_library() -> Optional[ctypes.CDLL]:
    """The compiled generation loop (built and cached on first call), or None with a warning."""
    cc = _find_compiler()
    if cc is None:
        warnings.warn("no C compiler found (set $CC): WaveNet generation falls back to the slow "
                      "PyTorch path", RuntimeWarning, stacklevel=2)
        return None
    try:
        return _bind(native.build_library(cc, SOURCE, "fastwavenet", ["-fno-math-errno"]))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        warnings.warn(f"could not build the fast WaveNet generator ({e}); generation falls back to the "
                      f"slow PyTorch path", RuntimeWarning, stacklevel=2)
        return None


# --------------------------------------------------------------------------- packed model


def _ptr(a: Optional[np.ndarray]) -> Optional[ctypes._Pointer]:
    return None if a is None else a.ctypes.data_as(_f32p)


def _round_up(n: int) -> int:
    return -(-n // PANEL) * PANEL


def _pack_panels(w: torch.Tensor) -> np.ndarray:
    """(K, N) input-major matrix -> (ceil(N / 16), K, 16) panels, zero-padded columns."""
    k, n = w.shape
    padded = torch.zeros(k, _round_up(n))
    padded[:, :n] = w
    return np.ascontiguousarray(padded.view(k, -1, PANEL).permute(1, 0, 2).numpy())


def _f32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().float().cpu().numpy())


class FastWaveNet:
    """A WaveNet's weights packed for the compiled loop, plus the per-call glue.

    Build one from a model in its final state (weights are copied, weight norm folded); the
    model itself is not modified.
    """

    def __init__(self, model: WaveNet, lib: Optional[ctypes.CDLL] = None) -> None:
        self.lib = lib or load_library()
        if self.lib is None:
            raise RuntimeError("the compiled WaveNet generator is not available")
        cfg = model.cfg
        if cfg.kernel_size > MAX_TAPS:
            raise ValueError(f"the fast generator supports kernel_size <= {MAX_TAPS}, got {cfg.kernel_size}")
        self.cfg = cfg
        self.model = model
        L, R, G, S = cfg.layers, cfg.residual_channels, cfg.gate_channels, cfg.skip_out_channels
        H, KT, C = G // 2, cfg.kernel_size, model.out_channels
        self.L, self.G, self.R = L, G, R
        layers = model.conv_layers
        with torch.no_grad(), parametrize.cached():
            self._arrays = {
                "w_first": _f32(model.first_conv.weight[:, :, 0].t()),
                "b_first": _f32(model.first_conv.bias),
                # conv weight (G, R, k): row j*R + i of the packed matrix is tap j, input channel i
                "w_conv": np.stack([_pack_panels(l.conv.weight.permute(2, 1, 0).reshape(KT * R, G))
                                    for l in layers]),
                "w_res": np.stack([_pack_panels(torch.cat([l.conv1x1_out.weight[:, :, 0],
                                                           l.conv1x1_skip.weight[:, :, 0]]).t())
                                   for l in layers]),
                "b_res": _f32(torch.stack([torch.cat([l.conv1x1_out.bias, l.conv1x1_skip.bias]) for l in layers])),
                "w_post1": _pack_panels(model.last_conv_layers[1].weight[:, :, 0].t()),
                "b_post1": _f32(model.last_conv_layers[1].bias),
                "w_post2": _pack_panels(model.last_conv_layers[3].weight[:, :, 0].t()),
                "b_post2": _f32(model.last_conv_layers[3].bias),
            }
            self.conv_bias = torch.stack([l.conv.bias for l in layers]).detach().float().cpu()  # (L, G)
            # (cin, L*G): one product maps upsampled mels to every layer's conditioning at once
            self.w_cond = (torch.cat([l.conv1x1c.weight[:, :, 0] for l in layers]).t().detach().float().cpu()
                           .contiguous() if model.local_conditioning else None)
            self.w_speaker = ([l.conv1x1g.weight[:, :, 0].detach().float().cpu() for l in layers]
                              if model.global_conditioning else None)
            self.speaker_table = (model.embed_speakers.weight.detach().float().cpu()
                                  if model.global_conditioning else None)
        self._impulses: dict[int, torch.Tensor] = {}
        spans = [l.receptive_span for l in layers]
        self.ring_rows = int(sum(spans))
        self._dilation = np.array([l.dilation for l in layers], dtype=np.int32)
        self._ring_offset = np.concatenate([[0], np.cumsum(spans)[:-1]]).astype(np.int64)
        self.in_channels = model.in_channels
        self.out_channels = C
        self.noise_dim = noise_dim(cfg)
        self._struct = _WNModel(
            L=L, R=R, G=G, H=H, S=S, C=C, KT=KT, n_in=model.in_channels,
            onehot=int(cfg.output_distribution == "mulaw"), dist=_DISTRIBUTION_CODES[cfg.output_distribution],
            nmix=cfg.num_mixtures, Gp=_round_up(G), RSp=_round_up(R + S), Sp=_round_up(S), Cp=_round_up(C),
            log_scale_min=cfg.log_scale_min, temperature=1.0, skip_scale=float(np.sqrt(1.0 / L)),
            dilation=self._dilation.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
            ring_offset=self._ring_offset.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
            **{name: _ptr(a) for name, a in self._arrays.items()})

    # ------------------------------------------------------------------ per-call pieces

    def new_state(self, rows: int) -> tuple[_WNState, dict[str, np.ndarray]]:
        """Zeroed ring buffers and work space for ``rows`` utterances (keep the dict alive)."""
        m = self._struct
        arrays = {
            "ring": np.zeros((self.ring_rows, rows, self.R), np.float32),
            "skip": np.zeros((rows, m.S), np.float32), "y": np.zeros((rows, m.Gp), np.float32),
            "z": np.zeros((rows, m.H), np.float32), "o": np.zeros((rows, m.RSp), np.float32),
            "h1": np.zeros((rows, m.Sp), np.float32), "h2": np.zeros((rows, m.Sp), np.float32),
            "pr": np.zeros((rows, m.Cp), np.float32), "cur": np.zeros(rows, np.float32),
            "mixw": np.zeros((rows, MAX_WINDOW_FRAMES), np.float32),
        }
        frame_lists = {"mixf": np.zeros((rows, MAX_WINDOW_FRAMES), np.int32), "mixn": np.zeros(rows, np.int32)}
        # the first input is silence (see WaveNet.initial_input)
        arrays["cur"][:] = self.model.initial_input(1).argmax(1).item() if m.onehot else 0.0
        pointers = {name: _ptr(a) for name, a in arrays.items()}
        pointers.update({name: a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)) for name, a in frame_lists.items()})
        return _WNState(ldb=rows, **pointers), {**arrays, **frame_lists}

    def static_bias(self, g: Optional[torch.Tensor], batch: int) -> np.ndarray:
        """Per-utterance gate bias (B, L, G): convolution bias + speaker projection."""
        bias = self.conv_bias.unsqueeze(0).expand(batch, -1, -1)
        if self.w_speaker is not None:
            emb = self.speaker_table[g.reshape(-1).long().cpu()]                    # (B, gin)
            bias = bias + torch.stack([emb @ w.t() for w in self.w_speaker], dim=1)  # (B, L, G)
        return _f32(bias)

    def project_conditioning(self, c_up: torch.Tensor) -> np.ndarray:
        """(B, cin, n) upsampled conditioning -> (B, n, L*G) gate biases of every layer."""
        return _f32(c_up.detach().float().cpu().transpose(1, 2) @ self.w_cond)

    def conditioning_window(self, h: torch.Tensor, t0: int, t1: int, frames: np.ndarray, mix: np.ndarray) -> None:
        """The conditioning of samples [t0, t1) of one utterance as frames and mixing weights.

        The upsampling stages are linear, time-invariant and act on every mel bin alike, so they
        commute with the layers' 1x1 projections: the gate bias of sample t is
        ``sum_f mix[t, f] * frames[f]``, with ``frames`` the projections of the few frames the
        window depends on and ``mix`` the stages' impulse response. Projecting a frame once
        instead of every upsampled sample is ``hop_size`` times fewer operations, and the loop
        reads only the 2-4 frames each sample actually depends on.

        Args:
            h: (cin_channels, frames) from ``upsample_net.encode_frames`` (on the CPU).
            frames: float32 (F, L*G) to write into; rows past the window's own frames are zeroed.
            mix: float32 (t1 - t0, F) to write into, zero for those rows too.
        """
        up = self.model.upsample_net
        f0, f1 = up.frame_window(h.size(-1), t0, t1)
        if f1 - f0 > frames.shape[0]:
            raise ValueError(f"the window of samples [{t0}, {t1}) needs {f1 - f0} frames, room for {frames.shape[0]}")
        offset = f0 * up.hop_size
        torch.matmul(h[:, f0:f1].t(), self.w_cond, out=torch.from_numpy(frames[:f1 - f0]))
        frames[f1 - f0:] = 0.0
        mix[:, :f1 - f0] = self._impulse_response(f1 - f0)[:, t0 - offset:t1 - offset].t().numpy()
        mix[:, f1 - f0:] = 0.0

    def chunk_steps(self) -> int:
        """Steps per chunk of ``generate``: its conditioning window must fit ``MAX_WINDOW_FRAMES``."""
        if not self.model.local_conditioning:
            return MAX_CHUNK_STEPS
        up = self.model.upsample_net
        fit = (MAX_WINDOW_FRAMES - 2 * up.context_frames - 2) * up.hop_size
        return max(1, min(MAX_CHUNK_STEPS, fit))

    def _impulse_response(self, frames: int) -> torch.Tensor:
        # a handful of window sizes occur in one run; each is a tiny upsampling
        if frames not in self._impulses:
            with torch.no_grad():
                self._impulses[frames] = self.model.upsample_net.impulse_response(frames).float().cpu()
        return self._impulses[frames]

    def run(self, state: _WNState, rows: int, t0: int, sbias: np.ndarray, cond: Optional[np.ndarray],
            noise: np.ndarray, out: np.ndarray, forced: Optional[np.ndarray] = None,
            params: Optional[np.ndarray] = None, temperature: float = 1.0,
            frames: Optional[np.ndarray] = None, mix: Optional[np.ndarray] = None) -> None:
        """Steps [t0, t0 + n) for the first ``rows`` rows of ``state``; n = out.shape[1].

        Array shapes (float32, C-contiguous): sbias (rows, L, G), noise (rows, n, noise_dim),
        out (rows, n), forced (rows, n) or None (mulaw: class indices), params
        (rows, n, out_channels) or None. Local conditioning, if any, either as per-step gate
        biases cond (rows, n, L*G), or as frames (rows, F, L*G) with mix (rows, n, F) from
        :meth:`conditioning_window`. Releases the GIL while it runs.
        """
        n = out.shape[1]
        if (frames is None) != (mix is None) or (cond is not None and frames is not None):
            raise ValueError("pass either cond, or frames together with mix")
        F = 0 if frames is None else frames.shape[1]
        if frames is not None and not 1 <= F <= MAX_WINDOW_FRAMES:
            raise ValueError(f"frames must hold 1 to {MAX_WINDOW_FRAMES} frames per row, got {F}")
        for name, a, shape in (("sbias", sbias, (rows, self.L, self.G)), ("noise", noise, (rows, n, self.noise_dim)),
                               ("out", out, (rows, n)), ("cond", cond, (rows, n, self.L * self.G)),
                               ("frames", frames, (rows, F, self.L * self.G)), ("mix", mix, (rows, n, F)),
                               ("forced", forced, (rows, n)), ("params", params, (rows, n, self.out_channels))):
            if a is not None and (a.dtype != np.float32 or not a.flags.c_contiguous or a.shape != shape):
                raise ValueError(f"{name} must be a C-contiguous float32 array of shape {shape}, "
                                 f"got {a.dtype} {a.shape}")
        model = _WNModel.from_buffer_copy(self._struct)
        model.temperature = temperature
        rc = self.lib.wn_run(ctypes.byref(model), ctypes.byref(state), rows, t0, n, _ptr(sbias), _ptr(cond),
                             _ptr(frames), _ptr(mix), F, _ptr(noise), self.noise_dim, _ptr(forced), _ptr(out),
                             _ptr(params))
        if rc != 0:
            raise RuntimeError(f"fast WaveNet step loop failed (code {rc})")

    # ------------------------------------------------------------------ reference-shaped entry point

    @torch.no_grad()
    def incremental_forward(self, c: Optional[torch.Tensor] = None, g: Optional[torch.Tensor] = None,
                            T: Optional[int] = None, *, c_up: Optional[torch.Tensor] = None,
                            test_inputs: Optional[torch.Tensor] = None, noise: Optional[StepNoise] = None,
                            seed: Optional[int] = None, temperature: float = 1.0,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract and results as :meth:`WaveNet.incremental_forward`, computed by the C loop.

        Returns samples (B, T) in [-1, 1] and parameters (B, out_channels, T).
        """
        c_up, T, batch = self.model.resolve_incremental_inputs(c, g, T, c_up, test_inputs)
        if noise is None:
            noise = StepNoise(self.cfg, batch, seed)
        forced = None if test_inputs is None else _f32(self.model.teacher_forced_values(test_inputs, T))
        state, _keep = self.new_state(batch)
        sbias = self.static_bias(g, batch)
        samples = np.empty((batch, T), np.float32)
        params = np.empty((batch, T, self.out_channels), np.float32)
        step = dense_conditioning_steps(batch, self.L * self.G)
        for t0 in range(0, T, step):
            t1 = min(T, t0 + step)
            cond = self.project_conditioning(c_up[:, :, t0:t1]) if c_up is not None else None
            out = np.empty((batch, t1 - t0), np.float32)
            par = np.empty((batch, t1 - t0, self.out_channels), np.float32)
            self.run(state, batch, t0, sbias, cond, _f32(noise.get(t0, t1).transpose(0, 1)), out,
                     forced=None if forced is None else np.ascontiguousarray(forced[:, t0:t1]),
                     params=par, temperature=temperature)
            samples[:, t0:t1] = out
            params[:, t0:t1] = par
        samples_t = torch.from_numpy(samples)
        if self._struct.onehot:
            samples_t = decode_mulaw(samples_t, self.in_channels)
        return samples_t, torch.from_numpy(params).transpose(1, 2)


# Memory for one chunk's precomputed conditioning (rows x steps x layers*gate_channels floats) on
# the per-step-bias path (``incremental_forward``). Bounds its memory for any utterance length.
CONDITIONING_BUDGET_BYTES = 4 << 20
# Steps per chunk of ``generate``: the tqdm bar moves once per chunk, and a longer chunk only
# widens its (small) conditioning window.
MAX_CHUNK_STEPS = 2048


def dense_conditioning_steps(rows: int, cond_width: int) -> int:
    """Steps per chunk so that the (rows, steps, cond_width) float32 conditioning fits the budget."""
    return int(min(16384, max(32, CONDITIONING_BUDGET_BYTES // max(1, rows * cond_width * 4))))


def split_rows(order: Sequence[int], threads: int) -> list[list[int]]:
    """Deal utterances sorted by decreasing length round-robin to the threads.

    Each group stays sorted, so its unfinished utterances are always a prefix of its rows
    (the loop runs only those), and the groups get similar amounts of work.
    """
    return [list(order[k::threads]) for k in range(threads) if order[k::threads]]
