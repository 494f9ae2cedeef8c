"""Output distributions of the WaveNet vocoder against independent float64 computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import expit, log_expit, logsumexp
from scipy.stats import norm

from tacowave.audio import mulaw_quantize
from tacowave.hparams import WaveNetConfig
from wavenet_vocoder.mixture import (
    StepNoise,
    categorical_sample_from_uniforms,
    discretized_mix_logistic_loss,
    gaussian_loss,
    mol_moments,
    mulaw_loss,
    sample_from_categorical,
    sample_from_discretized_mix_logistic,
    sample_from_gaussian,
    wavenet_loss,
)
from wavenet_vocoder.modules import single_torch_thread


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests run tiny operators, which multi-threaded PyTorch slows down on a busy machine."""
    with single_torch_thread():
        yield


def mol_nll_reference(y_hat: np.ndarray, y: np.ndarray, num_classes: int, log_scale_min: float) -> np.ndarray:
    """Per-sample NLL (B, T) of a discretised mixture of logistics, written from the definition."""
    b_size, c, t_size = y_hat.shape
    k_size = c // 3
    half = 1.0 / (num_classes - 1)
    out = np.zeros((b_size, t_size))
    for b in range(b_size):
        for t in range(t_size):
            logits = y_hat[b, :k_size, t].astype(np.float64)
            log_pi = logits - logsumexp(logits)
            x = float(y[b, t, 0])
            terms = []
            for k in range(k_size):
                mu = float(y_hat[b, k_size + k, t])
                log_s = max(float(y_hat[b, 2 * k_size + k, t]), log_scale_min)
                s = math.exp(log_s)
                upper, lower = (x + half - mu) / s, (x - half - mu) / s
                if x < -1 + half:        # lowest bin: everything below its upper edge
                    log_p = log_expit(upper)
                elif x > 1 - half:       # highest bin: everything above its lower edge
                    log_p = log_expit(-lower)
                else:
                    delta = expit(upper) - expit(lower)
                    if delta > 1e-5:
                        log_p = math.log(delta)
                    else:                # density at the centre times the bin width
                        z = (x - mu) / s
                        log_pdf = z - log_s - 2 * np.logaddexp(0, z)
                        log_p = log_pdf + math.log(2 * half)
                terms.append(log_pi[k] + log_p)
            out[b, t] = -logsumexp(terms)
    return out


def random_mol(b: int, k: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, t, generator=g)
    means = torch.rand(b, k, t, generator=g) * 1.6 - 0.8
    log_scales = torch.rand(b, k, t, generator=g) * 3 - 5.0
    return torch.cat([logits, means, log_scales], dim=1)


def test_mol_loss_matches_float64_definition() -> None:
    y_hat = random_mol(2, 4, 50, seed=0)
    # targets near the components (typical), plus the exact edges
    y = (torch.rand(2, 50, 1, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8)
    y[0, :5, 0] = -1.0
    y[1, :5, 0] = 1.0
    got = discretized_mix_logistic_loss(y_hat, y, num_classes=65536, log_scale_min=-16.0, reduce=False)
    assert got.shape == (2, 50, 1)
    ref = mol_nll_reference(y_hat.numpy(), y.numpy(), 65536, -16.0)
    np.testing.assert_allclose(got[..., 0].numpy(), ref, rtol=1e-4, atol=1e-4)
    mean = discretized_mix_logistic_loss(y_hat, y, num_classes=65536, log_scale_min=-16.0)
    assert mean.dim() == 0 and torch.isfinite(mean)
    assert mean.item() == pytest.approx(ref.mean(), rel=1e-4)


def test_mol_loss_edges_and_small_probability_fallback() -> None:
    k = 2
    #                  logits     means        log scales
    cols = [
        ([0.0, 0.0], [0.49, -0.3], [-7.0, -7.0], 0.5),     # both CDF differences underflow -> fallback
        ([0.0, 1.0], [0.9, -0.9], [-3.0, -2.0], 1.0),      # +1: 1 - CDF at the highest bin's lower edge
        ([2.0, 0.0], [-0.95, 0.2], [-4.0, -3.0], -1.0),    # -1: CDF at the lowest bin's upper edge
        ([0.0, 0.0], [0.0, 0.1], [-20.0, -3.0], 0.0),      # log scale below log_scale_min is clamped
    ]
    y_hat = torch.tensor([[lg + mu + ls for lg, mu, ls, _ in cols]]).transpose(1, 2).float()
    y = torch.tensor([[[y0] for *_, y0 in cols]]).float()
    assert y_hat.shape == (1, 3 * k, len(cols))
    for num_classes, log_scale_min in ((65536, -16.0), (256, -7.0)):
        got = discretized_mix_logistic_loss(y_hat, y, num_classes, log_scale_min, reduce=False)[..., 0]
        ref = mol_nll_reference(y_hat.numpy(), y.numpy(), num_classes, log_scale_min)
        assert torch.isfinite(got).all()
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-4)
    # the fallback case really is in the fallback regime
    s = math.exp(-7.0)
    half = 1 / 65535
    delta = expit((0.5 + half - 0.49) / s) - expit((0.5 - half - 0.49) / s)
    assert delta < 1e-5


def test_mol_loss_stays_fp32_under_autocast() -> None:
    y_hat = random_mol(2, 3, 20, seed=3)
    y = torch.rand(2, 20, 1) * 1.6 - 0.8
    ref = discretized_mix_logistic_loss(y_hat, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = discretized_mix_logistic_loss(y_hat.bfloat16(), y.bfloat16())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), abs=0.05)


