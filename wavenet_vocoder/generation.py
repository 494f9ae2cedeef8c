"""Waveform generation from mel spectrograms: one call for a batch of utterances of any lengths.

:func:`generate` runs the compiled loop of :mod:`wavenet_vocoder.fast_generation` when it is
available and falls back to the plain PyTorch reference (:meth:`WaveNet.incremental_forward`)
otherwise. Both consume the same noise (:class:`~wavenet_vocoder.mixture.StepNoise`), so a
fixed ``seed`` gives the same waveform on either path (to float rounding).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from wavenet_vocoder.fast_generation import FastWaveNet, load_library, split_rows
from wavenet_vocoder.graph_generation import GraphWaveNet
from wavenet_vocoder.mixture import StepNoise, decode_mulaw
from wavenet_vocoder.model import WaveNet
from wavenet_vocoder.modules import single_torch_thread
from wavenet_vocoder.upsample import pad_conditioning

MelLike = Union[torch.Tensor, np.ndarray]

# Utterances per thread before another thread is used. Every thread streams all the weights
# each step (~12 MB in the reference configuration), which caps it at a few thousand steps/s
# however few rows it has; extra threads pay once each has rows enough for arithmetic to matter.
ROWS_PER_THREAD = 4


def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _as_mels(model: WaveNet, c: Union[torch.Tensor, Sequence[MelLike]],
             lengths: Optional[Sequence[int]]) -> list[torch.Tensor]:
    """Normalise the mel argument to a list of (cin_channels, frames_i) float tensors."""
    cin = model.cfg.cin_channels
    if isinstance(c, (torch.Tensor, np.ndarray)) and c.ndim == 2:
        c = [c]
    if isinstance(c, (torch.Tensor, np.ndarray)) and c.ndim == 3:
        c = torch.as_tensor(c)
        frames = [c.size(-1)] * c.size(0) if lengths is None else [int(n) for n in lengths]
        if len(frames) != c.size(0):
            raise ValueError(f"lengths has {len(frames)} entries for a batch of {c.size(0)} mels")
        mels = [c[i, :, :n] for i, n in enumerate(frames)]
    else:
        if lengths is not None:
            raise ValueError("lengths goes with a padded (B, cin_channels, frames) tensor, not a list of mels")
        mels = [torch.as_tensor(m) for m in c]
    for i, m in enumerate(mels):
        if m.dim() != 2 or m.size(0) != cin:
            hint = " (a data-dir mel is (frames, num_mels): pass mel.T)" if m.dim() == 2 and m.size(1) == cin else ""
            raise ValueError(f"mel {i} must be (cin_channels={cin}, frames) channels-first, "
                             f"got shape {tuple(m.shape)}{hint}")
        if m.size(1) < 1:
            raise ValueError(f"mel {i} has no frames")
    return [m.float() for m in mels]


def _speaker_ids(g: Union[torch.Tensor, Sequence[int], int, None], batch: int) -> Optional[torch.Tensor]:
    if g is None:
        return None
    if isinstance(g, int):
        return torch.full((batch,), g, dtype=torch.long)
    ids = torch.as_tensor(g, dtype=torch.long).reshape(-1)
    if ids.numel() != batch:
        raise ValueError(f"got {ids.numel()} speaker ids for {batch} utterances")
    return ids


@torch.no_grad()
def generate(model: WaveNet, c: Union[torch.Tensor, Sequence[MelLike], None] = None,
             g: Union[torch.Tensor, Sequence[int], int, None] = None,
             T: Union[int, Sequence[int], None] = None, *, lengths: Optional[Sequence[int]] = None,
             seed: Optional[int] = None, temperature: float = 1.0, fast: bool = True,
             threads: Optional[int] = None, tqdm: Optional[Callable[..., Any]] = None) -> list[torch.Tensor]:
    """Generate one waveform per utterance.

    Args:
        model: the vocoder (its weights are read, not modified; dropout is never applied).
        c: mel spectrograms, channels first, *without* the ``cin_pad`` context (it is added by
            repeating the edge frames): a list of (cin_channels, frames_i) tensors / arrays, one
            such mel, or a padded (B, cin_channels, frames) tensor with ``lengths``.
        g: speaker id for all utterances (int) or one per utterance.
        T: samples per utterance for an unconditioned model (int, or one per utterance).
        lengths: frames of each mel in a padded ``c``.
        seed: seeds the sampling noise; the same seed gives the same waveforms on both paths.
        temperature: scales the sampling noise (mol: logistic scale; gaussian: std; mulaw:
            divides the logits, 0 = arg-max).
        fast: on a CPU, the compiled generator when it can be built; on a CUDA device, chunks of
            steps replayed as CUDA graphs (``graph_generation``). Else the PyTorch reference.
        threads: threads for the compiled generator; default one per ``ROWS_PER_THREAD``
            utterances, at most the available cores.
        tqdm: a progress-bar factory such as ``tqdm.tqdm`` (called with ``total=`` samples).
    Returns:
        B float32 CPU tensors (T_i,) in [-1, 1]; T_i = frames_i * hop_size when conditioned.
    """
    if model.local_conditioning:
        if c is None:
            raise ValueError(f"this WaveNet is conditioned on {model.cfg.cin_channels}-channel mels: pass c")
        if T is not None:
            raise ValueError("T is set by the mels (frames * hop_size); do not pass both")
        mels = _as_mels(model, c, lengths)
        n_samples = [m.size(1) * model.hop_size for m in mels]
    else:
        if c is not None:
            raise ValueError("this WaveNet has no local conditioning (cin_channels = 0) but c was given")
        if T is None:
            raise ValueError("an unconditioned WaveNet needs T (samples per utterance)")
        if isinstance(T, int):
            batch = 1 if g is None or isinstance(g, int) else int(torch.as_tensor(g).numel())
            n_samples = [T] * batch
        else:
            n_samples = [int(t) for t in T]
        mels = None
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if any(n < 1 for n in n_samples):
        raise ValueError(f"every utterance needs at least one sample, got lengths {n_samples}")
    batch = len(n_samples)
    g_ids = _speaker_ids(g, batch)
    model.check_conditioning(mels[0] if mels else None, g_ids)
    if g_ids is not None:
        model.speaker_embedding(g_ids)  # validates the ids before any long computation
    device = model.first_conv.bias.device
    if mels is not None:
        mels = [pad_conditioning(m.unsqueeze(0).to(device), model.cfg.cin_pad) for m in mels]
    noise = StepNoise(model.cfg, batch, seed)

    if threads is None:
        threads = min(available_cores(), max(1, batch // ROWS_PER_THREAD))
    if fast and device.type == "cuda":
        return _generate_graph(GraphWaveNet(model), model, mels, g_ids, n_samples, noise, temperature, tqdm)
    with single_torch_thread():
        if fast and load_library() is not None:
            return _generate_fast(FastWaveNet(model), model, mels, g_ids, n_samples, noise, temperature,
                                  max(1, threads), tqdm)
        return _generate_reference(model, mels, g_ids, n_samples, noise, temperature, tqdm)


def _upsample_each(model: WaveNet, mels: Optional[list[torch.Tensor]], n_samples: list[int]) -> Optional[torch.Tensor]:
    """(B, cin_channels, max samples) conditioning, zero past each utterance's end."""
    if mels is None:
        return None
    c_up = torch.zeros(len(mels), model.cfg.cin_channels, max(n_samples), device=model.first_conv.bias.device)
    for i, m in enumerate(mels):
        # each utterance on its own, so that its edges see exactly its own frames
        c_up[i, :, :n_samples[i]] = model.upsample(m)[0]
    return c_up


