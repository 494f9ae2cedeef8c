"""Learning-rate schedules: the rate is a pure function of the step, so resuming is exact.

For step ``k`` (0-based: ``k`` updates done so far) let ``s = k + 1``, ``w = warmup_steps``,
``lr0 = learning_rate``, ``d = lr_decay_rate``, ``n = lr_decay_steps``, ``lo = min_learning_rate``:

    none         lr0
    step         ramp(s) · max(lr0 · d ** floor(k / n), lo)
    exponential  ramp(s) · max(lr0 · d ** (k / n), lo)
    noam         ramp(s) · max(lr0 · sqrt(w / max(s, w)), lo)   (needs w > 0)

with the linear warm-up ``ramp(s) = min(1, s / w)`` (1 when ``w = 0``). ``noam`` equals
r9y9/wavenet_vocoder's ``lr0 · w^0.5 · min(s · w^-1.5, s^-0.5)``. The floor ``lo`` (capped at
``lr0``) bounds the decay but not the warm-up.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tacowave.hparams import TrainConfig

SCHEDULES = ("none", "noam", "step", "exponential")


@dataclass(frozen=True)
class LRSchedule:
    name: str
    learning_rate: float
    warmup_steps: int = 0
    decay_rate: float = 1.0
    decay_steps: int = 1
    min_learning_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}")
        if self.name == "noam" and self.warmup_steps < 1:
            raise ValueError("lr_schedule 'noam' needs warmup_steps >= 1")
        if self.name in ("step", "exponential") and self.decay_steps < 1:
            raise ValueError(f"lr_schedule {self.name!r} needs lr_decay_steps >= 1")

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "LRSchedule":
        return cls(cfg.lr_schedule, cfg.learning_rate, cfg.warmup_steps, cfg.lr_decay_rate,
                   cfg.lr_decay_steps, cfg.min_learning_rate)

    def __call__(self, step: int) -> float:
        """The learning rate for update number ``step`` (0-based)."""
        lr0 = self.learning_rate
        if self.name == "none":
            return lr0
        s = step + 1
        ramp = min(1.0, s / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.name == "step":
            decayed = lr0 * self.decay_rate ** (step // self.decay_steps)
        elif self.name == "exponential":
            decayed = lr0 * self.decay_rate ** (step / self.decay_steps)
        else:
            decayed = lr0 * math.sqrt(self.warmup_steps / max(s, self.warmup_steps))
        return ramp * max(decayed, min(self.min_learning_rate, lr0))

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
