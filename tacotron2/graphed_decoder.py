"""Teacher-forced decoding on a GPU as replayed CUDA graphs (``tacotron2.cuda_graph_decoder``).

On a GPU the demo-sized decoder is bound by kernel launches, not arithmetic: some 60 small
kernels per decoder step forward and more backward, ~100 steps per utterance batch, each launch
costing more than its work (an H200 trained the demo preset at 3.3 steps/s, barely faster than
2 CPU cores). ``torch.cuda.make_graphed_callables`` records the whole teacher-forced loop, forward
and backward, once per input shape and replays each as one launch.

A graph is recorded for fixed shapes, so a batch is padded up to a shape bucket: symbols and
decoder steps rounded up to multiples of ``BUCKET``. Neither padding changes a real output:
padded symbols are masked out of the attention exactly as a batch's own padding is, and extra
decoder steps come after every real one (the loop is causal) and are cut off before anything
reads them, so their gradient is zero. The padded steps draw dropout masks too, so the random
stream differs from the eager path's; the math does not.

Each bucket's graph keeps its own activations on the GPU, so the number of kept graphs is capped
(least recently used dropped first). Those activations and the outputs live in the graph's
static buffers: like the trainer, a caller must run the backward of one graphed forward before
the next forward of the same shape bucket, which would replay over them. Recording fails on some
setups (an old driver, a debugger); then the decoder warns once and stays eager.
"""
from __future__ import annotations

import collections
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BUCKET = 32        # symbols and decoder steps are padded up to multiples of this
MAX_GRAPHS = 24    # recorded shapes kept at once (each holds its activations)


def bucket(n: int) -> int:
    return -(-n // BUCKET) * BUCKET


class _Loop(nn.Module):
    """The decoder's teacher-forced loop as a module of tensors only (what graphing needs);
    ``invalid`` is always given, since testing a mask for any padding would synchronise."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, memory: Tensor, invalid: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.decoder._forward_autograd(memory, None, targets, invalid=invalid)


class GraphedDecoderLoop:
    """Per-shape graphed versions of ``decoder._forward_autograd`` (training mode, grad on)."""

    def __init__(self, decoder: nn.Module) -> None:
        self.decoder = decoder
        self.graphs: collections.OrderedDict[tuple, Callable] = collections.OrderedDict()
        self.failed = False

    def _graph(self, key: tuple, memory: Tensor, invalid: Tensor, targets: Tensor) -> Callable:
        fn = self.graphs.get(key)
        if fn is not None:
            self.graphs.move_to_end(key)
            return fn
        while len(self.graphs) >= MAX_GRAPHS:
            self.graphs.popitem(last=False)
        sample = (torch.zeros_like(memory).requires_grad_(memory.requires_grad),
                  invalid.clone(), torch.zeros_like(targets))
        # a fresh wrapper per shape: graphing replaces the wrapper's forward
        fn = torch.cuda.make_graphed_callables(_Loop(self.decoder), sample)
        self.graphs[key] = fn
        return fn

    def __call__(self, memory: Tensor, memory_lengths: Tensor | None, targets: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor] | None:
        """The eager result's equal, or None when graphing is unavailable (the caller goes eager)."""
        if self.failed or (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return None  # DDP's gradient hooks with replayed graphs: not tried, so not used
        b, n, _ = memory.shape
        r = self.decoder.r
        steps = -(-targets.shape[1] // r)
        n_pad, s_pad = bucket(n), bucket(steps)
        lengths = memory_lengths if memory_lengths is not None else torch.full(
            (b,), n, dtype=torch.long, device=memory.device)
        invalid = torch.arange(n_pad, device=memory.device)[None, :] >= lengths.to(memory.device)[:, None]
        memory_p = F.pad(memory, (0, 0, 0, n_pad - n))
        targets_p = F.pad(targets, (0, 0, 0, s_pad * r - targets.shape[1]))
        key = (b, n_pad, s_pad, memory.shape[2], targets.shape[2], memory.dtype, memory.requires_grad)
        try:
            fn = self._graph(key, memory_p, invalid, targets_p)
        except Exception as e:  # noqa: BLE001 - any recording failure means: stay eager
            self.failed = True
            self.graphs.clear()
            warnings.warn(f"CUDA graph recording of the Tacotron-2 decoder failed ({type(e).__name__}: "
                          f"{e}); it trains eagerly", RuntimeWarning, stacklevel=3)
            return None
        mel, gate, align = fn(memory_p, invalid, targets_p)
        return mel[:, :steps * r], gate[:, :steps * r], align[:, :steps, :n]
