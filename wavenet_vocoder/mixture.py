"""Output distributions of the WaveNet vocoder: losses, samplers and sampling noise.

Three distributions over the next sample, chosen by ``WaveNetConfig.output_distribution``:

``mol``
    Discretised mixture of logistics (PixelCNN++, Salimans et al. 2017; Parallel WaveNet).
    ``y_hat`` is ``(B, 3K, T)``: mixture logits, means, log scales.
``gaussian``
    A single Gaussian (ClariNet). ``y_hat`` is ``(B, 2, T)``: mean, log standard deviation.
``mulaw``
    Softmax over ``mulaw_channels`` mu-law classes. ``y_hat`` is ``(B, C, T)`` logits.

Every loss casts its inputs to float32: the log-sum-exp and the tiny CDF differences of a
16-bit discretisation are not representable in half precision, so the loss stays fp32 even
inside ``torch.autocast``.

Sampling is split in two so that the plain PyTorch generator and the compiled one consume
exactly the same random numbers: :class:`StepNoise` draws the per-step noise (``noise_dim``
numbers per utterance and step), and the ``*_from_noise`` functions turn noise into samples.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from tacowave.audio import inv_mulaw_quantize, mulaw_quantize
from tacowave.hparams import WaveNetConfig

# Uniforms are kept this far from 0 and 1 so that log(-log(u)) and log(u) - log(1 - u) stay
# finite in float32.
UNIFORM_EPS = 1e-5

DISTRIBUTIONS = ("mol", "gaussian", "mulaw")


def output_channels(cfg: WaveNetConfig) -> int:
    """Channels of the network output for the configured distribution."""
    if cfg.output_distribution == "mol":
        return 3 * cfg.num_mixtures
    if cfg.output_distribution == "gaussian":
        return 2
    if cfg.output_distribution == "mulaw":
        return cfg.mulaw_channels
    raise ValueError(f"unknown output_distribution {cfg.output_distribution!r}; "
                     f"expected one of {', '.join(DISTRIBUTIONS)}")


def noise_dim(cfg: WaveNetConfig) -> int:
    """Random numbers one sampling step consumes per utterance.

    mol: K uniforms for the Gumbel-max component choice + 1 for the logistic draw;
    gaussian: 1 standard normal; mulaw: 1 uniform for the inverse-CDF categorical draw.
    """
    return cfg.num_mixtures + 1 if cfg.output_distribution == "mol" else 1


# --------------------------------------------------------------------------- mixture of logistics


def _split_mol(y_hat: torch.Tensor, log_scale_min: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3K, T) -> logits, means, clamped log scales, each (B, T, K)."""
    if y_hat.dim() != 3 or y_hat.size(1) % 3 != 0:
        raise ValueError(f"y_hat must be (B, 3K, T), got shape {tuple(y_hat.shape)}")
    k = y_hat.size(1) // 3
    y = y_hat.transpose(1, 2)
    return y[..., :k], y[..., k:2 * k], torch.clamp(y[..., 2 * k:], min=log_scale_min)


