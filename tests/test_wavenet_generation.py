"""Generation: the compiled fast path against the PyTorch reference, batching, lengths, fallback."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import wavenet_vocoder.fast_generation as fast_generation
import wavenet_vocoder.generation as generation
from tacowave.hparams import WaveNetConfig
from wavenet_vocoder import build_wavenet, generate
from wavenet_vocoder.fast_generation import FastWaveNet, load_library
from wavenet_vocoder.graph_generation import GraphWaveNet
from wavenet_vocoder.modules import single_torch_thread

# Odd sizes on purpose: gate halves (18) not a multiple of the 8-float vector, R+S, S and the
# output not multiples of the 16-column weight panels.
ODD = WaveNetConfig(layers=6, stacks=2, residual_channels=16, gate_channels=36, skip_out_channels=12,
                    num_mixtures=3, mulaw_channels=32, cin_channels=8, cin_pad=2, upsample_scales=[2, 3],
                    upsample_mode="nearest", dropout=0.05)
CONDITIONING = {"none": (0, 0), "local": (8, 0), "global": (0, 4), "both": (8, 4)}

needs_compiler = pytest.mark.skipif(load_library() is None, reason="no C compiler: the fast path is unavailable")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run tiny operators, which multi-threaded PyTorch slows down on a busy machine."""
    with single_torch_thread():
        yield


def odd_model(distribution: str = "mol", kind: str = "both", **overrides) -> torch.nn.Module:
    cin, gin = CONDITIONING[kind]
    cfg = dataclasses.replace(ODD, output_distribution=distribution, cin_channels=cin, gin_channels=gin, **overrides)
    torch.manual_seed(1)
    return build_wavenet(cfg, n_speakers=3).eval()


def teacher_inputs(model, batch: int, steps: int):
    g = torch.Generator().manual_seed(5)
    cfg = model.cfg
    if cfg.output_distribution == "mulaw":
        x = F.one_hot(torch.randint(0, cfg.mulaw_channels, (batch, steps), generator=g), cfg.mulaw_channels)
        x = x.float().transpose(1, 2)
    else:
        x = torch.rand(batch, 1, steps, generator=g) * 2 - 1
    frames = steps // model.hop_size
    c = (torch.randn(batch, cfg.cin_channels, frames + 2 * cfg.cin_pad, generator=g)
         if model.local_conditioning else None)
    spk = torch.arange(batch) % 3 if model.global_conditioning else None
    return x, c, spk


# The compiled CPU loop, and the CUDA-graph chunk function run eagerly; its chunk of 5 steps is
# shorter than the longest history (9), so the carried-over tail overlaps the new chunk.
ENGINES = [pytest.param(FastWaveNet, id="compiled", marks=needs_compiler),
           pytest.param(lambda model: GraphWaveNet(model, chunk=5), id="graph")]


@pytest.mark.parametrize("make_engine", ENGINES)
@pytest.mark.parametrize("distribution", ["mol", "gaussian", "mulaw"])
@pytest.mark.parametrize("kind", list(CONDITIONING))
def test_fast_equals_reference(make_engine, distribution: str, kind: str) -> None:
    model = odd_model(distribution, kind)
    engine = make_engine(model)
    x, c, spk = teacher_inputs(model, batch=5, steps=48)
    # teacher forcing: both paths and the parallel forward give the same parameters
    _, ref = model.incremental_forward(c, spk, test_inputs=x)
    _, fast = engine.incremental_forward(c, spk, test_inputs=x)
    assert torch.allclose(fast, ref, atol=1e-4, rtol=0)
    assert torch.allclose(fast, model(x, c, spk), atol=1e-4, rtol=0)
    # free running from the same noise: the same waveform
    steps = None if model.local_conditioning else 48
    wav_ref, par_ref = model.incremental_forward(c, spk, T=steps, seed=11)
    wav_fast, par_fast = engine.incremental_forward(c, spk, T=steps, seed=11)
    assert torch.allclose(par_fast, par_ref, atol=1e-4, rtol=0)
    if distribution == "mulaw":
        assert torch.equal(wav_fast, wav_ref)
    else:
        assert torch.allclose(wav_fast, wav_ref, atol=1e-4, rtol=0)
    assert wav_fast.abs().max() <= 1


