"""The GPU generator's chunk function (run eagerly here) against the PyTorch reference.

Its equality with the reference for every distribution and conditioning kind is checked with
the compiled CPU loop's in ``test_wavenet_generation.py``; these tests cover the rest.

On a CUDA machine the same function is recorded as a CUDA graph; recording changes when the
kernels are launched, not what they compute, so these CPU checks cover its arithmetic, its
history-buffer bookkeeping across chunks and its use of the shared noise.
"""
from __future__ import annotations

import pytest
import torch

import wavenet_vocoder.generation as generation
from wavenet_vocoder.graph_generation import GraphWaveNet
from wavenet_vocoder.mixture import StepNoise
from test_wavenet_generation import odd_model, teacher_inputs


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_chunk_size_does_not_change_the_waveform() -> None:
    model = odd_model("mol", "both")
    _, c, spk = teacher_inputs(model, batch=2, steps=60)
    runs = [GraphWaveNet(model, chunk=chunk).incremental_forward(c, spk, seed=3) for chunk in (1, 7, 64, 200)]
    for wav, par in runs[1:]:
        assert torch.allclose(wav, runs[0][0], atol=1e-5, rtol=0)
        assert torch.allclose(par, runs[0][1], atol=1e-5, rtol=0)


def test_generate_batch_of_different_lengths_through_the_graph_path() -> None:
    model = odd_model("mol", "both")
    mels = [torch.randn(8, n, generator=torch.Generator().manual_seed(n)) for n in (7, 3, 12)]
    reference = generation.generate(model, mels, [0, 2, 1], seed=2, fast=False)
    mels_padded = [generation.pad_conditioning(m.unsqueeze(0), model.cfg.cin_pad) for m in mels]
    n_samples = [m.size(1) * model.hop_size for m in mels]
    wavs = generation._generate_graph(GraphWaveNet(model, chunk=16), model, mels_padded, torch.tensor([0, 2, 1]),
                                      n_samples, StepNoise(model.cfg, 3, 2), 1.0, None)
    assert [len(w) for w in wavs] == n_samples
    for w, r in zip(wavs, reference):
        assert torch.allclose(w, r, atol=1e-4, rtol=0)


def test_graph_recording_needs_a_cuda_model() -> None:
    with pytest.raises(ValueError, match="CUDA device"):
        GraphWaveNet(odd_model(), use_graph=True)
    with pytest.raises(ValueError, match="chunk"):
        GraphWaveNet(odd_model(), chunk=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_equals_reference() -> None:
    model = odd_model("mol", "both")
    x, c, spk = teacher_inputs(model, batch=3, steps=48)
    _, ref = model.incremental_forward(c, spk, test_inputs=x)
    gpu = model.cuda()
    _, par = GraphWaveNet(gpu, chunk=16).incremental_forward(c.cuda(), spk.cuda(), test_inputs=x.cuda())
    assert torch.allclose(par.cpu(), ref, atol=1e-4, rtol=0)
