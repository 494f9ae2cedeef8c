"""Learning-rate schedules: the rate is a function of the step and, with a final anneal, of the
run's progress through its budget.

For step ``k`` (0-based: ``k`` updates done so far) let ``s = k + 1``, ``w = warmup_steps``,
``lr0 = learning_rate``, ``d = lr_decay_rate``, ``n = lr_decay_steps``, ``lo = min_learning_rate``:

    none         lr0
    step         ramp(s) · max(lr0 · d ** floor(k / n), lo)
    exponential  ramp(s) · max(lr0 · d ** (k / n), lo)
    noam         ramp(s) · max(lr0 · sqrt(w / max(s, w)), lo)   (needs w > 0)

with the linear warm-up ``ramp(s) = min(1, s / w)`` (1 when ``w = 0``). ``noam`` equals
r9y9/wavenet_vocoder's ``lr0 · w^0.5 · min(s · w^-1.5, s^-0.5)``. The floor ``lo`` (capped at
``lr0``) bounds the decay but not the warm-up.

Final anneal (``lr_anneal_fraction = f > 0``): over the last fraction ``f`` of the run's budget
the rate above (inside the floor) is multiplied by ``min(1, (1 - p) / f)``, where the progress
``p`` in [0, 1] is the larger of ``step / max_steps`` and the spent share of the ``max_minutes``
budget (the trainer measures it). A run that stops on a wall-clock budget cannot know in advance
at which step it will stop, so the decay follows the clock. A short run ends far from
convergence, and an Adam step at full rate keeps its weights hopping around the loss valley; the
last stretch at a falling rate settles them ("budgeted training", Li et al. 2020; the cool-down of
warm-up/stable/decay schedules). With ``f = 0`` (the default) the rate is a pure function of the
step, so resuming is exact; with a time budget and ``f > 0`` it depends on the clock.
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
    anneal_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}")
        if self.name == "noam" and self.warmup_steps < 1:
            raise ValueError("lr_schedule 'noam' needs warmup_steps >= 1")
        if self.name in ("step", "exponential") and self.decay_steps < 1:
            raise ValueError(f"lr_schedule {self.name!r} needs lr_decay_steps >= 1")
        if not 0.0 <= self.anneal_fraction <= 1.0:
            raise ValueError(f"lr_anneal_fraction must be in [0, 1], got {self.anneal_fraction}")

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "LRSchedule":
        return cls(cfg.lr_schedule, cfg.learning_rate, cfg.warmup_steps, cfg.lr_decay_rate,
                   cfg.lr_decay_steps, cfg.min_learning_rate, cfg.lr_anneal_fraction)

    def anneal(self, progress: float) -> float:
        """The final-anneal factor at ``progress`` (share of the budget spent, 0..1)."""
        if self.anneal_fraction <= 0.0:
            return 1.0
        return min(1.0, max(0.0, 1.0 - progress) / self.anneal_fraction)

    def __call__(self, step: int, progress: float = 0.0) -> float:
        """The learning rate for update number ``step`` (0-based) at ``progress`` through the budget."""
        lr0 = self.learning_rate
        floor = min(self.min_learning_rate, lr0)
        if self.name == "none":
            return max(lr0 * self.anneal(progress), floor)
        s = step + 1
        ramp = min(1.0, s / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.name == "step":
            decayed = lr0 * self.decay_rate ** (step // self.decay_steps)
        elif self.name == "exponential":
            decayed = lr0 * self.decay_rate ** (step / self.decay_steps)
        else:
            decayed = lr0 * math.sqrt(self.warmup_steps / max(s, self.warmup_steps))
        return ramp * max(decayed * self.anneal(progress), floor)

    def state_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
