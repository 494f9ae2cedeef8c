"""The Task: everything model-specific that the generic trainer needs, and the task registry.

The trainer (``tacowave.training.trainer``) knows nothing about Tacotron-2 or WaveNet. It
drives a :class:`Task` subclass through this life cycle (every process of a run does the
same, except where "rank 0" is said)::

    task = TaskClass(hp, data)                       # cheap: keep references, load nothing big
    task.check_data()                                # refuse a data dir made with another audio section
    seed; model = task.build_model()                 # identical initial weights on every rank
    train = task.train_dataset()                     # per-process, items loaded lazily
    sampler = task.batch_sampler(train, batch_size, num_replicas=R, rank=r, seed=s)
    loader = DataLoader(train, batch_sampler=sampler, collate_fn=task.collate, workers...)
    for each step:
        batch = task.batch_to_device(batch, device)
        with autocast: loss, metrics = task.compute_loss(ddp_model, batch, step)
        backward, all-reduce, clip, optimizer step, EMA update
        every eval_interval steps, rank 0 only, model.eval(), no_grad, EMA weights if any:
            dev = task.dev_dataset()                 # once, then cached
            dev loss: task.compute_loss(model, batch, step) over task.batch_sampler(dev, ..., shuffle=False)
            task.evaluate(model, dev, logger, step)  # images, audio, text
        every checkpoint_interval steps, rank 0 only: checkpoint includes task.checkpoint_extra()

The task object is pickled into every DataLoader worker (its ``collate`` is sent there), so
it must stay light: hold hparams, the :class:`~tacowave.data.DataDir`, small tables (symbols,
speakers), never the model or feature arrays.

Mixed precision: ``compute_loss`` runs inside ``torch.autocast`` when the run's ``amp`` is
bf16 or fp16 on a GPU. Which parts must stay fp32 is the task's business: wrap those calls in
``torch.autocast(device_type=x.device.type, enabled=False)`` and feed them ``.float()``
inputs (e.g. Tacotron-2's LSTM cells and attention energies, the MoL log-likelihood).

Registering a task: the built-in names map to ``module:Class`` paths imported on first use,
so a model package is only imported when it is trained. Tests and third-party packages add
their own with :func:`register_task`, and ``--model=package.module:Class`` names any task
class directly.
"""
from __future__ import annotations

import abc
import dataclasses
import importlib
from typing import Any, ClassVar

import torch
from torch import nn

from tacowave.data import BucketBatchSampler, DataDir
from tacowave.hparams import SECTIONS, HParams, TrainConfig
from tacowave.training.logging import TrainLogger


