"""Import NVIDIA/tacotron2 checkpoints (e.g. their published ``tacotron2_statedict.pt``).

Their checkpoint is a dict whose ``state_dict`` holds the parameters of their ``model.py``
(``embedding``, ``encoder.convolutions.N.{0.conv,1}``, ``encoder.lstm``, ``decoder.prenet``,
``decoder.attention_rnn``, ``decoder.attention_layer.*``, ``decoder.decoder_rnn``,
``decoder.linear_projection``, ``decoder.gate_layer``, ``postnet.convolutions.N.{0.conv,1}``);
training checkpoints also hold ``optimizer``, ``learning_rate`` and ``iteration`` (ignored), and
checkpoints saved from a DataParallel / distributed run prefix every name with ``module.``.
Every one of their tensors maps to exactly one of ours and back (:func:`nvidia_names`); the
model math is theirs for r = 1, so the converted model computes what theirs computes.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
from typing import Any, Mapping

import torch
from torch import Tensor

from tacowave.hparams import HParams, Tacotron2Config
from tacowave.training.checkpoint import FORMAT, VERSION, atomic_write

from .model import build_tacotron2, check_config


# NVIDIA/tacotron2's feature definition (their hparams.py + layers.TacotronSTFT +
# audio_processing.dynamic_range_compression): magnitude STFT, Slaney mel filterbank,
# log(clamp(mel, 1e-5)); wavs are scaled by 1/32768, never trimmed or peak-normalised.
NVIDIA_PRESET: dict[str, dict[str, Any]] = {
    "audio": {
        "sample_rate": 22050, "n_fft": 1024, "hop_size": 256, "win_size": 1024, "window": "hann",
        "num_mels": 80, "fmin": 0.0, "fmax": 8000.0, "magnitude_power": 1.0,
        "mel_normalization": "natural_log", "log_clamp": 1e-5, "preemphasis": 0.0,
        "trim_silence": False, "rescaling_max": 0.0,
    },
    "text": {"frontend": "english_nvidia"},
    "tacotron2": {
        "symbols_embedding_dim": 512, "encoder_n_convolutions": 3, "encoder_embedding_dim": 512,
        "encoder_kernel_size": 5, "attention_rnn_dim": 1024, "attention_dim": 128,
        "attention_location_n_filters": 32, "attention_location_kernel_size": 31,
        "prenet_dim": 256, "prenet_layers": 2, "decoder_rnn_dim": 1024,
        "p_attention_dropout": 0.1, "p_decoder_dropout": 0.1, "postnet_embedding_dim": 512,
        "postnet_kernel_size": 5, "postnet_n_convolutions": 5, "n_frames_per_step": 1,
        "gate_threshold": 0.5, "max_decoder_steps": 1000, "mask_padding": True,
    },
    "train_tacotron2": {
        "batch_size": 64, "learning_rate": 1e-3, "lr_schedule": "none", "adam_eps": 1e-8,
        "weight_decay": 1e-6, "grad_clip_norm": 1.0, "mel_loss": "mse", "stop_token_pos_weight": 1.0,
    },
}


def nvidia_symbols() -> list[str]:
    """NVIDIA/tacotron2's ``text/symbols.py`` table in their order (148 symbols), as the
    ``english_nvidia`` front-end spells it (the space is ``"<sp>"`` in every tacowave table), so
    that synthesis turns text into the ids the converted embedding was trained on."""
    from tacowave.text import get_frontend

    return list(get_frontend("english_nvidia").symbols)


class ConversionError(Exception):
    """The input is not a usable NVIDIA Tacotron-2 checkpoint (the message says why)."""


# --------------------------------------------------------------------------- names


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_LSTM_CELL = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def nvidia_names(cfg: Tacotron2Config) -> dict[str, str]:
    """NVIDIA parameter/buffer name -> ours, for a model of ``cfg``'s sizes (a bijection)."""
    names = {"embedding.weight": "embedding.weight"}
    for part, n in (("encoder", cfg.encoder_n_convolutions), ("postnet", cfg.postnet_n_convolutions)):
        for i in range(n):
            for p in ("weight", "bias"):
                names[f"{part}.convolutions.{i}.0.conv.{p}"] = f"{part}.convolutions.{i}.conv.{p}"
            for p in _BN:
                names[f"{part}.convolutions.{i}.1.{p}"] = f"{part}.convolutions.{i}.norm.{p}"
    for p in _LSTM_CELL:
        for suffix in ("_l0", "_l0_reverse"):
            names[f"encoder.lstm.{p}{suffix}"] = f"encoder.lstm.{p}{suffix}"
        for rnn in ("attention_rnn", "decoder_rnn"):
            names[f"decoder.{rnn}.{p}"] = f"decoder.{rnn}.{p}"
    for i in range(cfg.prenet_layers):
        names[f"decoder.prenet.layers.{i}.linear_layer.weight"] = f"decoder.prenet.layers.{i}.weight"
    att = "decoder.attention_layer"
    names.update({
        f"{att}.query_layer.linear_layer.weight": "decoder.attention.query.weight",
        f"{att}.memory_layer.linear_layer.weight": "decoder.attention.memory.weight",
        f"{att}.v.linear_layer.weight": "decoder.attention.v.weight",
        f"{att}.location_layer.location_conv.conv.weight": "decoder.attention.location_conv.weight",
        f"{att}.location_layer.location_dense.linear_layer.weight": "decoder.attention.location_dense.weight",
    })
    for p in ("weight", "bias"):
        names[f"decoder.linear_projection.linear_layer.{p}"] = f"decoder.mel_proj.{p}"
        names[f"decoder.gate_layer.linear_layer.{p}"] = f"decoder.gate_proj.{p}"
    return names