@pytest.mark.parametrize("make_engine", [ENGINES[0], pytest.param(GraphWaveNet, id="graph")])
def test_fast_equals_reference_on_the_reference_configuration(make_engine) -> None:
    torch.manual_seed(0)
    model = build_wavenet(WaveNetConfig()).eval()
    model.remove_weight_norm()
    x, c, _ = teacher_inputs(model, batch=2, steps=256)
    # 160 steps: past the longest ring buffer (65 inputs) and every dilation, at half the cost
    _, ref = model.incremental_forward(c, T=160, test_inputs=x)
    _, fast = make_engine(model).incremental_forward(c, T=160, test_inputs=x)
    assert fast.shape == (2, 30, 160)
    assert torch.allclose(fast, ref, atol=1e-4, rtol=0)


@needs_compiler
@pytest.mark.parametrize("distribution,mode", [("mol", "nearest"), ("mulaw", "transposed")])
def test_generate_batch_of_different_lengths(distribution: str, mode: str) -> None:
    model = odd_model(distribution, "both", upsample_mode=mode)
    mels = [torch.randn(8, n, generator=torch.Generator().manual_seed(n)) for n in (7, 3, 12, 1, 5)]
    speakers = [0, 1, 2, 1, 0]
    fast = generate(model, mels, speakers, seed=2)
    assert [len(w) for w in fast] == [n * 6 for n in (7, 3, 12, 1, 5)]
    assert all(w.dtype == torch.float32 and w.abs().max() <= 1 for w in fast)
    reference = generate(model, mels, speakers, seed=2, fast=False)
    two_threads = generate(model, mels, speakers, seed=2, threads=2)
    for f, r, t in zip(fast, reference, two_threads):
        assert torch.allclose(f, r, atol=1e-4, rtol=0)
        assert torch.equal(f, t)


@needs_compiler
@pytest.mark.parametrize("distribution,temperature", [("mulaw", 0.7), ("mol", 0.5), ("gaussian", 0.0)])
def test_temperature_is_the_same_on_both_paths(distribution: str, temperature: float) -> None:
    model = odd_model(distribution, "local")
    mels = [torch.randn(8, 9), torch.randn(8, 4)]
    fast = generate(model, mels, seed=4, temperature=temperature)
    reference = generate(model, mels, seed=4, temperature=temperature, fast=False)
    for f, r in zip(fast, reference):
        if distribution == "mulaw":
            assert torch.equal(f, r)
        else:
            assert torch.allclose(f, r, atol=1e-4, rtol=0)


@needs_compiler
@pytest.mark.parametrize("fast", [True, False])
def test_batch_mates_do_not_influence_an_utterance(fast: bool) -> None:
    # mu-law at temperature 0 is deterministic (arg-max), so the noise drops out
    model = odd_model("mulaw", "both")
    mels = [torch.randn(8, n, generator=torch.Generator().manual_seed(n)) for n in (4, 9, 2)]
    batched = generate(model, mels, [2, 0, 1], temperature=0.0, fast=fast)
    for mel, spk, wav in zip(mels, [2, 0, 1], batched):
        assert torch.equal(generate(model, [mel], spk, temperature=0.0, fast=fast)[0], wav)


@needs_compiler
def test_generate_in_many_chunks_equals_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    model = odd_model("mol", "local")
    mels = [torch.randn(8, 40), torch.randn(8, 25)]
    whole = generate(model, mels, seed=0)
    monkeypatch.setattr(fast_generation, "MAX_CHUNK_STEPS", 64)
    chunked = generate(model, mels, seed=0)
    assert [len(w) for w in chunked] == [240, 150]
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@needs_compiler
def test_conditioning_window_mixes_to_the_upsampled_projection() -> None:
    # frames x mix must equal projecting every sample of the full upsampling, the slow way
    model = odd_model("mol", "local")
    engine = FastWaveNet(model)
    c = torch.randn(1, 8, 12 + 2 * ODD.cin_pad)
    with torch.no_grad():
        full = engine.project_conditioning(model.upsample(c))[0]                # (72, L*G)
        h = model.upsample_net.encode_frames(c)[0]
    width = engine.L * engine.G
    for t0, t1 in ((0, 5), (13, 40), (50, 72)):
        frames = np.full((20, width), np.nan, np.float32)  # room to spare: the extra rows must be zeroed
        mix = np.full((t1 - t0, 20), np.nan, np.float32)
        engine.conditioning_window(h, t0, t1, frames, mix)
        assert np.allclose(mix @ frames, full[t0:t1], atol=1e-5)
        assert ((mix != 0).sum(1) <= 2 * model.upsample_net.context_frames + 1).all()
    with pytest.raises(ValueError, match=r"samples \[0, 72\) needs 12 frames, room for 3"):
        engine.conditioning_window(h, 0, 72, np.empty((3, width), np.float32), np.empty((72, 3), np.float32))


