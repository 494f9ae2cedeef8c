"""The WaveNet vocoder model: shapes, conditioning, upsampling, incremental == parallel."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from tacowave.hparams import WaveNetConfig
from wavenet_vocoder import build_wavenet, receptive_field_size, wavenet_loss
from wavenet_vocoder.modules import single_torch_thread
from wavenet_vocoder.upsample import ConditioningUpsampler

SMALL = WaveNetConfig(layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_out_channels=16,
                      num_mixtures=3, mulaw_channels=32, cin_channels=8, cin_pad=1, upsample_scales=[2, 3],
                      gin_channels=0, dropout=0.1)
CONDITIONING = {"none": (0, 0), "local": (8, 0), "global": (0, 4), "both": (8, 4)}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run tiny operators, which multi-threaded PyTorch slows down on a busy machine."""
    with single_torch_thread():
        yield


def small_model(distribution: str = "mol", kind: str = "both", **overrides) -> torch.nn.Module:
    cin, gin = CONDITIONING[kind]
    cfg = dataclasses.replace(SMALL, output_distribution=distribution, cin_channels=cin, gin_channels=gin,
                              **overrides)
    torch.manual_seed(0)
    return build_wavenet(cfg, n_speakers=3).eval()


def model_inputs(model, batch: int, frames: int, seed: int = 0):
    """A teacher-forcing input (B, in_channels, T) and matching conditioning."""
    g = torch.Generator().manual_seed(seed)
    hop, cfg = model.hop_size, model.cfg
    steps = frames * (hop if model.local_conditioning else 1)
    if cfg.output_distribution == "mulaw":
        x = F.one_hot(torch.randint(0, cfg.mulaw_channels, (batch, steps), generator=g), cfg.mulaw_channels)
        x = x.float().transpose(1, 2)
    else:
        x = torch.rand(batch, 1, steps, generator=g) * 2 - 1
    c = (torch.randn(batch, cfg.cin_channels, frames + 2 * cfg.cin_pad, generator=g)
         if model.local_conditioning else None)
    spk = torch.arange(batch) % 3 if model.global_conditioning else None
    return x, c, spk


@pytest.mark.parametrize("layers,cycles,expected", [(30, 3, 6139), (24, 4, 505), (12, 2, 253), (30, 30, 61)])
def test_receptive_field_table(layers: int, cycles: int, expected: int) -> None:
    assert receptive_field_size(layers, cycles, 3) == expected


def test_receptive_field_of_the_model_is_its_causal_reach() -> None:
    model = small_model(kind="none")
    rf = model.receptive_field
    assert rf == receptive_field_size(6, 2, 3) == 29  # dilations 1, 2, 4, 1, 2, 4
    x = torch.rand(1, 1, 40) * 2 - 1
    y = model(x)
    x2 = x.clone()
    x2[..., 40 - rf] += 0.5          # inside the field of the last output
    assert not torch.allclose(model(x2)[..., -1], y[..., -1])
    x3 = x.clone()
    x3[..., 40 - rf - 1] += 0.5      # just outside it
    assert torch.allclose(model(x3)[..., -1], y[..., -1])
    x4 = x.clone()
    x4[..., -1] += 0.5               # causality: the future never leaks into the past
    assert torch.allclose(model(x4)[..., :-1], y[..., :-1])