def _generate_graph(engine: GraphWaveNet, model: WaveNet, mels: Optional[list[torch.Tensor]],
                    g_ids: Optional[torch.Tensor], n_samples: list[int], noise: StepNoise, temperature: float,
                    tqdm: Optional[Callable[..., Any]]) -> list[torch.Tensor]:
    samples, _ = engine.run(_upsample_each(model, mels, n_samples), g_ids, max(n_samples), len(n_samples), noise,
                            temperature, tqdm=tqdm)
    samples = samples.float().cpu()
    return [samples[i, :n].clone() for i, n in enumerate(n_samples)]


def _generate_reference(model: WaveNet, mels: Optional[list[torch.Tensor]], g_ids: Optional[torch.Tensor],
                        n_samples: list[int], noise: StepNoise, temperature: float,
                        tqdm: Optional[Callable[..., Any]]) -> list[torch.Tensor]:
    total = max(n_samples)
    device = model.first_conv.bias.device
    c_up = _upsample_each(model, mels, n_samples)
    bar = (lambda it: tqdm(it, total=total, unit="sample")) if tqdm is not None else None
    samples, _ = model.incremental_forward(c_up=c_up, g=None if g_ids is None else g_ids.to(device), T=total,
                                           noise=noise, temperature=temperature, tqdm=bar)
    return [samples[i, :n].float().cpu() for i, n in enumerate(n_samples)]


