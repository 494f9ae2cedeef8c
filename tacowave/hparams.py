"""Hyper-parameters: typed defaults in code, JSON presets on top, ``--hparams`` overrides last.

A preset is one JSON object whose keys are section names (``audio``, ``text``,
``tacotron2``, ``wavenet``, ``train_tacotron2``, ``train_wavenet``) and whose
values are flat objects of ``key: value``. Every key must exist in the section's
dataclass below and every value must have the declared type; anything else is an
:class:`HParamsError` that names the bad key and lists the valid ones.

Resolution order, later wins::

    defaults (this file)  <  preset JSON  <  "section.key=value,..." overrides

``HParams.to_dict()`` / ``HParams.from_dict()`` round-trip exactly, so the
resolved hparams written next to a checkpoint load back identical.
"""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union


class HParamsError(ValueError):
    """A preset or override names an unknown key or gives a value of the wrong type."""


# --------------------------------------------------------------------------- sections


@dataclass
class AudioConfig:
    """The feature definition shared by both models (see ``tacowave.audio``)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_size: int = 256
    win_size: int = 1024
    window: str = "hann"
    num_mels: int = 80
    fmin: float = 0.0
    # None means sample_rate / 2.
    fmax: Optional[float] = 8000.0
    # Exponent applied to the STFT magnitude before the mel filterbank: 1 = amplitude, 2 = power.
    magnitude_power: float = 1.0
    # "db_scaled": r9y9/wavenet_vocoder style, 20*log10(mel) - ref_level_db, mapped from
    #              [min_level_db, 0] dB onto [0, 1] and clipped.
    # "natural_log": NVIDIA/tacotron2 style, log(max(mel, log_clamp)), no scaling.
    mel_normalization: str = "db_scaled"
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    log_clamp: float = 1e-5
    # Pre-emphasis coefficient applied before analysis (0 disables); Griffin-Lim undoes it.
    preemphasis: float = 0.0
    # Leading/trailing silence trimming at load time for training data.
    trim_silence: bool = True
    trim_top_db: float = 40.0
    trim_frame_length: int = 1024
    trim_hop_length: int = 256
    # Peak normalisation at load time (0 disables); target peak amplitude.
    rescaling_max: float = 0.999
    # Clips outside [min_duration_s, max_duration_s] are skipped by preprocessing.
    min_duration_s: float = 0.2
    max_duration_s: float = 20.0
    griffin_lim_iters: int = 60
    # Magnitudes are raised to this power before Griffin-Lim (sharpens harmonics, Tacotron habit).
    griffin_lim_power: float = 1.5


@dataclass
class TextConfig:
    """Which text front-end turns a transcript into the symbol ids the acoustic model reads."""

    # english_chars | english_arpabet | english_nvidia | japanese | japanese_prosody | mandarin_pinyin
    # (see tacowave.text for each one's tokens and symbol table).
    frontend: str = "english_chars"
    # english_arpabet: probability of using the CMUdict pronunciation of a word during training
    # (1.0 = always, when the word is in the dictionary; letters are the fallback). Preprocessing
    # and synthesis always use 1.0 (tacowave.text.frontend_from_config(..., training=False)).
    arpabet_probability: float = 1.0


@dataclass
class Tacotron2Config:
    """Acoustic model sizes (defaults are the NVIDIA/tacotron2 ones)."""

    symbols_embedding_dim: int = 512
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 512
    encoder_kernel_size: int = 5
    encoder_dropout: float = 0.5
    attention_rnn_dim: int = 1024
    attention_dim: int = 128
    attention_location_n_filters: int = 32
    attention_location_kernel_size: int = 31
    prenet_dim: int = 256
    prenet_layers: int = 2
    prenet_dropout: float = 0.5
    # Training only: each teacher-forced decoder input frame is replaced by the batch's mean frame
    # with this probability (frame dropout, Liu et al. 2019, "Maximizing Mutual Information for
    # Tacotron"). It takes away the previous-frame shortcut so the decoder has to read the text.
    decoder_frame_dropout: float = 0.0
    decoder_rnn_dim: int = 1024
    p_attention_dropout: float = 0.1
    p_decoder_dropout: float = 0.1
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5
    postnet_dropout: float = 0.5
    # Mel frames predicted per decoder step (reduction factor r).
    n_frames_per_step: int = 1
    # 0 = single speaker; otherwise the size of the speaker embedding concatenated to the encoder output.
    speaker_embedding_dim: int = 0
    gate_threshold: float = 0.5
    max_decoder_steps: int = 1000
    # Monotonic attention constraint at inference: attend only within this many encoder steps
    # around the previous peak (0 disables).
    inference_attention_window: int = 0
    mask_padding: bool = True
    # Training on a GPU: replay the teacher-forced decoder loop as CUDA graphs recorded per padded
    # shape (tacotron2/graphed_decoder.py). Launch-bound small models train several times faster;
    # each recorded shape keeps its activations in GPU memory. No effect on a CPU.
    cuda_graph_decoder: bool = False


@dataclass
class WaveNetConfig:
    """Vocoder sizes and output distribution (defaults: r9y9's ``mol_wavenet`` configuration)."""

    # mol | gaussian | mulaw
    output_distribution: str = "mol"
    # Number of logistic components of the mixture (out_channels = 3 * num_mixtures).
    num_mixtures: int = 10
    # Discretisation of the target waveform for the MoL likelihood (16 bit).
    quantize_channels: int = 65536
    # Classes of the mu-law softmax output.
    mulaw_channels: int = 256
    log_scale_min: float = -16.0
    layers: int = 24
    stacks: int = 4
    residual_channels: int = 128
    gate_channels: int = 256
    skip_out_channels: int = 128
    kernel_size: int = 3
    dropout: float = 0.05
    weight_normalization: bool = True
    # Local conditioning: mel frames in, one vector per sample out. The product of
    # upsample_scales must equal audio.hop_size.
    cin_channels: int = 80
    cin_pad: int = 2
    upsample_scales: list = field(default_factory=lambda: [4, 4, 4, 4])
    # transposed | nearest
    upsample_mode: str = "nearest"
    # Global conditioning (speaker embedding); 0 disables.
    gin_channels: int = 0


@dataclass
class TrainConfig:
    """What both models' training runs share (see ``tacowave.training``)."""

    batch_size: int = 16
    learning_rate: float = 1e-3
    # none | noam | step | exponential
    lr_schedule: str = "exponential"
    warmup_steps: int = 0
    # step: multiply by lr_decay_rate every lr_decay_steps; exponential: smooth version of the same.
    lr_decay_rate: float = 0.5
    lr_decay_steps: int = 50000
    min_learning_rate: float = 1e-5
    # Over this last fraction of the run's budget (max_steps or max_minutes, whichever ends it
    # first) the rate falls linearly to min_learning_rate; 0 disables (tacowave.training.schedule).
    lr_anneal_fraction: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6
    weight_decay: float = 1e-6
    grad_clip_norm: float = 1.0
    max_steps: int = 200000
    # Wall-clock budget for one run, in minutes (0 = unlimited): the run checkpoints and stops.
    max_minutes: float = 0.0
    checkpoint_interval: int = 1000
    eval_interval: int = 1000
    log_interval: int = 10
    keep_last_checkpoints: int = 5
    # 0 disables the exponential moving average of the weights.
    ema_decay: float = 0.0
    # Mixed precision on GPU: none | bf16 | fp16 (CPU always runs fp32).
    amp: str = "none"
    # -1 = choose from cores and free memory.
    num_workers: int = -1
    seed: int = 1234
    # Consecutive non-finite losses tolerated before the run stops.
    max_nonfinite_steps: int = 10


@dataclass
class TrainTacotron2Config(TrainConfig):
    # Utterances longer than this many mel frames are excluded (counted, reported).
    max_frames: int = 1000
    # mse | l1
    mel_loss: str = "mse"
    stop_token_pos_weight: float = 5.0
    # Guided attention (Tachibana et al. 2017); weight 0 disables.
    guided_attention_weight: float = 0.0
    guided_attention_sigma: float = 0.2
    # The weight is multiplied by this every guided_attention_decay_steps (1.0 = no decay).
    guided_attention_decay: float = 1.0
    guided_attention_decay_steps: int = 1000


@dataclass
class TrainWaveNetConfig(TrainConfig):
    batch_size: int = 4
    lr_schedule: str = "noam"
    warmup_steps: int = 4000
    ema_decay: float = 0.9999
    # Random hop-aligned crop length in samples (the memory knob together with batch_size).
    max_time_steps: int = 8000
    # Train on ground-truth-aligned Tacotron-2 mels (data_root/gta) instead of the real ones.
    use_gta_mels: bool = False


SECTIONS: dict[str, type] = {
    "audio": AudioConfig,
    "text": TextConfig,
    "tacotron2": Tacotron2Config,
    "wavenet": WaveNetConfig,
    "train_tacotron2": TrainTacotron2Config,
    "train_wavenet": TrainWaveNetConfig,
}

# --------------------------------------------------------------------------- type checking


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` if it is of type ``tp`` (ints are accepted for floats), else raise."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except HParamsError:
                continue
        raise HParamsError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        # "none" on the command line means null only where a key accepts null; elsewhere
        # (lr_schedule=none, amp=none) it is the string.
        if value is None or value in ("none", "None"):
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
    else:  # pragma: no cover - a section declared a type this module does not know
        raise TypeError(f"{where}: unsupported declared type {tp!r}")
    raise HParamsError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _section_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _build_section(name: str, values: dict[str, Any], base: Any = None) -> Any:
    cls = SECTIONS[name]
    types_ = _section_types(cls)
    current = dataclasses.asdict(base) if base is not None else dataclasses.asdict(cls())
    if not isinstance(values, dict):
        raise HParamsError(f"section {name!r} must be a JSON object of key: value, got {values!r}")
    for key, value in values.items():
        if key not in types_:
            raise HParamsError(
                f"unknown key {name}.{key}; valid keys of {name!r}: {', '.join(sorted(types_))}")
        current[key] = _coerce(value, types_[key], f"{name}.{key}")
    return cls(**current)


# --------------------------------------------------------------------------- the object


class HParams:
    """All sections of one resolved configuration: ``hp.audio.hop_size``, ``hp.wavenet.layers``, ..."""

    audio: AudioConfig
    text: TextConfig
    tacotron2: Tacotron2Config
    wavenet: WaveNetConfig
    train_tacotron2: TrainTacotron2Config
    train_wavenet: TrainWaveNetConfig

    def __init__(self, **sections: Any) -> None:
        for name, cls in SECTIONS.items():
            value = sections.pop(name, None)
            setattr(self, name, value if value is not None else cls())
        if sections:
            raise HParamsError(
                f"unknown section(s) {', '.join(sorted(sections))}; valid sections: {', '.join(SECTIONS)}")

    # -- (de)serialisation
    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "HParams | None" = None) -> "HParams":
        """Apply ``data`` (a preset-shaped dict) on top of ``base`` (defaults when None)."""
        if not isinstance(data, dict):
            raise HParamsError(f"a preset must be a JSON object of sections, got {type(data).__name__}")
        unknown = [k for k in data if k not in SECTIONS and not k.startswith("_")]
        if unknown:
            raise HParamsError(
                f"unknown section(s) {', '.join(sorted(unknown))}; valid sections: {', '.join(SECTIONS)}")
        base = base or cls()
        sections = {}
        for name in SECTIONS:
            if name in data:
                sections[name] = _build_section(name, data[name], getattr(base, name))
            else:
                sections[name] = dataclasses.replace(getattr(base, name))
        return cls(**sections)

    def override(self, spec: str) -> "HParams":
        """Return a copy with ``"section.key=value,section.key=value"`` applied."""
        return HParams.from_dict(parse_overrides(spec), base=self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HParams) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"HParams({self.to_dict()!r})"


def _parse_scalar(text: str) -> Any:
    """Parse an override value: JSON first (numbers, true/false, null, [lists]), else a bare string."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside [...] so list values survive."""
    parts, depth, current = [], 0, []
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (s.strip() for s in parts) if p]


def parse_overrides(spec: str) -> dict[str, dict[str, Any]]:
    """``"wavenet.layers=12,train_wavenet.batch_size=4"`` -> ``{"wavenet": {"layers": 12}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in _split_top_level(spec or ""):
        if "=" not in item:
            raise HParamsError(f"override {item!r} is not of the form section.key=value")
        lhs, rhs = item.split("=", 1)
        if "." not in lhs:
            raise HParamsError(
                f"override {item!r} must name a section: section.key=value "
                f"with section one of {', '.join(SECTIONS)}")
        section, key = lhs.strip().split(".", 1)
        if section not in SECTIONS:
            raise HParamsError(f"override {item!r}: unknown section {section!r}; "
                               f"valid sections: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[key.strip()] = _parse_scalar(rhs)
    return out


PRESETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "presets")


def resolve_preset_path(preset: str) -> str:
    """A path to a JSON file, or the bare name of a shipped preset (``ljspeech`` -> presets/ljspeech.json)."""
    if os.path.isfile(preset):
        return preset
    candidate = os.path.join(PRESETS_DIR, preset if preset.endswith(".json") else preset + ".json")
    if os.path.isfile(candidate):
        return candidate
    shipped = sorted(f[:-5] for f in os.listdir(PRESETS_DIR) if f.endswith(".json")) \
        if os.path.isdir(PRESETS_DIR) else []
    raise HParamsError(f"preset {preset!r} not found (not a file; shipped presets: {', '.join(shipped)})")


def load_preset(path: str) -> dict[str, Any]:
    path = resolve_preset_path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise HParamsError(f"preset {path} is not valid JSON: {e}") from None


def load_hparams(preset: str | None = None, overrides: str = "") -> HParams:
    """Defaults, then the preset (a path or shipped name), then the override string."""
    hp = HParams()
    if preset:
        try:
            hp = HParams.from_dict(load_preset(preset))
        except HParamsError as e:
            raise HParamsError(f"{resolve_preset_path(preset)}: {e}") from None
    if overrides:
        hp = hp.override(overrides)
    validate(hp)
    return hp


def validate(hp: HParams) -> None:
    """Cross-field checks that a single type cannot express."""
    a = hp.audio
    if a.mel_normalization not in ("db_scaled", "natural_log"):
        raise HParamsError(f"audio.mel_normalization must be 'db_scaled' or 'natural_log', "
                           f"got {a.mel_normalization!r}")
    if a.win_size > a.n_fft:
        raise HParamsError(f"audio.win_size ({a.win_size}) must not exceed audio.n_fft ({a.n_fft})")
    if a.hop_size <= 0 or a.hop_size > a.win_size:
        raise HParamsError(f"audio.hop_size ({a.hop_size}) must be in 1..audio.win_size ({a.win_size})")
    nyquist = a.sample_rate / 2
    fmax = nyquist if a.fmax is None else a.fmax
    if not 0 <= a.fmin < fmax <= nyquist:
        raise HParamsError(f"need 0 <= audio.fmin ({a.fmin}) < audio.fmax ({a.fmax}) <= "
                           f"sample_rate/2 ({nyquist})")
    if not 0.0 <= a.preemphasis < 1.0:
        raise HParamsError(f"audio.preemphasis must be in [0, 1), got {a.preemphasis}")
    w = hp.wavenet
    if w.output_distribution not in ("mol", "gaussian", "mulaw"):
        raise HParamsError(f"wavenet.output_distribution must be mol, gaussian or mulaw, "
                           f"got {w.output_distribution!r}")
    if w.layers % w.stacks != 0:
        raise HParamsError(f"wavenet.layers ({w.layers}) must be a multiple of wavenet.stacks ({w.stacks})")
    if w.upsample_scales:
        prod = 1
        for s in w.upsample_scales:
            prod *= int(s)
        if prod != a.hop_size:
            raise HParamsError(f"the product of wavenet.upsample_scales {w.upsample_scales} is {prod}, "
                               f"but audio.hop_size is {a.hop_size}; they must be equal")
    if w.cin_channels > 0 and w.cin_channels != a.num_mels:
        raise HParamsError(f"wavenet.cin_channels ({w.cin_channels}) must equal audio.num_mels "
                           f"({a.num_mels}) (or be 0 for an unconditioned WaveNet)")
    if not 1 <= hp.tacotron2.n_frames_per_step <= 3:
        raise HParamsError(f"tacotron2.n_frames_per_step must be 1, 2 or 3, "
                           f"got {hp.tacotron2.n_frames_per_step}")
    for name in ("train_tacotron2", "train_wavenet"):
        t = getattr(hp, name)
        if t.lr_schedule not in ("none", "noam", "step", "exponential"):
            raise HParamsError(f"{name}.lr_schedule must be none, noam, step or exponential, "
                               f"got {t.lr_schedule!r}")
        if t.amp not in ("none", "bf16", "fp16"):
            raise HParamsError(f"{name}.amp must be none, bf16 or fp16, got {t.amp!r}")
        if t.batch_size < 1:
            raise HParamsError(f"{name}.batch_size must be >= 1, got {t.batch_size}")


def audio_sections_differ(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Names of the feature-defining audio keys on which two audio sections disagree.

    Used to refuse a model / data dir / vocoder pair whose mels are not the same feature.
    Keys that only affect data selection or preview quality are not compared.
    """
    ignored = {"trim_silence", "trim_top_db", "trim_frame_length", "trim_hop_length",
               "rescaling_max", "min_duration_s", "max_duration_s", "griffin_lim_iters",
               "griffin_lim_power"}
    keys = sorted((set(a) | set(b)) - ignored)
    return [k for k in keys if a.get(k) != b.get(k)]


def describe_audio_differences(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> str:
    """"audio.<key> = <a's> in <a_name> but <b's> in <b_name>, ..." for every feature-defining
    key on which the sections disagree; "" when they define the same mels."""
    return ", ".join(f"audio.{k} = {a.get(k)!r} in {a_name} but {b.get(k)!r} in {b_name}"
                     for k in audio_sections_differ(a, b))