def discretized_mix_logistic_loss(y_hat: torch.Tensor, y: torch.Tensor, num_classes: int = 65536,
                                  log_scale_min: float = -16.0, reduce: bool = True) -> torch.Tensor:
    """Negative log-likelihood (nats) of ``y`` under a discretised mixture of logistics.

    The waveform in [-1, 1] is treated as ``num_classes`` bins of width ``2 / (num_classes - 1)``
    centred on the quantisation levels. A bin's probability is the logistic CDF difference over
    it; the lowest bin extends to -inf (log CDF of its upper edge) and the highest to +inf
    (log of 1 - CDF of its lower edge). Where the CDF difference underflows (< 1e-5) the
    probability is approximated by the density at the bin centre times the bin width, i.e.
    ``log pdf - log((num_classes - 1) / 2)``.

    The edge bins are detected at half a bin from +-1 rather than PixelCNN++'s fixed 0.999,
    which at 16 bits would lump the top and bottom ~33 levels into the edge bins, and the log
    of the CDF difference is computed in a form that does not cancel in float32.

    Args:
        y_hat: (B, 3K, T) mixture logits, means and log scales.
        y: (B, T, 1) target waveform in [-1, 1].
        num_classes: number of quantisation levels.
        log_scale_min: lower clamp of the log scales.
        reduce: mean over everything when True, else the per-sample NLL (B, T, 1) for masking.
    """
    y_hat = y_hat.float()
    y = y.float()
    if y.dim() != 3 or y.size(-1) != 1 or y.shape[:2] != (y_hat.size(0), y_hat.size(2)):
        raise ValueError(f"y must be (B, T, 1) matching y_hat (B, 3K, T) = {tuple(y_hat.shape)}, "
                         f"got {tuple(y.shape)}")
    logit_probs, means, log_scales = _split_mol(y_hat, log_scale_min)
    half_bin = 1.0 / (num_classes - 1)

    centered = y - means
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered + half_bin)
    min_in = inv_stdv * (centered - half_bin)
    # log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a)): no
    # cancellation in float32 when both CDFs are close to 0 or to 1 (a - b is the bin width / s).
    log_cdf_delta = (F.logsigmoid(plus_in) + F.logsigmoid(-min_in)
                     + torch.log(-torch.expm1(-2.0 * half_bin * inv_stdv)))
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)

    log_bin = torch.where(log_cdf_delta > math.log(1e-5), log_cdf_delta,
                          log_pdf_mid - math.log((num_classes - 1) / 2))
    log_bin = torch.where(y > 1.0 - half_bin, F.logsigmoid(-min_in), log_bin)
    log_bin = torch.where(y < -1.0 + half_bin, F.logsigmoid(plus_in), log_bin)

    log_probs = log_bin + torch.log_softmax(logit_probs, dim=-1)
    nll = -torch.logsumexp(log_probs, dim=-1, keepdim=True)
    return nll.mean() if reduce else nll


def _uniforms(shape: tuple[int, ...], generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device)
    return u * (1.0 - 2.0 * UNIFORM_EPS) + UNIFORM_EPS


def mol_sample_from_uniforms(y_hat: torch.Tensor, uniforms: torch.Tensor, log_scale_min: float = -16.0,
                             temperature: float = 1.0) -> torch.Tensor:
    """Draw from a mixture of logistics given the noise.

    Args:
        y_hat: (B, 3K, T) mixture parameters.
        uniforms: (B, T, K + 1) numbers in (0, 1): K for the Gumbel-max component choice, the
            last for the logistic draw (inverse CDF).
        temperature: multiplies the logistic scale (0 = the chosen component's mean).
    Returns:
        (B, T) samples clamped to [-1, 1].
    """
    logit_probs, means, log_scales = _split_mol(y_hat.float(), log_scale_min)
    k = logit_probs.size(-1)
    u = uniforms.float()
    component = torch.argmax(logit_probs - torch.log(-torch.log(u[..., :k])), dim=-1, keepdim=True)
    mean = torch.gather(means, -1, component).squeeze(-1)
    scale = torch.exp(torch.gather(log_scales, -1, component).squeeze(-1))
    v = u[..., k]
    x = mean + temperature * scale * (torch.log(v) - torch.log1p(-v))
    return torch.clamp(x, -1.0, 1.0)