def _generate_fast(engine: FastWaveNet, model: WaveNet, mels: Optional[list[torch.Tensor]],
                   g_ids: Optional[torch.Tensor], n_samples: list[int], noise: StepNoise, temperature: float,
                   threads: int, tqdm: Optional[Callable[..., Any]]) -> list[torch.Tensor]:
    """Chunks of steps through the compiled loop, one thread per group of utterances.

    The next chunk's conditioning and noise are prepared on another thread while the loop
    runs the current one (at batch 1 that uses the otherwise idle second core).
    """
    batch, total = len(n_samples), max(n_samples)
    groups = split_rows(sorted(range(batch), key=lambda i: -n_samples[i]), threads)
    states = [engine.new_state(len(rows)) for rows in groups]
    sbias = engine.static_bias(g_ids, batch)
    outputs = [np.empty(n, np.float32) for n in n_samples]
    width = engine.L * engine.G
    step = engine.chunk_steps()
    chunks = [(t0, min(total, t0 + step)) for t0 in range(0, total, step)]
    # the frame-rate part of the upsampler, once per utterance: (cin_channels, frames)
    encoded = [model.upsample_net.encode_frames(m)[0].float().cpu() for m in mels] if mels is not None else None

    def prepare(k: int) -> list[tuple[int, list[int], tuple]]:
        t0, t1 = chunks[k]
        n = t1 - t0
        chunk_noise = noise.get(t0, t1)
        calls = []
        for gi, rows in enumerate(groups):
            active = [i for i in rows if n_samples[i] > t0]  # a prefix: rows are sorted by length
            if not active:
                continue
            frames = mix = None
            if encoded is not None:
                windows = [model.upsample_net.frame_window(encoded[i].size(-1), t0, min(t1, n_samples[i]))
                           for i in active]
                span = max(f1 - f0 for f0, f1 in windows)
                frames = np.empty((len(active), span, width), np.float32)
                mix = np.zeros((len(active), n, span), np.float32)  # steps past an end mix nothing
                for j, i in enumerate(active):
                    end = min(t1, n_samples[i])
                    engine.conditioning_window(encoded[i], t0, end, frames[j], mix[j, :end - t0])
            args = (states[gi][0], len(active), t0, np.ascontiguousarray(sbias[active]), None,
                    np.ascontiguousarray(chunk_noise[:, active].transpose(0, 1).numpy()),
                    np.empty((len(active), n), np.float32))
            calls.append((active, args, {"frames": frames, "mix": mix}))
        return calls

    bar = tqdm(total=total, unit="sample") if tqdm is not None else None
    try:
        with ThreadPoolExecutor(max_workers=len(groups) + 1) as pool:
            pending = pool.submit(prepare, 0)
            for k, (t0, t1) in enumerate(chunks):
                calls = pending.result()
                jobs = [(active, args[-1], pool.submit(engine.run, *args, temperature=temperature, **conditioning))
                        for active, args, conditioning in calls]
                if k + 1 < len(chunks):
                    pending = pool.submit(prepare, k + 1)
                for active, out, job in jobs:
                    job.result()
                    for j, i in enumerate(active):
                        end = min(t1, n_samples[i])
                        outputs[i][t0:end] = out[j, :end - t0]
                if bar is not None:
                    bar.update(t1 - t0)
    finally:
        if bar is not None:
            bar.close()
    wavs = [torch.from_numpy(w) for w in outputs]
    if model.cfg.output_distribution == "mulaw":
        wavs = [decode_mulaw(w, model.in_channels) for w in wavs]
    return wavs