def _count(sd: Mapping[str, Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := regex.fullmatch(k))})


def _shape(sd: Mapping[str, Tensor], key: str, ndim: int) -> tuple[int, ...]:
    value = sd.get(key)
    if value is None:
        raise ConversionError(f"missing tensor {key!r}")
    if not isinstance(value, Tensor) or value.ndim != ndim:
        raise ConversionError(f"{key!r} is not a {ndim}-d tensor")
    return tuple(value.shape)


def infer_config(sd: Mapping[str, Tensor]) -> tuple[Tacotron2Config, int, int]:
    """Model sizes from an NVIDIA state dict (names already stripped of ``module.``).

    Returns ``(config, n_symbols, n_mels)``; the config starts from NVIDIA's preset, so
    settings the weights cannot tell (dropouts, gate threshold) are theirs.
    """
    n_symbols, emb_dim = _shape(sd, "embedding.weight", 2)
    enc_out, _, enc_kernel = _shape(sd, "encoder.convolutions.0.0.conv.weight", 3)
    att_hidden = _shape(sd, "decoder.attention_rnn.weight_hh", 2)[1]
    attention_dim = _shape(sd, "decoder.attention_layer.query_layer.linear_layer.weight", 2)[0]
    n_filters, _, loc_kernel = _shape(sd, "decoder.attention_layer.location_layer.location_conv.conv.weight", 3)
    prenet_dim, prenet_in = _shape(sd, "decoder.prenet.layers.0.linear_layer.weight", 2)
    dec_hidden = _shape(sd, "decoder.decoder_rnn.weight_hh", 2)[1]
    post_dim, n_mels, post_kernel = _shape(sd, "postnet.convolutions.0.0.conv.weight", 3)
    proj_out = _shape(sd, "decoder.linear_projection.linear_layer.weight", 2)[0]
    if proj_out != n_mels or prenet_in != n_mels:
        raise ConversionError(
            f"the checkpoint predicts {proj_out // max(n_mels, 1)} frames per decoder step; only "
            f"NVIDIA checkpoints trained with n_frames_per_step=1 can be converted")
    sizes: dict[str, Any] = dict(NVIDIA_PRESET["tacotron2"])
    sizes.update(
        symbols_embedding_dim=emb_dim, encoder_embedding_dim=enc_out, encoder_kernel_size=enc_kernel,
        encoder_n_convolutions=_count(sd, r"encoder\.convolutions\.(\d+)\.0\.conv\.weight"),
        attention_rnn_dim=att_hidden, attention_dim=attention_dim,
        attention_location_n_filters=n_filters, attention_location_kernel_size=loc_kernel,
        prenet_dim=prenet_dim, prenet_layers=_count(sd, r"decoder\.prenet\.layers\.(\d+)\.linear_layer\.weight"),
        decoder_rnn_dim=dec_hidden, postnet_embedding_dim=post_dim, postnet_kernel_size=post_kernel,
        postnet_n_convolutions=_count(sd, r"postnet\.convolutions\.(\d+)\.0\.conv\.weight"))
    cfg = Tacotron2Config(**sizes)
    try:
        check_config(cfg, n_symbols, n_mels)
    except ValueError as e:
        raise ConversionError(f"tensor shapes imply an impossible model ({e})") from None
    return cfg, n_symbols, n_mels


# --------------------------------------------------------------------------- state dicts


