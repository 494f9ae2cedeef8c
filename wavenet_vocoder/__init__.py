"""WaveNet vocoder: model, output distributions and fast generation.

Public API::

    build_wavenet(cfg, n_speakers=1) -> WaveNet
    WaveNet.forward(x, c=None, g=None) -> (B, out_channels, T)
    wavenet_loss(y_hat, y, cfg, reduce=True)          # and the per-distribution losses
    generate(model, c=None, g=None, T=None, ...) -> list of waveforms
"""
from wavenet_vocoder.generation import generate
from wavenet_vocoder.mixture import (
    discretized_mix_logistic_loss,
    gaussian_loss,
    mulaw_loss,
    output_channels,
    sample_from_categorical,
    sample_from_discretized_mix_logistic,
    sample_from_gaussian,
    wavenet_loss,
)
from wavenet_vocoder.model import WaveNet, build_wavenet, receptive_field_size

__all__ = [
    "WaveNet",
    "build_wavenet",
    "discretized_mix_logistic_loss",
    "gaussian_loss",
    "generate",
    "mulaw_loss",
    "output_channels",
    "receptive_field_size",
    "sample_from_categorical",
    "sample_from_discretized_mix_logistic",
    "sample_from_gaussian",
    "wavenet_loss",
]
