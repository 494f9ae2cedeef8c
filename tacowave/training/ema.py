"""Exponential moving average of the weights (what synthesis uses when a run kept one)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class ExponentialMovingAverage:
    """``shadow ← decay · shadow + (1 − decay) · param`` after every optimizer update.

    Only trainable parameters are averaged; buffers (e.g. batch-norm statistics) are taken from
    the live model. The shadow is saved in and restored from checkpoints, never rebuilt from the
    current weights on resume (a resumed run continues the same average).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    def _pairs(self, model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(model.named_parameters())
        for name, avg in self.shadow.items():
            yield avg, params[name]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, p in self._pairs(model):
            avg.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A complete state dict of ``model`` with the averaged parameters: loadable with
        ``model.load_state_dict`` as it is (this is the checkpoint's ``"ema"`` entry)."""
        out = {k: v.detach().clone() for k, v in model.state_dict().items()}
        out.update({k: v.detach().clone() for k, v in self.shadow.items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.shadow if k not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameter(s), e.g. {missing[0]!r}")
        for name, avg in self.shadow.items():
            if state[name].shape != avg.shape:
                raise ValueError(f"EMA parameter {name!r} has shape {tuple(state[name].shape)}, "
                                 f"the model's is {tuple(avg.shape)}")
            avg.copy_(state[name])

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily put the averaged weights into ``model`` (for evaluation)."""
        pairs = list(self._pairs(model))
        _swap(pairs)
        try:
            yield model
        finally:
            _swap(pairs)


@torch.no_grad()
def _swap(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    # Copies rather than swapping .data: the optimizer and DDP hold references to the live
    # parameter storage.
    for avg, p in pairs:
        tmp = p.detach().clone()
        p.copy_(avg)
        avg.copy_(tmp)