def sample_from_discretized_mix_logistic(y_hat: torch.Tensor, log_scale_min: float = -16.0,
                                         temperature: float = 1.0,
                                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample (B, T) in [-1, 1] from the mixture of logistics ``y_hat`` (B, 3K, T)."""
    b, c, t = y_hat.shape
    u = _uniforms((b, t, c // 3 + 1), generator, y_hat.device)
    return mol_sample_from_uniforms(y_hat, u, log_scale_min, temperature)


def mol_moments(y_hat: torch.Tensor, log_scale_min: float = -16.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance (each (B, T)) of the (unclamped, continuous) mixture of logistics.

    A logistic of scale s has variance s^2 pi^2 / 3.
    """
    logit_probs, means, log_scales = _split_mol(y_hat.float(), log_scale_min)
    pi = torch.softmax(logit_probs, dim=-1)
    mean = (pi * means).sum(-1)
    second = (pi * (torch.exp(2 * log_scales) * math.pi ** 2 / 3 + means ** 2)).sum(-1)
    return mean, second - mean ** 2


# --------------------------------------------------------------------------- single Gaussian


def gaussian_loss(y_hat: torch.Tensor, y: torch.Tensor, log_scale_min: float = -16.0,
                  reduce: bool = True) -> torch.Tensor:
    """Negative log-density (nats) of ``y`` under N(mean, exp(log_std)^2).

    Args:
        y_hat: (B, 2, T) mean and log standard deviation (clamped below at log_scale_min).
        y: (B, T, 1) target waveform.
        reduce: mean when True, else (B, T, 1).
    """
    y_hat = y_hat.float()
    y = y.float()
    if y_hat.dim() != 3 or y_hat.size(1) != 2:
        raise ValueError(f"y_hat must be (B, 2, T), got shape {tuple(y_hat.shape)}")
    mean = y_hat[:, 0, :].unsqueeze(-1)
    log_std = torch.clamp(y_hat[:, 1, :], min=log_scale_min).unsqueeze(-1)
    nll = 0.5 * math.log(2 * math.pi) + log_std + 0.5 * ((y - mean) * torch.exp(-log_std)) ** 2
    return nll.mean() if reduce else nll


def gaussian_sample_from_normals(y_hat: torch.Tensor, normals: torch.Tensor, log_scale_min: float = -16.0,
                                 temperature: float = 1.0) -> torch.Tensor:
    """(B, 2, T) parameters and (B, T, 1) standard normals -> (B, T) samples clamped to [-1, 1]."""
    y_hat = y_hat.float()
    mean = y_hat[:, 0, :]
    std = torch.exp(torch.clamp(y_hat[:, 1, :], min=log_scale_min))
    return torch.clamp(mean + temperature * std * normals[..., 0].float(), -1.0, 1.0)


def sample_from_gaussian(y_hat: torch.Tensor, log_scale_min: float = -16.0, temperature: float = 1.0,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample (B, T) in [-1, 1] from the Gaussian ``y_hat`` (B, 2, T)."""
    b, _, t = y_hat.shape
    n = torch.randn((b, t, 1), generator=generator, device=y_hat.device)
    return gaussian_sample_from_normals(y_hat, n, log_scale_min, temperature)


# --------------------------------------------------------------------------- mu-law softmax


def mulaw_loss(y_hat: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Cross-entropy (nats) of mu-law class targets.

    Args:
        y_hat: (B, C, T) logits.
        target: (B, T) integer classes in [0, C - 1].
        reduce: mean when True, else (B, T, 1).
    """
    nll = F.cross_entropy(y_hat.float(), target.long(), reduction="none")
    return nll.mean() if reduce else nll.unsqueeze(-1)


def categorical_sample_from_uniforms(logits: torch.Tensor, uniforms: torch.Tensor,
                                     temperature: float = 1.0) -> torch.Tensor:
    """Inverse-CDF draw from softmax(logits / temperature).

    Args:
        logits: (B, C, T).
        uniforms: (B, T, 1) numbers in (0, 1).
        temperature: 0 picks the arg-max class.
    Returns:
        (B, T) int64 classes.
    """
    logits = logits.float().transpose(1, 2)
    if temperature <= 0:
        return torch.argmax(logits, dim=-1)
    scaled = logits / temperature
    weights = torch.exp(scaled - scaled.max(dim=-1, keepdim=True).values)
    cdf = torch.cumsum(weights, dim=-1)
    threshold = uniforms.float() * cdf[..., -1:]
    cls = (cdf <= threshold).sum(-1)
    return torch.clamp(cls, max=logits.size(-1) - 1)


def decode_mulaw(classes: torch.Tensor, channels: int) -> torch.Tensor:
    """Mu-law classes (any shape, integer) -> float32 waveform values in [-1, 1].

    Through a table of the ``channels`` levels, so that a class decodes to the same float
    whatever the shape of the tensor it sits in (vectorised and scalar ``pow`` differ in the
    last bit), and both generators return bit-identical waveforms.
    """
    levels = inv_mulaw_quantize(torch.arange(channels, device=classes.device), channels).float()
    return levels[classes.long()]


def sample_from_categorical(logits: torch.Tensor, temperature: float = 1.0,
                            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample (B, T) classes from the logits (B, C, T)."""
    b, _, t = logits.shape
    return categorical_sample_from_uniforms(logits, _uniforms((b, t, 1), generator, logits.device), temperature)


# --------------------------------------------------------------------------- dispatch


def wavenet_loss(y_hat: torch.Tensor, y: torch.Tensor, cfg: WaveNetConfig, reduce: bool = True) -> torch.Tensor:
    """The configured distribution's NLL (nats per sample) of the waveform ``y``.

    Args:
        y_hat: (B, out_channels, T) network output.
        y: (B, T, 1) target waveform in [-1, 1] (mu-law quantised here for ``mulaw``).
        reduce: mean when True, else the per-sample loss (B, T, 1).
    """
    kind = cfg.output_distribution
    if kind == "mol":
        return discretized_mix_logistic_loss(y_hat, y, cfg.quantize_channels, cfg.log_scale_min, reduce)
    if kind == "gaussian":
        return gaussian_loss(y_hat, y, cfg.log_scale_min, reduce)
    if kind == "mulaw":
        return mulaw_loss(y_hat, mulaw_quantize(y.squeeze(-1), cfg.mulaw_channels), reduce)
    raise ValueError(f"unknown output_distribution {kind!r}; expected one of {', '.join(DISTRIBUTIONS)}")


def sample_from_noise(cfg: WaveNetConfig, y_hat: torch.Tensor, noise: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """One draw per (utterance, step) from ``y_hat`` (B, C, T) with ``noise`` (B, T, noise_dim).

    Returns (B, T): waveform values in [-1, 1] for mol/gaussian, int64 classes for mulaw.
    """
    kind = cfg.output_distribution
    if kind == "mol":
        return mol_sample_from_uniforms(y_hat, noise, cfg.log_scale_min, temperature)
    if kind == "gaussian":
        return gaussian_sample_from_normals(y_hat, noise, cfg.log_scale_min, temperature)
    return categorical_sample_from_uniforms(y_hat, noise, temperature)


class StepNoise:
    """The random numbers of a generation run, drawn in fixed blocks of steps.

    ``get(t0, t1)`` returns the noise of steps [t0, t1) as (t1 - t0, B, noise_dim). Drawing in
    fixed-size blocks from one generator makes the numbers independent of how a caller splits
    the run into chunks, so two generators that walk the same steps see the same noise.
    Access must move forward (each block is drawn once).
    """

    def __init__(self, cfg: WaveNetConfig, batch_size: int, seed: Optional[int] = None, block: int = 1024) -> None:
        self.kind = cfg.output_distribution
        self.dim = noise_dim(cfg)
        self.batch_size = batch_size
        self.block = block
        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)
        self._start = 0
        self._data = self._draw()

    def _draw(self) -> torch.Tensor:
        shape = (self.block, self.batch_size, self.dim)
        if self.kind == "gaussian":
            return torch.randn(shape, generator=self._generator)
        return _uniforms(shape, self._generator, torch.device("cpu"))

    def get(self, t0: int, t1: int) -> torch.Tensor:
        if t0 < self._start:
            raise ValueError(f"StepNoise is forward-only: asked for step {t0} after block {self._start}")
        parts = []
        t = t0
        while t < t1:
            while t >= self._start + self.block:
                self._start += self.block
                self._data = self._draw()
            end = min(t1, self._start + self.block)
            parts.append(self._data[t - self._start:end - self._start])
            t = end
        if not parts:
            return torch.empty(0, self.batch_size, self.dim)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
