"""The Python synthesis API that ``synthesis.py`` is built on.

    from tacowave import Synthesizer
    tts = Synthesizer(tacotron2="exp/demo/tacotron2/checkpoint_latest.pth",
                      wavenet="exp/demo/wavenet/checkpoint_latest.pth")   # or wavenet=None: Griffin-Lim
    wav, sr = tts("The quick brown fox.")
    wavs, sr = tts(["One sentence.", "Another one."])

Models are loaded from tacowave checkpoints (the trainer's, or ``tacowave-convert``'s), with
their own preset, text front-end and speaker list; the EMA weights are used when the run kept
them. A Tacotron-2 / WaveNet pair whose audio sections differ is refused: the vocoder would be
fed a feature it never saw.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from tacowave import audio
from tacowave.hparams import HParams, describe_audio_differences
from tacowave.training.checkpoint import load_checkpoint
from tacowave.training.device import select_device


class SynthesisError(ValueError):
    """A request the loaded models cannot serve (bad text, unknown speaker, mismatched pair)."""


@dataclass
class LoadedModel:
    """A model restored from a checkpoint, in eval mode on its device."""

    model: torch.nn.Module
    hp: HParams
    speakers: list[str]
    path: str
    extra: dict[str, Any] = field(default_factory=dict)

    def speaker_id(self, speaker: str | int | None) -> int | None:
        """Index of a speaker given by name or index; None for a single-speaker model."""
        if speaker is None:
            return 0 if len(self.speakers) > 1 else None
        if isinstance(speaker, int) or (isinstance(speaker, str) and speaker.isdigit()):
            index = int(speaker)
            if not 0 <= index < len(self.speakers):
                raise SynthesisError(f"speaker index {index} is out of range for {self.path} "
                                     f"({len(self.speakers)} speakers)")
            return index
        if speaker not in self.speakers:
            raise SynthesisError(f"unknown speaker {speaker!r} for {self.path}; "
                                 f"its speakers: {', '.join(self.speakers)}")
        return self.speakers.index(speaker)


def load_model(path: str, model_type: str, device: torch.device, use_ema: bool = True) -> LoadedModel:
    """Restore a ``tacotron2`` or ``wavenet`` checkpoint for inference."""
    state = load_checkpoint(path)
    if state["model_type"] != model_type:
        raise SynthesisError(f"{path} is a {state['model_type']!r} checkpoint, expected {model_type!r}")
    hp = HParams.from_dict(state["hparams"])
    speakers = list(state.get("speakers") or ["default"])
    weights = state["ema"] if use_ema and state.get("ema") else state["model"]
    if model_type == "tacotron2":
        from tacotron2.model import build_tacotron2

        symbols = state.get("symbols")
        if not symbols:
            raise SynthesisError(f"{path} has no symbol table; it cannot read text")
        model = build_tacotron2(hp.tacotron2, len(symbols), hp.audio.num_mels, len(speakers))
    else:
        from wavenet_vocoder.model import build_wavenet

        model = build_wavenet(hp.wavenet, len(speakers))
    model.load_state_dict(weights)
    if model_type == "wavenet" and hp.wavenet.weight_normalization:
        model.remove_weight_norm()
    model.to(device).eval()
    extra = {k: v for k, v in state.items() if k in ("symbols", "step")}
    return LoadedModel(model, hp, speakers, path, extra)


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])")


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split long text at sentence ends (Latin and CJK punctuation); short text stays whole.

    Tacotron-2 attention degrades on inputs much longer than its training utterances, so
    synthesis decodes sentence by sentence and concatenates.
    """
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


@dataclass
class TextResult:
    """One input text through Tacotron-2: the mel fed to the vocoder and per-sentence details."""

    text: str
    mel: np.ndarray                 # (frames, num_mels): edge silence, the sentences with pauses
                                    # between them, edge silence
    alignments: list[np.ndarray]    # (decoder steps, input symbols), one per sentence
    stop_reasons: list[str]         # "gate" or "max_decoder_steps", one per sentence