def test_mol_loss_gradient_is_finite() -> None:
    y_hat = random_mol(1, 3, 30, seed=4).requires_grad_()
    y = torch.rand(1, 30, 1) * 2 - 1
    y[0, 0, 0], y[0, 1, 0] = -1.0, 1.0
    discretized_mix_logistic_loss(y_hat, y).backward()
    assert torch.isfinite(y_hat.grad).all()


def test_mol_sampler_range_and_moments() -> None:
    n = 200_000
    #                logits           means              log scales
    params = torch.tensor([0.3, -0.5, 1.0] + [-0.4, 0.1, 0.35] + [-3.0, -2.5, -3.5])
    y_hat = params.view(1, 9, 1).expand(1, 9, n).contiguous()
    x = sample_from_discretized_mix_logistic(y_hat, generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, n)
    assert x.min() >= -1 and x.max() <= 1
    mean, var = mol_moments(y_hat[:, :, :1])
    # the mixture keeps essentially all of its mass inside (-1, 1), so clamping does not move the moments
    se_mean = math.sqrt(var.item() / n)
    assert x.mean().item() == pytest.approx(mean.item(), abs=5 * se_mean)
    assert x.var().item() == pytest.approx(var.item(), rel=0.03)
    # logistic variance s^2 pi^2 / 3 for a single component
    one = torch.tensor([0.0, 0.2, -3.0]).view(1, 3, 1).expand(1, 3, n).contiguous()
    x1 = sample_from_discretized_mix_logistic(one, generator=torch.Generator().manual_seed(1))
    assert x1.var().item() == pytest.approx(math.exp(-6.0) * math.pi ** 2 / 3, rel=0.03)


def test_mol_sampler_clamps_to_unit_interval() -> None:
    y_hat = torch.tensor([0.0, 0.95, 0.0]).view(1, 3, 1).expand(1, 3, 10_000).contiguous()
    x = sample_from_discretized_mix_logistic(y_hat, generator=torch.Generator().manual_seed(0))
    assert x.max() == 1.0 and x.min() >= -1.0


def test_gaussian_loss_and_sampler() -> None:
    g = torch.Generator().manual_seed(0)
    y_hat = torch.stack([torch.rand(2, 40, generator=g) - 0.5, torch.rand(2, 40, generator=g) * 2 - 4], dim=1)
    y = torch.rand(2, 40, 1, generator=g) - 0.5
    got = gaussian_loss(y_hat, y, log_scale_min=-16.0, reduce=False)[..., 0]
    ref = -norm.logpdf(y[..., 0].double().numpy(), loc=y_hat[:, 0].double().numpy(),
                       scale=np.exp(y_hat[:, 1].double().numpy()))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert gaussian_loss(y_hat, y).item() == pytest.approx(ref.mean(), rel=1e-5)

    n = 100_000
    one = torch.tensor([0.1, math.log(0.05)]).view(1, 2, 1).expand(1, 2, n).contiguous()
    x = sample_from_gaussian(one, generator=torch.Generator().manual_seed(2))
    assert x.min() >= -1 and x.max() <= 1
    assert x.mean().item() == pytest.approx(0.1, abs=5 * 0.05 / math.sqrt(n))
    assert x.std().item() == pytest.approx(0.05, rel=0.02)


def test_mulaw_loss_and_sampler() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 16, 30, generator=g)
    target = torch.randint(0, 16, (2, 30), generator=g)
    got = mulaw_loss(logits, target, reduce=False)[..., 0]
    lp = logits.double().numpy()
    log_softmax = lp - logsumexp(lp, axis=1, keepdims=True)
    ref = -np.take_along_axis(log_softmax, target.numpy()[:, None, :], axis=1)[:, 0]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)

    n = 200_000
    row = torch.randn(8, generator=g)
    draws = sample_from_categorical(row.view(1, 8, 1).expand(1, 8, n).contiguous(),
                                    generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(draws.reshape(-1), minlength=8).double() / n
    assert torch.allclose(freq, torch.softmax(row.double(), 0), atol=0.005)
    # temperature 0 is the arg-max
    u = torch.rand(1, 5, 1)
    assert (categorical_sample_from_uniforms(logits[:1, :, :5], u, temperature=0.0)
            == logits[:1, :, :5].argmax(1)).all()


def test_wavenet_loss_dispatch() -> None:
    y = torch.rand(1, 20, 1) * 2 - 1
    cfg = WaveNetConfig(output_distribution="mulaw", mulaw_channels=32)
    logits = torch.randn(1, 32, 20)
    assert wavenet_loss(logits, y, cfg).item() == pytest.approx(
        mulaw_loss(logits, mulaw_quantize(y[..., 0], 32)).item())
    cfg = WaveNetConfig(output_distribution="gaussian")
    y_hat = torch.randn(1, 2, 20)
    assert wavenet_loss(y_hat, y, cfg, reduce=False).shape == (1, 20, 1)
    cfg = WaveNetConfig(num_mixtures=2)
    y_hat = random_mol(1, 2, 20, seed=5)
    assert wavenet_loss(y_hat, y, cfg).item() == pytest.approx(
        discretized_mix_logistic_loss(y_hat, y, cfg.quantize_channels, cfg.log_scale_min).item())


def test_step_noise_does_not_depend_on_chunking() -> None:
    cfg = WaveNetConfig(num_mixtures=3)
    whole = StepNoise(cfg, 2, seed=7, block=16).get(0, 50)
    chunked = StepNoise(cfg, 2, seed=7, block=16)
    parts = torch.cat([chunked.get(0, 5), chunked.get(5, 33), chunked.get(33, 50)])
    assert whole.shape == (50, 2, 4)
    assert torch.equal(whole, parts)
    assert whole.min() > 0 and whole.max() < 1
    with pytest.raises(ValueError, match="forward-only"):
        chunked.get(0, 1)