@pytest.mark.parametrize("distribution,channels", [("mol", 9), ("gaussian", 2), ("mulaw", 32)])
def test_output_shapes_and_loss(distribution: str, channels: int) -> None:
    model = small_model(distribution)
    model.train()
    x, c, spk = model_inputs(model, batch=2, frames=4)
    y_hat = model(x, c, spk)
    assert y_hat.shape == (2, channels, 24)
    target = torch.rand(2, 24, 1) * 2 - 1
    loss = wavenet_loss(y_hat, target, model.cfg)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_input_errors_are_clear() -> None:
    model = small_model("mol", "both")
    x, c, spk = model_inputs(model, batch=2, frames=4)
    with pytest.raises(ValueError, match="pass c"):
        model(x, None, spk)
    with pytest.raises(ValueError, match="pass g"):
        model(x, c, None)
    with pytest.raises(ValueError, match="frames"):
        model(x, c[:, :, :-1], spk)
    with pytest.raises(ValueError, match=r"\(B, 1, T\)"):
        model(x.repeat(1, 2, 1), c, spk)
    with pytest.raises(ValueError, match="speaker ids"):
        model(x, c, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="channels-first"):
        model(x, c.transpose(1, 2), spk)


@pytest.mark.parametrize("distribution", ["mol", "gaussian", "mulaw"])
@pytest.mark.parametrize("kind", list(CONDITIONING))
def test_incremental_equals_parallel(distribution: str, kind: str) -> None:
    model = small_model(distribution, kind)
    x, c, spk = model_inputs(model, batch=2, frames=6)
    parallel = model(x, c, spk)
    _, incremental = model.incremental_forward(c, spk, test_inputs=x)
    assert incremental.shape == parallel.shape
    assert torch.allclose(incremental, parallel, atol=1e-4, rtol=0)


def test_incremental_free_running_is_seeded() -> None:
    model = small_model("mol", "local")
    _, c, _ = model_inputs(model, batch=2, frames=3)
    a, pa = model.incremental_forward(c, seed=3)
    b, pb = model.incremental_forward(c, seed=3)
    other, _ = model.incremental_forward(c, seed=4)
    assert a.shape == (2, 18) and torch.equal(a, b) and torch.equal(pa, pb)
    assert not torch.equal(a, other)
    assert a.abs().max() <= 1


def test_remove_weight_norm_keeps_outputs() -> None:
    model = small_model("mol", "both")
    x, c, spk = model_inputs(model, batch=2, frames=4)
    before = model(x, c, spk)
    assert any(parametrize.is_parametrized(m) for m in model.modules())
    model.remove_weight_norm()
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert torch.allclose(model(x, c, spk), before, atol=1e-6)


def test_without_weight_norm_builds_plain_convolutions() -> None:
    model = small_model("mol", "none", weight_normalization=False)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


@pytest.mark.parametrize("mode", ["nearest", "transposed"])
@pytest.mark.parametrize("cin_pad", [0, 2])
def test_upsampler_length_and_windows(mode: str, cin_pad: int) -> None:
    up = ConditioningUpsampler(5, [4, 4, 4, 4], mode, cin_pad)
    assert up.hop_size == 256
    for frames in (1, 3, 7):
        c = torch.randn(2, 5, frames + 2 * cin_pad)
        out = up(c)
        assert out.shape == (2, 5, frames * 256)
    # windows of the long one equal slices of its full upsampling
    for t0, t1 in ((0, 100), (250, 900), (1000, 1792), (1791, 1792)):
        assert torch.allclose(up.window(c, t0, t1), out[:, :, t0:t1], atol=1e-5)


def test_upsampler_starts_as_repetition() -> None:
    c = torch.randn(1, 3, 4)
    up = ConditioningUpsampler(3, [2, 3], "transposed", 0)
    assert torch.allclose(up(c), c.repeat_interleave(6, dim=-1))
    padded = ConditioningUpsampler(3, [2, 3], "transposed", 1)
    assert torch.allclose(padded(F.pad(c, (1, 1), mode="replicate")), c.repeat_interleave(6, dim=-1))


def test_reference_configuration_size() -> None:
    cfg = WaveNetConfig()
    model = build_wavenet(cfg)
    assert model.out_channels == 30 and model.hop_size == 256 and model.receptive_field == 505
    assert len(model.conv_layers) == 24
    assert [layer.dilation for layer in model.conv_layers[:7]] == [1, 2, 4, 8, 16, 32, 1]
