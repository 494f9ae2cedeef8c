"""Tacotron 2 acoustic model: text ids -> mel spectrogram (see DESIGN.md, "The house").

``build_tacotron2(cfg, n_symbols, n_mels, n_speakers)`` makes the model; ``Tacotron2.forward`` is
the teacher-forced pass (training, GTA), ``Tacotron2.inference`` / ``inference_batch`` synthesise;
``Tacotron2Loss`` is the training loss; ``convert_nvidia`` imports NVIDIA/tacotron2 checkpoints.
"""
from .loss import Tacotron2Loss, guided_attention_weights
from .model import InferenceResult, Tacotron2, Tacotron2Output, build_tacotron2

__all__ = ["InferenceResult", "Tacotron2", "Tacotron2Loss", "Tacotron2Output", "build_tacotron2",
           "guided_attention_weights"]
