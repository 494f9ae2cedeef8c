"""Tacotron-2 training loss: mel reconstruction before and after the post-net, stop token, and an
optional guided-attention term (Tachibana et al. 2017).

Every term is an average over *valid* positions only (frames < mel length, symbols < text
length), so padding a batch further never changes the loss.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tacowave.hparams import TrainTacotron2Config

from .layers import lengths_to_mask
from .model import Tacotron2Output


def guided_attention_weights(text_lengths: Tensor, step_lengths: Tensor, max_text: int,
                             max_steps: int, sigma: float) -> tuple[Tensor, Tensor]:
    """Penalty matrix ``W`` and validity mask, both ``(B, S, N)``.

    ``W[b, s, n] = 1 - exp(-(n / N_b - s / S_b)^2 / (2 sigma^2))`` with 0-based ``n`` < ``N_b``
    (text length) and ``s`` < ``S_b`` (decoder steps); ``mask`` is True on those valid cells.
    """
    n = torch.arange(max_text, device=text_lengths.device, dtype=torch.float32)
    s = torch.arange(max_steps, device=text_lengths.device, dtype=torch.float32)
    rel_n = n[None, None, :] / text_lengths[:, None, None].float()
    rel_s = s[None, :, None] / step_lengths[:, None, None].float()
    weights = 1.0 - torch.exp(-(rel_n - rel_s) ** 2 / (2.0 * sigma ** 2))
    mask = lengths_to_mask(step_lengths, max_steps)[:, :, None] & lengths_to_mask(text_lengths, max_text)[:, None, :]
    return weights, mask


class Tacotron2Loss(nn.Module):
    """``loss(outputs, mel_targets, mel_lengths, text_lengths, step) -> (total, parts)``.

    * ``mel`` / ``mel_postnet``: MSE (or L1, ``cfg.mel_loss``) over valid frames and all channels;
    * ``gate``: BCE-with-logits over valid frames, target 1 from the last valid frame on
      (NVIDIA's convention), positive class weighted by ``cfg.stop_token_pos_weight``;
    * ``guided_attention``: mean of ``A * W`` over valid (decoder step, symbol) cells, weighted by
      ``cfg.guided_attention_weight * cfg.guided_attention_decay ** (step // decay_steps)``;
      only computed while that weight is > 0.

    ``total`` is the sum of the (weighted) terms; ``parts`` holds each term unweighted, detached,
    plus ``guided_attention_weight`` (the current weight, as a tensor) when the term is active.
    """

    def __init__(self, cfg: TrainTacotron2Config, n_frames_per_step: int = 1) -> None:
        super().__init__()
        if cfg.mel_loss not in ("mse", "l1"):
            raise ValueError(f"train_tacotron2.mel_loss must be 'mse' or 'l1', got {cfg.mel_loss!r}")
        self.cfg = cfg
        self.r = n_frames_per_step

    def guided_attention_weight(self, step: int) -> float:
        cfg = self.cfg
        return cfg.guided_attention_weight * cfg.guided_attention_decay ** (
            step // max(1, cfg.guided_attention_decay_steps))

    def forward(self, outputs: Tacotron2Output | tuple[Tensor, Tensor, Tensor, Tensor],
                mel_targets: Tensor, mel_lengths: Tensor, text_lengths: Tensor, step: int = 0
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """``outputs`` from ``Tacotron2.forward``; ``mel_targets`` (B, T, n_mels); lengths (B,)."""
        mel, mel_post, gate, alignments = outputs
        t = mel_targets.shape[1]
        if mel.shape[1] != t:
            raise ValueError(f"outputs have {mel.shape[1]} frames, targets {t}")
        valid = lengths_to_mask(mel_lengths, t)                     # (B, T)
        n_valid = valid.sum().clamp_min(1)
        # Losses in fp32 whatever the outputs' precision: a sum over a batch of frames.
        frame_weights = valid.unsqueeze(2).float() / (n_valid * mel.shape[2])
        distance = F.mse_loss if self.cfg.mel_loss == "mse" else F.l1_loss
        targets = mel_targets.float()
        mel_loss = (distance(mel.float(), targets, reduction="none") * frame_weights).sum()
        post_loss = (distance(mel_post.float(), targets, reduction="none") * frame_weights).sum()

        frame_idx = torch.arange(t, device=mel_lengths.device)[None, :]
        gate_targets = (frame_idx >= (mel_lengths[:, None] - 1)).float()
        pos_weight = torch.tensor([self.cfg.stop_token_pos_weight], device=gate.device)
        gate_loss = F.binary_cross_entropy_with_logits(gate.float(), gate_targets, pos_weight=pos_weight,
                                                       reduction="none")
        gate_loss = gate_loss.masked_select(valid).mean()

        total = mel_loss + post_loss + gate_loss
        parts = {"mel": mel_loss.detach(), "mel_postnet": post_loss.detach(), "gate": gate_loss.detach()}
        weight = self.guided_attention_weight(step)
        if weight > 0:
            steps = torch.div(mel_lengths + self.r - 1, self.r, rounding_mode="floor")
            w, mask = guided_attention_weights(text_lengths, steps, alignments.shape[2],
                                               alignments.shape[1], self.cfg.guided_attention_sigma)
            ga_loss = (alignments.float() * w).masked_select(mask).mean()
            total = total + weight * ga_loss
            parts["guided_attention"] = ga_loss.detach()
            parts["guided_attention_weight"] = torch.tensor(weight, device=total.device)
        return total, parts