class Task(abc.ABC):
    """Base class of a trainable model family. Subclasses set the two class attributes and
    implement the abstract methods; the others have working defaults."""

    #: Registry name; also written as the checkpoint's ``"model_type"`` and checked on resume.
    name: ClassVar[str] = ""
    #: The hparams section holding this task's :class:`~tacowave.hparams.TrainConfig`
    #: (``"train_tacotron2"`` or ``"train_wavenet"``).
    train_section: ClassVar[str] = ""
    #: Passed to DistributedDataParallel: set True when some parameters may get no gradient in
    #: a step (e.g. an embedding used only by some batches); it costs an extra graph traversal.
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, hp: HParams, data: DataDir) -> None:
        self.hp = hp
        self.data = data

    @property
    def config(self) -> TrainConfig:
        """This task's train section (batch_size, learning_rate, ...)."""
        return getattr(self.hp, self.train_section)

    # ------------------------------------------------------------------ called once per process

    def check_data(self) -> None:
        """Refuse data the model cannot train on; raise :class:`~tacowave.data.DataDirError`
        with a message naming the thing. Called before anything is built. The default checks
        that the preset's audio section equals the data dir's; extend it (calling super) for
        e.g. a text front-end mismatch."""
        self.data.check_audio(self.hp.audio)

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model on the CPU, in train mode. Called right after the
        process RNGs are seeded with the run seed, so every rank builds the same weights.
        The trainer moves it to the device and wraps it for DDP."""

    @abc.abstractmethod
    def train_dataset(self) -> torch.utils.data.Dataset:
        """The training items. Requirements: ``len(ds)``; ``ds[key]`` for a
        :class:`~tacowave.data.SampleKey` (``key.index`` is the item, ``key.rng()`` its only
        source of randomness, so batches do not depend on worker count or resume point);
        ``ds.lengths`` (ints, one per item) when the default :meth:`batch_sampler` is used.
        Subclassing :class:`~tacowave.data.UtteranceDataset` provides all of that, plus
        exclusion of over-long utterances (set ``max_frames``) and a :meth:`describe` line that
        the trainer logs. Load features memory-mapped and copy only what an item needs."""

    def dev_dataset(self) -> torch.utils.data.Dataset | None:
        """Held-out items for the dev loss and :meth:`evaluate` (same contract as
        :meth:`train_dataset`), or None when the data dir has no dev list. Built once, on
        rank 0, at the first evaluation. The default returns None."""
        return None

    def batch_sampler(self, dataset: torch.utils.data.Dataset, batch_size: int, *,
                      num_replicas: int = 1, rank: int = 0, seed: int = 0,
                      shuffle: bool = True) -> BucketBatchSampler:
        """Batches of :class:`~tacowave.data.SampleKey` for this process. ``batch_size`` is per
        process. Training calls it with ``shuffle=True`` and this rank's shard; evaluation with
        ``shuffle=False`` (length-sorted, one process). Must offer ``len``,
        ``set_epoch(epoch, start_batch)`` and yield the same number of batches on every rank.
        The default buckets by ``dataset.lengths``."""
        return BucketBatchSampler(dataset.lengths, batch_size, num_replicas=num_replicas,
                                  rank=rank, seed=seed, shuffle=shuffle)

    # ------------------------------------------------------------------ called per batch

    @abc.abstractmethod
    def collate(self, items: list[Any]) -> Any:
        """Turn the items of one batch into a batch: tensors (CPU) nested in dicts, lists,
        tuples or dataclasses, padded to the longest item, e.g. ``mels (B, T, num_mels)`` and
        ``lengths (B,)``. Runs inside DataLoader workers: no CUDA here."""

    def batch_to_device(self, batch: Any, device: torch.device) -> Any:
        """Move a collated batch onto ``device``. The default moves every tensor found in
        dicts, lists, tuples and dataclasses (``non_blocking`` from pinned memory)."""
        return move_to_device(batch, device)

    @abc.abstractmethod
    def compute_loss(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Forward ``batch`` through ``model`` and return ``(loss, metrics)``.

        ``loss`` is the 0-dim tensor to minimise (already weighted; a mean over the batch so
        that DDP's gradient averaging equals one process on the global batch). ``metrics``
        maps names to detached 0-dim tensors or floats (loss components, accuracies); the
        trainer averages them over ``log_interval`` steps on rank 0 and logs ``train/<name>``.
        ``step`` is the 0-based number of updates done so far (for scheduled loss weights).

        In training, ``model`` may be the DistributedDataParallel wrapper: call ``model(...)``
        itself (its ``forward``), not sub-modules through ``model.module``, or gradients will
        not be synchronised. Runs under autocast (see the module docstring). For the dev loss
        the trainer calls it with the bare model in eval mode under ``torch.no_grad()``.
        """

    def count_frames(self, batch: Any) -> int | None:
        """Frames (mel frames or samples) in a batch, for a ``throughput/frames_per_s`` curve;
        None (the default) logs items per second only."""
        return None

    # ------------------------------------------------------------------ rank 0, occasionally

    def evaluate(self, model: nn.Module, dev_dataset: torch.utils.data.Dataset | None,
                 logger: TrainLogger, step: int) -> None:
        """Write evaluation artifacts (attention and mel images, audio samples, text) with
        ``logger``. Called on rank 0 every ``eval_interval`` steps after the dev loss, with the
        bare model (EMA weights swapped in when the run keeps an EMA) in eval mode, under
        ``torch.no_grad()``, with RNG state saved and restored around it so that evaluating
        never changes training. Keep it bounded (a few utterances): the other ranks wait.
        The default writes nothing."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """Extra top-level checkpoint entries that inference needs, e.g.
        ``{"symbols": [...], "speakers": [...]}``. Values must be plain Python data or
        tensors (checkpoints load with ``weights_only=True``) and keys must not collide with
        the trainer's (see ``tacowave.training.trainer.RESERVED_KEYS``)."""
        return {}


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor in ``batch`` (nested dicts, lists, tuples, dataclasses) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: move_to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch) if f.init})
    return batch


# --------------------------------------------------------------------------- registry


class TaskNotFoundError(LookupError):
    """``--model`` names no known task, or its module cannot be imported."""


_REGISTRY: dict[str, type[Task] | str] = {
    "tacotron2": "tacotron2.task:Tacotron2Task",
    "wavenet": "wavenet_vocoder.task:WaveNetTask",
}


def register_task(name: str, task: type[Task] | str) -> None:
    """Make ``--model=<name>`` train ``task`` (a Task subclass or a ``"module:Class"`` path)."""
    _REGISTRY[name] = task


def task_names() -> list[str]:
    return sorted(_REGISTRY)


def _import_path(path: str, label: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise TaskNotFoundError(f"task {label!r}: {path!r} is not of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        named = f"task {label!r}" if label == path else f"task {label!r} ({path})"
        raise TaskNotFoundError(f"{named} is not available: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise TaskNotFoundError(f"task {label!r}: module {module_name} has no {attr!r}") from None


def get_task(name: str) -> type[Task]:
    """The Task class for a registered name or a ``module:Class`` path."""
    if name in _REGISTRY:
        entry = _REGISTRY[name]
        cls = _import_path(entry, name) if isinstance(entry, str) else entry
    elif ":" in name:
        cls = _import_path(name, name)
    else:
        raise TaskNotFoundError(f"unknown model {name!r}; known: {', '.join(task_names())} "
                                f"(or package.module:TaskClass)")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskNotFoundError(f"task {name!r} resolves to {cls!r}, which is not a Task subclass")
    section = SECTIONS.get(cls.train_section)
    if not cls.name or section is None or not issubclass(section, TrainConfig):
        raise TaskNotFoundError(f"task class {cls.__qualname__} must set 'name' and a "
                                f"'train_section' naming a train section of the hparams")
    return cls