class Synthesizer:
    """Text -> waveform with a Tacotron-2 and a WaveNet (or Griffin-Lim when no WaveNet)."""

    def __init__(self, tacotron2: str | None = None, wavenet: str | None = None,
                 device: str = "auto", use_ema: bool = True, seed: int | None = 1234,
                 griffin_lim_iters: int | None = None, griffin_lim_power: float | None = None,
                 edge_silence_s: float = 0.15, sentence_pause_s: float = 0.3) -> None:
        """``edge_silence_s`` / ``sentence_pause_s``: seconds of silence put before and after
        each text's speech and between its sentences. Training audio is trimmed, so the model
        starts speaking at its first frame and stops at its last; a reader pauses, a player
        may clip the first milliseconds, and a speech recogniser given no lead-in drops the
        first word (tacowave.asr). 0 gives the model's output alone."""
        if tacotron2 is None and wavenet is None:
            raise SynthesisError("give a Tacotron-2 checkpoint, a WaveNet checkpoint, or both")
        for name, value in (("edge_silence_s", edge_silence_s), ("sentence_pause_s", sentence_pause_s)):
            if not (np.isfinite(value) and value >= 0):
                raise SynthesisError(f"{name} must be a finite number of seconds >= 0, got {value}")
        self.edge_silence_s = float(edge_silence_s)
        self.sentence_pause_s = float(sentence_pause_s)
        self.device = select_device(device)
        self.seed = seed
        # None: the checkpoint's own audio section decides (a run keeps the preset it trained with).
        self.griffin_lim_iters = griffin_lim_iters
        self.griffin_lim_power = griffin_lim_power
        self.tacotron2 = load_model(tacotron2, "tacotron2", self.device, use_ema) if tacotron2 else None
        self.wavenet = load_model(wavenet, "wavenet", self.device, use_ema) if wavenet else None
        if self.tacotron2 and self.wavenet:
            detail = describe_audio_differences(self.tacotron2.hp.to_dict()["audio"],
                                                self.wavenet.hp.to_dict()["audio"],
                                                "the Tacotron-2", "the WaveNet")
            if detail:
                raise SynthesisError(f"{tacotron2} and {wavenet} were trained on different mels "
                                     f"({detail}); train the WaveNet on this Tacotron-2's data")
        self.frontend = None
        if self.tacotron2:
            from tacowave.text import frontend_from_config

            self.frontend = frontend_from_config(self.tacotron2.hp.text)
            try:
                self.frontend.check_symbols(self.tacotron2.extra["symbols"])
            except ValueError as e:
                raise SynthesisError(f"{tacotron2}: its symbol table does not match front-end "
                                     f"{self.frontend.name!r}: {e}") from None

    @property
    def audio_config(self):
        return (self.tacotron2 or self.wavenet).hp.audio

    @property
    def griffin_lim_config(self):
        """The audio section Griffin-Lim runs with: the checkpoint's, with this instance's
        iteration count and power where given."""
        given = {"griffin_lim_iters": self.griffin_lim_iters,
                 "griffin_lim_power": self.griffin_lim_power}
        return replace(self.audio_config, **{k: v for k, v in given.items() if v is not None})

    @property
    def sample_rate(self) -> int:
        return self.audio_config.sample_rate

    # ------------------------------------------------------------------ text -> mel

    def encode(self, text: str) -> list[int]:
        """Text -> symbol ids through the checkpoint's own front-end; one clear error if nothing
        in the text can be spoken."""
        if self.frontend is None:
            raise SynthesisError("text synthesis needs a Tacotron-2 checkpoint")
        if not text.strip():
            raise SynthesisError("the text is empty")
        tokens, unknown = self.frontend.text_to_tokens(text)
        if not tokens:
            chars = "".join(sorted({c for _, c in unknown}))
            raise SynthesisError(f"nothing in {text!r} can be read by the {self.frontend.name} "
                                 f"front-end (unknown characters: {chars!r})")
        return self.frontend.tokens_to_ids(tokens)

    @torch.no_grad()
    def text_to_mel(self, texts: Sequence[str], speaker: str | int | None = None,
                    max_decoder_steps: int | None = None) -> list[TextResult]:
        """Free-running Tacotron-2 over each text (split into sentences, decoded as a batch)."""
        assert self.tacotron2 is not None
        sentences = [split_sentences(t) for t in texts]
        flat = [s for group in sentences for s in group]
        if not flat:
            raise SynthesisError("the text is empty")
        ids = [self.encode(s) for s in flat]
        spk = self.tacotron2.speaker_id(speaker)
        if self.seed is not None:
            torch.manual_seed(self.seed)  # the pre-net's dropout stays on at inference
        lengths = torch.tensor([len(x) for x in ids])
        padded = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
        for i, x in enumerate(ids):
            padded[i, :len(x)] = torch.tensor(x)
        speakers = None if spk is None else torch.full((len(ids),), spk, dtype=torch.long)
        model = self.tacotron2.model
        outs = model.inference_batch(padded.to(self.device), lengths.to(self.device),
                                     None if speakers is None else speakers.to(self.device),
                                     max_decoder_steps=max_decoder_steps)
        cfg = self.audio_config
        seconds_per_frame = cfg.hop_size / cfg.sample_rate
        edge = audio.silence_mel(round(self.edge_silence_s / seconds_per_frame), cfg)
        pause = audio.silence_mel(round(self.sentence_pause_s / seconds_per_frame), cfg)
        results, k = [], 0
        for text, group in zip(texts, sentences):
            parts = outs[k:k + len(group)]
            k += len(group)
            pieces = [edge]
            for i, p in enumerate(parts):
                pieces += ([pause] if i else []) + [p.mel.float().cpu().numpy()]
            results.append(TextResult(
                text=text,
                mel=np.concatenate(pieces + [edge], axis=0),
                alignments=[p.alignment.float().cpu().numpy() for p in parts],
                stop_reasons=[p.stop_reason for p in parts]))
        return results

    # ------------------------------------------------------------------ mel -> wav

    def check_mel(self, mel: np.ndarray, name: str = "mel") -> np.ndarray:
        """A mel in the data-dir layout (frames, num_mels) that this pipeline can vocode."""
        mel = np.asarray(mel, dtype=np.float32)
        n_mels = self.audio_config.num_mels
        if mel.ndim != 2 or mel.shape[1] != n_mels:
            raise SynthesisError(f"{name} has shape {mel.shape}; expected (frames, {n_mels}) "
                                 f"mel frames of this model's audio section")
        if not np.isfinite(mel).all():
            raise SynthesisError(f"{name} contains non-finite values")
        return mel

    @torch.no_grad()
    def vocode(self, mels: Sequence[np.ndarray], speaker: str | int | None = None,
               griffin_lim: bool = False, progress: Callable[..., Any] | None = None) -> list[np.ndarray]:
        """Mels ``(frames, num_mels)`` -> waveforms ``(frames * hop,)``, batched through WaveNet
        (or Griffin-Lim when asked or when no WaveNet is loaded)."""
        if griffin_lim or self.wavenet is None:
            cfg = self.griffin_lim_config
            return [audio.inv_melspectrogram(m, cfg) for m in mels]
        from wavenet_vocoder.generation import generate

        spk = self.wavenet.speaker_id(speaker)
        c = [torch.from_numpy(np.ascontiguousarray(m.T)) for m in mels]
        wavs = generate(self.wavenet.model, c, g=spk, seed=self.seed, tqdm=progress)
        return [w.numpy() for w in wavs]

    def __call__(self, text: str | Sequence[str], speaker: str | int | None = None,
                 griffin_lim: bool = False) -> tuple[np.ndarray | list[np.ndarray], int]:
        """``tts("text")`` -> ``(wav, sample_rate)``; a list of texts gives a list of wavs."""
        single = isinstance(text, str)
        results = self.text_to_mel([text] if single else list(text), speaker)
        wavs = self.vocode([r.mel for r in results], speaker, griffin_lim=griffin_lim)
        return (wavs[0] if single else wavs), self.sample_rate