def nvidia_to_tacowave(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tacotron2Config, int, int]:
    """NVIDIA state dict -> ``(our state dict, config, n_symbols, n_mels)``.

    Raises :class:`ConversionError` if any tensor is left over, missing or of the wrong shape.
    Floating tensors become float32 (fp16 runs store half weights).
    """
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    cfg, n_symbols, n_mels = infer_config(sd)
    names = nvidia_names(cfg)
    # Checkpoints from PyTorch < 0.4.1 have no batch-norm step counters; PyTorch fills them with 0.
    for theirs in names:
        if theirs.endswith("num_batches_tracked") and theirs not in sd:
            sd[theirs] = torch.tensor(0, dtype=torch.long)
    extra = sorted(set(sd) - set(names))
    missing = sorted(set(names) - set(sd))
    if extra or missing:
        raise ConversionError("tensor names do not match NVIDIA/tacotron2's model"
                              + (f"; unexpected: {', '.join(extra[:5])}" if extra else "")
                              + (f"; missing: {', '.join(missing[:5])}" if missing else ""))
    ours = {}
    for theirs, mine in names.items():
        value = sd[theirs]
        if not isinstance(value, Tensor):
            raise ConversionError(f"{theirs!r} is not a tensor")
        ours[mine] = value.float() if value.is_floating_point() else value
    model = build_tacotron2(cfg, n_symbols, n_mels)
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e))
        raise ConversionError(f"tensor shapes do not fit one Tacotron-2 model: {first}") from None
    return ours, cfg, n_symbols, n_mels


def tacowave_to_nvidia(state: Mapping[str, Tensor], cfg: Tacotron2Config) -> dict[str, Tensor]:
    """Our state dict -> NVIDIA's names (the inverse of :func:`nvidia_to_tacowave` for r = 1)."""
    if cfg.n_frames_per_step != 1 or cfg.speaker_embedding_dim:
        raise ConversionError("only single-speaker models with n_frames_per_step=1 have an NVIDIA layout")
    return {theirs: state[mine] for theirs, mine in nvidia_names(cfg).items()}


# --------------------------------------------------------------------------- files


def load_nvidia_state_dict(path: str) -> dict[str, Tensor]:
    """Read an NVIDIA checkpoint file; every way it can be unusable is a :class:`ConversionError`."""
    if not os.path.isfile(path):
        raise ConversionError("not a file" if os.path.exists(path) else "no such file")
    try:
        with warnings.catch_warnings():  # e.g. pickle-protocol notes: the error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, not a torch file at all, ...
        text = str(e).strip()
        if text.startswith("Weights only load failed"):
            reason = ("it holds Python objects other than tensors and plain containers, or is no "
                      "pickle at all; such files are never unpickled here")
        else:  # torch's messages run to paragraphs; their first sentence names the problem
            reason = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(e).__name__
        raise ConversionError(f"not a readable PyTorch checkpoint, truncated or of another kind "
                              f"({reason})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        raise ConversionError("this is already a tacowave checkpoint")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not any(str(k).endswith("embedding.weight") for k in obj):
        raise ConversionError("not an NVIDIA/tacotron2 checkpoint (no 'state_dict' with "
                              "'embedding.weight')")
    return obj


def build_checkpoint(state: dict[str, Tensor], cfg: Tacotron2Config, n_symbols: int) -> dict[str, Any]:
    """The tacowave checkpoint dict for converted weights."""
    symbols = nvidia_symbols()
    if len(symbols) != n_symbols:
        raise ConversionError(
            f"the embedding has {n_symbols} symbols, NVIDIA's English symbol set has {len(symbols)}; "
            f"a checkpoint trained on another symbol set cannot be given symbols automatically")
    hp = HParams.from_dict({**NVIDIA_PRESET, "tacotron2": dataclasses.asdict(cfg)})
    return {"model": state, "hparams": hp.to_dict(), "symbols": symbols, "speakers": ["default"],
            "format": FORMAT, "model_type": "tacotron2", "version": VERSION}


def convert_nvidia_tacotron2(src: str, dst: str) -> dict[str, Any]:
    """Convert the NVIDIA checkpoint ``src`` into the tacowave checkpoint ``dst``; returns the latter.

    Raises :class:`ConversionError` (message without the file name) for an unusable ``src``.
    """
    state, cfg, n_symbols, _ = nvidia_to_tacowave(load_nvidia_state_dict(src))
    checkpoint = build_checkpoint(state, cfg, n_symbols)
    atomic_write(dst, lambda f: torch.save(checkpoint, f))
    return checkpoint