@needs_compiler
def test_run_rejects_frames_without_their_mixing_weights() -> None:
    model = odd_model("mol", "local")
    engine = FastWaveNet(model)
    state, _keep = engine.new_state(1)
    width, n = engine.L * engine.G, 4
    args = (state, 1, 0, engine.static_bias(None, 1), None, np.full((1, n, engine.noise_dim), 0.5, np.float32),
            np.empty((1, n), np.float32))
    with pytest.raises(ValueError, match="frames together with mix"):
        engine.run(*args, frames=np.zeros((1, 2, width), np.float32))
    with pytest.raises(ValueError, match="mix must be"):
        engine.run(*args, frames=np.zeros((1, 2, width), np.float32), mix=np.zeros((1, n, 3), np.float32))
    too_many = fast_generation.MAX_WINDOW_FRAMES + 1
    with pytest.raises(ValueError, match="1 to 64 frames"):
        engine.run(*args, frames=np.zeros((1, too_many, width), np.float32),
                   mix=np.zeros((1, n, too_many), np.float32))


@needs_compiler
def test_padded_tensor_input_and_unconditional_generation() -> None:
    model = odd_model("mol", "local")
    c = torch.randn(2, 8, 6)
    as_list = generate(model, [c[0, :, :6], c[1, :, :4]], seed=1)
    as_tensor = generate(model, c, lengths=[6, 4], seed=1)
    assert [len(w) for w in as_tensor] == [36, 24]
    assert all(torch.equal(a, b) for a, b in zip(as_list, as_tensor))
    one = generate(model, c[0].numpy(), seed=1)  # a single (cin_channels, frames) mel
    assert len(one) == 1 and len(one[0]) == 36

    unconditioned = odd_model("gaussian", "global")
    wavs = generate(unconditioned, g=[0, 2, 1], T=[30, 10, 20], seed=0)
    assert [len(w) for w in wavs] == [30, 10, 20]
    wavs = generate(unconditioned, g=1, T=25, seed=0)
    assert [len(w) for w in wavs] == [25]


def test_generate_argument_errors() -> None:
    model = odd_model("mol", "both")
    with pytest.raises(ValueError, match=r"pass mel\.T"):
        generate(model, [torch.randn(10, 8)], g=0)
    with pytest.raises(ValueError, match="pass c"):
        generate(model, None, g=0, T=10)
    with pytest.raises(ValueError, match="pass g"):
        generate(model, [torch.randn(8, 3)])
    with pytest.raises(ValueError, match="speaker ids"):
        generate(model, [torch.randn(8, 3)], g=[7])
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [torch.randn(8, 3)], g=0, temperature=-1.0)


def test_generate_falls_back_without_the_compiled_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    model = odd_model("mulaw", "local")
    mels = [torch.randn(8, 3), torch.randn(8, 2)]
    monkeypatch.setattr(generation, "load_library", lambda: None)
    wavs = generate(model, mels, seed=0, temperature=0.0)
    assert [len(w) for w in wavs] == [18, 12]


def test_missing_compiler_warns_and_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_generation, "_find_compiler", lambda: None)
    load_library.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_library() is None
        assert any("falls back" in str(w.message) for w in caught)
    finally:
        load_library.cache_clear()


def test_build_from_scratch_in_a_fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cc = fast_generation._find_compiler()
    if cc is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("TACOWAVE_CACHE_DIR", str(tmp_path))
    load_library.cache_clear()
    try:
        lib = load_library()
        assert lib is not None
        assert len(list(tmp_path.glob("fastwavenet-*.so"))) == 1
    finally:
        load_library.cache_clear()
