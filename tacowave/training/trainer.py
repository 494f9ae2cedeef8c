"""The training loop that every task runs through.

One code path serves a laptop CPU, one GPU and ``torchrun`` over many GPUs or nodes: a
single process is rank 0 of a world of 1. Per step every rank loads its shard of a global
batch, runs forward and backward (DDP averages the gradients), then the ranks agree in one
small all-reduce on the mean loss, on whether to stop (signal, time budget) and on the clock
(for a final learning-rate anneal), so that they all skip, stop, checkpoint and set the same
learning rate at the same step. Rank 0 alone logs, evaluates and writes
checkpoints while the others wait in a barrier.

Checkpoint layout (``torch.load(path, weights_only=True)``)::

    format          "tacowave-checkpoint"
    version         1
    model_type      the task's name, e.g. "tacotron2"
    model           model state_dict (the bare model, no DDP "module." prefix)
    hparams         the resolved preset, HParams.to_dict()
    ema             state_dict of the model with averaged weights, or None
    optimizer       Adam state_dict
    scheduler       the LR schedule's settings (LRSchedule.state_dict())
    scaler          GradScaler state_dict (fp16 runs), or None
    step            updates done (skipped non-finite steps included)
    epoch           current epoch
    batch_in_epoch  batches of that epoch already consumed (exact mid-epoch resume)
    world_size      processes that wrote it (the sampler shards depend on it)
    rng             one entry per rank: {"python", "numpy", "torch", "cuda"} generator states
    skipped_steps   non-finite steps skipped so far; nonfinite_in_a_row: the current streak
    trained_seconds wall-clock seconds of training over this run and the ones it resumed
    ...             the task's checkpoint_extra() entries, e.g. "symbols", "speakers"

Exact resume: the learning rate is a function of the step (unless a final anneal follows a
wall-clock budget, see ``schedule.py``), the sampler is a function of
(seed, epoch) and skips the consumed batches, items draw randomness from per-item seeds, and
the generators are restored per rank, and evaluation runs with the generators saved and
restored around it, so on the CPU an interrupted and resumed run computes bit-identical
losses to an uninterrupted one.

Stopping: SIGINT (Ctrl-C) or SIGTERM finishes the current step, checkpoints and returns
(a second Ctrl-C aborts at once); so does the ``max_minutes`` budget. A non-finite loss
or gradient skips the update (no optimizer, EMA or weight change) and is counted; after
``max_nonfinite_steps`` in a row the run stops with :class:`NonFiniteLossError`, and a
checkpoint is never written with non-finite weights.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from tacowave.training import distributed, rng, workers
from tacowave.training.checkpoint import (FORMAT, VERSION, CheckpointError, CheckpointManager,
                                          load_checkpoint)
from tacowave.training.device import select_device
from tacowave.training.distributed import DistEnv
from tacowave.training.ema import ExponentialMovingAverage
from tacowave.training.logging import TrainLogger
from tacowave.training.precision import Precision, resolve_precision
from tacowave.training.schedule import LRSchedule
from tacowave.training.task import Task

RESERVED_KEYS = frozenset({
    "format", "version", "model_type", "model", "hparams", "ema", "optimizer", "scheduler",
    "scaler", "step", "epoch", "batch_in_epoch", "world_size", "rng", "skipped_steps",
    "nonfinite_in_a_row", "trained_seconds"})


class TrainingError(RuntimeError):
    """A run cannot start or continue for a reason the user can act on."""


class NonFiniteLossError(TrainingError):
    """Too many consecutive steps had a non-finite loss or gradient."""


@dataclass
class RunOptions:
    """What the command line decides beyond the preset (see ``tacowave.cli.train``)."""

    checkpoint_dir: str
    #: Checkpoint to continue; None continues ``checkpoint_dir``'s latest one when present.
    resume: str | None = None
    #: Start a new run from this checkpoint's model weights (ignored when resuming).
    init_from: str | None = None
    #: Parameter-name prefixes that keep their fresh initialisation under ``init_from``.
    init_exclude: tuple[str, ...] = ()
    device: str = "auto"
    show_progress: bool = True


@dataclass
class RunResult:
    step: int
    epoch: int
    #: "max_steps", "max_minutes", "signal" or "done" (nothing left to do at start).
    reason: str
    #: The last checkpoint written by this run, if any.
    checkpoint: str | None = None
    #: The signal that stopped the run, for the exit code.
    signum: int | None = None


class _Counting:
    """Collate wrapper that also reports the item count (picklable for loader workers)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> tuple[int, Any]:
        return len(items), self.collate(items)


class _StopSignals:
    """SIGINT / SIGTERM ask the run to stop after the current step (and checkpoint); a
    second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _rank_seed(seed: int, rank: int) -> int:
    # Distinct, reproducible streams per rank (dropout masks must differ between ranks).
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def load_initial_weights(model: nn.Module, state: dict[str, Any], exclude: tuple[str, ...],
                         path: str) -> str:
    """Copy ``state["model"]`` into ``model`` except names starting with an ``exclude`` prefix.

    Every other model entry must exist in the checkpoint with the same shape, else a
    :class:`TrainingError` lists the offenders. Returns a one-line summary.
    """
    source: dict[str, torch.Tensor] = state["model"]
    target = model.state_dict()

    def excluded(name: str) -> bool:
        return any(name.startswith(prefix) for prefix in exclude)

    taken = {k: v for k, v in source.items() if k in target and not excluded(k)}
    mismatched = [f"{k} (checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)})"
                  for k, v in taken.items() if v.shape != target[k].shape]
    if mismatched:
        raise TrainingError(f"--init-from {path}: {len(mismatched)} tensor(s) differ in shape: "
                            f"{'; '.join(mismatched[:8])}{' ...' if len(mismatched) > 8 else ''}; "
                            f"add their prefixes to --init-exclude to keep them freshly initialised")
    missing = [k for k in target if k not in source and not excluded(k)]
    if missing:
        raise TrainingError(f"--init-from {path}: the checkpoint lacks {len(missing)} of this "
                            f"model's tensors, e.g. {', '.join(missing[:5])}; add their prefixes "
                            f"to --init-exclude to keep them freshly initialised")
    model.load_state_dict(taken, strict=False)
    ignored = sum(1 for k in source if k not in target)
    return (f"initialised {len(taken)} of {len(target)} tensors from {path}"
            + (f" ({len(target) - len(taken)} excluded)" if len(target) > len(taken) else "")
            + (f"; {ignored} checkpoint tensors not in this model were ignored" if ignored else ""))


def _differing_keys(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{section}.{key}" for section in sorted(set(old) | set(new))
            for key in sorted(set(old.get(section, {})) | set(new.get(section, {})))
            if old.get(section, {}).get(key) != new.get(section, {}).get(key)]


class Trainer:
    """Runs one task to ``max_steps`` (or the time budget, or a signal), checkpointing."""

    def __init__(self, task: Task, options: RunOptions, env: DistEnv | None = None) -> None:
        self.task = task
        self.options = options
        self.env = env or distributed.detect()
        self.cfg = task.config

    # ------------------------------------------------------------------ entry point

    def run(self) -> RunResult:
        started = time.monotonic()
        device = select_device(self.options.device, self.env.local_rank, self.env.world_size)
        owns_group = self.env.distributed and not torch.distributed.is_initialized()
        distributed.init(self.env, device)
        try:
            with _StopSignals() as signals:
                return self._run(device, started, signals)
        finally:
            if owns_group:
                distributed.shutdown()

    # ------------------------------------------------------------------ set-up

    def _load_on_every_rank(self, path: str) -> dict[str, Any]:
        """Load ``path`` on each rank; if any rank fails, all raise (none waits forever)."""
        state, error = None, None
        try:
            state = load_checkpoint(path)
        except CheckpointError as e:
            error = str(e)
            if self.env.rank > 0:
                error += (f" (on rank {self.env.rank}: with several nodes, the checkpoint must be "
                          f"on storage that every node can read)")
        errors = [e for e in distributed.all_gather_object(self.env, error) if e]
        if errors:
            raise CheckpointError(error or errors[0])
        return state

    def _run(self, device: torch.device, started: float, signals: _StopSignals) -> RunResult:
        task, cfg, env, opts = self.task, self.cfg, self.env, self.options
        manager = CheckpointManager(opts.checkpoint_dir, cfg.keep_last_checkpoints)
        task.check_data()
        if opts.resume and opts.init_from:
            raise TrainingError("--resume and --init-from exclude each other: --resume continues a "
                                "run, --init-from starts a new one from its weights")
        # Rank 0 decides, so that every rank continues the same checkpoint.
        resume_path = distributed.broadcast_object(env, opts.resume or manager.latest())
        resume = self._load_on_every_rank(resume_path) if resume_path else None
        if resume is not None and resume["model_type"] != task.name:
            raise TrainingError(f"{resume_path} is a {resume['model_type']!r} checkpoint, not "
                                f"{task.name!r}")
        if resume is not None and not {"optimizer", "step", "epoch", "batch_in_epoch"} <= set(resume):
            raise TrainingError(f"{resume_path} holds model weights but no training state (a converted "
                                f"or exported checkpoint?); start a new run from it with --init-from")
        precision = resolve_precision(cfg.amp, device)
        try:
            schedule = LRSchedule.from_config(cfg)
        except ValueError as e:
            raise TrainingError(f"{task.train_section}: {e}") from None
        if not 0.0 <= cfg.ema_decay < 1.0:
            raise TrainingError(f"{task.train_section}.ema_decay must be in [0, 1), got {cfg.ema_decay}")
        if env.is_main:
            os.makedirs(opts.checkpoint_dir, exist_ok=True)
            manager.remove_stale_temp_files()
            manager.write_hparams(task.hp.to_json())
        logger = TrainLogger(os.path.join(opts.checkpoint_dir, "log"), enabled=env.is_main,
                             total_steps=cfg.max_steps, initial_step=resume["step"] if resume else 0,
                             show_progress=opts.show_progress)
        try:
            rng.seed_everything(cfg.seed)
            model = task.build_model()
            if resume is None and opts.init_from:
                init = self._load_on_every_rank(opts.init_from)
                if init["model_type"] != task.name:
                    raise TrainingError(f"--init-from {opts.init_from} is a {init['model_type']!r} "
                                        f"checkpoint, not {task.name!r}")
                logger.message(load_initial_weights(model, init, opts.init_exclude, opts.init_from))
            elif opts.init_from:
                logger.message(f"resuming {resume_path}; --init-from {opts.init_from} is ignored")
            if resume is not None:
                try:
                    model.load_state_dict(resume["model"])
                except RuntimeError as e:
                    raise TrainingError(f"{resume_path} does not fit the model this preset builds: "
                                        f"{str(e).strip().splitlines()[-1].strip()}") from None
            model.to(device)
            optimizer = torch.optim.Adam(model.parameters(), lr=schedule(0),
                                         betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                                         weight_decay=cfg.weight_decay)
            loop = _Loop(self, device, model, optimizer, precision, schedule, manager, logger,
                         signals, started)
            if resume is not None:
                loop.restore(resume, resume_path)
            return loop.run()
        finally:
            logger.close()


@dataclass
class _LoopState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    skipped_steps: int = 0
    nonfinite_in_a_row: int = 0
    # Training seconds of the runs this one resumed, and the clock as the ranks last agreed on it.
    seconds_before: float = 0.0
    agreed_elapsed: float = 0.0


class _Loop:
    """The state and the steps of one run (built by :meth:`Trainer._run`)."""

    def __init__(self, trainer: Trainer, device: torch.device, model: nn.Module,
                 optimizer: torch.optim.Optimizer, precision: Precision, schedule: LRSchedule,
                 manager: CheckpointManager, logger: TrainLogger, signals: _StopSignals,
                 started: float) -> None:
        self.task, self.cfg, self.env = trainer.task, trainer.cfg, trainer.env
        self.device, self.model, self.optimizer = device, model, optimizer
        self.precision, self.schedule, self.manager = precision, schedule, manager
        self.logger, self.signals, self.started = logger, signals, started
        self.state = _LoopState()
        self.scaler = precision.make_scaler()
        self.ema = ExponentialMovingAverage(model, self.cfg.ema_decay) if self.cfg.ema_decay > 0 else None
        self.ddp: nn.Module = model
        if self.env.distributed:
            self.ddp = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=self.task.find_unused_parameters)
        self._dev: Any = None
        self._dev_built = False
        self.last_checkpoint: str | None = None
        # Applied right before the first step, after datasets and loaders exist, so that
        # nothing a task does while building them can shift the training random stream.
        self._start_rng: Callable[[], None] = lambda: rng.seed_everything(
            _rank_seed(self.cfg.seed, self.env.rank))

    # ------------------------------------------------------------------ resume

    def restore(self, ckpt: dict[str, Any], path: str) -> None:
        """Continue exactly where ``ckpt`` stopped (model weights are already loaded)."""
        env, st, log = self.env, self.state, self.logger
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:
                log.message(f"{path} holds no EMA weights: the average starts from the current ones")
        st.step, st.epoch, st.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        st.skipped_steps = ckpt.get("skipped_steps", 0)
        st.nonfinite_in_a_row = ckpt.get("nonfinite_in_a_row", 0)
        st.seconds_before = float(ckpt.get("trained_seconds", 0.0))
        states = ckpt.get("rng") or []
        if ckpt.get("world_size") == env.world_size and len(states) == env.world_size:
            self._start_rng = lambda: rng.restore(states[env.rank], self.device)
        else:
            # The shards of a partly consumed epoch depend on the world size: start a new epoch.
            if st.batch_in_epoch:
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
            self._start_rng = lambda: rng.seed_everything(_rank_seed(self.cfg.seed + st.step, env.rank))
            log.message(f"{path} was written by {ckpt.get('world_size')} process(es), this run has "
                        f"{env.world_size}: continuing from the next epoch with fresh RNG streams")
        if ckpt.get("scheduler") != self.schedule.state_dict():
            log.message(f"the learning-rate schedule differs from {path}'s; using this run's")
        changed = _differing_keys(ckpt.get("hparams", {}), self.task.hp.to_dict())
        if changed:
            log.message(f"hparams differ from {path}'s (this run's apply): {', '.join(changed)}")
        log.message(f"resumed {path} at step {st.step} (epoch {st.epoch}, batch {st.batch_in_epoch})")

    # ------------------------------------------------------------------ the loop

    def _loader(self, dataset: torch.utils.data.Dataset, sampler: Any) -> DataLoader:
        num_workers = workers.resolve_num_workers(self.cfg.num_workers, self.env.local_world_size)
        extra: dict[str, Any] = {}
        if num_workers > 0:
            extra = dict(multiprocessing_context=workers.multiprocessing_context(),
                         persistent_workers=True, worker_init_fn=workers.WorkerInit(os.getpid()),
                         prefetch_factor=2)
        self.logger.message(f"data loader: {num_workers} worker process(es) per rank")
        # A private generator: creating the loader iterator must not draw from the global
        # torch RNG, or a resumed run's random stream would shift.
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=_Counting(self.task.collate),
                          num_workers=num_workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(self.cfg.seed), **extra)

    def run(self) -> RunResult:
        task, cfg, env, st, log = self.task, self.cfg, self.env, self.state, self.logger
        if st.step >= cfg.max_steps:
            log.message(f"nothing to do: step {st.step} >= max_steps {cfg.max_steps}")
            return RunResult(st.step, st.epoch, "done")
        train = task.train_dataset()
        if hasattr(train, "describe"):
            log.message(train.describe())
        sampler = task.batch_sampler(train, cfg.batch_size, num_replicas=env.world_size,
                                     rank=env.rank, seed=cfg.seed, shuffle=True)
        if len(sampler) == 0:
            raise TrainingError(f"no training items in {task.data.list_path('train')} "
                                f"(after exclusions)")
        n_params = sum(p.numel() for p in self.model.parameters())
        log.message(f"{task.name}: {n_params:,} parameters on {self.device} ({self.precision.name}), "
                    f"{env.world_size} process(es), {len(sampler)} batches of {cfg.batch_size} per "
                    f"rank per epoch")
        # Held on self, not in a local, so that the finally below releases it even when an
        # exception's traceback keeps this frame alive: releasing it shuts the workers down,
        # and they ignore SIGTERM, so leftovers would block the interpreter's exit.
        self._train_loader: DataLoader | None = self._loader(train, sampler)
        try:
            return self._train(sampler)
        finally:
            self._train_loader = None

    def _train(self, sampler: Any) -> RunResult:
        cfg, st, log = self.cfg, self.state, self.logger
        budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes > 0 else math.inf

        def wants_stop() -> bool:
            return self.signals.signum is not None or time.monotonic() - self.started >= budget_s

        meter = _Meter()
        reason: str | None = None
        self.model.train()
        self._start_rng()
        while reason is None:
            sampler.set_epoch(st.epoch, st.batch_in_epoch)
            for n_items, batch in self._train_loader:
                stop = self._step(batch, n_items, wants_stop, meter)
                st.step += 1
                st.batch_in_epoch += 1
                if st.step >= cfg.max_steps:
                    reason = "max_steps"
                elif stop:
                    reason = "signal" if self.signals.signum is not None else "max_minutes"
                self._after_step(meter, force_checkpoint=reason is not None)
                if reason is not None:
                    break
            else:
                st.epoch += 1
                st.batch_in_epoch = 0
        log.message(f"stopped at step {st.step} ({reason}); checkpoint: {self.last_checkpoint}")
        return RunResult(st.step, st.epoch, reason, self.last_checkpoint, self.signals.signum)

    def _step(self, batch: Any, n_items: int, wants_stop: Callable[[], bool], meter: "_Meter") -> bool:
        """One update; returns whether any rank asked to stop (asked as late as possible, so
        that a signal arriving during this step stops the run right after it)."""
        cfg, st = self.cfg, self.state
        lr = self.schedule(st.step, self._progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.task.batch_to_device(batch, self.device)
        with self.precision.autocast():
            loss, metrics = self.task.compute_loss(self.ddp, batch, st.step)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        frames = self.task.count_frames(batch)
        comm_device = self.device if self.env.distributed and self.device.type == "cuda" else torch.device("cpu")
        shared = torch.zeros(5, dtype=torch.float64, device=comm_device)
        shared[0] = loss.detach()
        shared[1], shared[2], shared[3] = float(wants_stop()), n_items, frames or 0
        shared[4] = time.monotonic() - self.started
        distributed.all_reduce_sum(self.env, shared)
        loss_sum, stop_votes, items, frame_count, elapsed_sum = shared.tolist()
        loss_value = loss_sum / self.env.world_size
        st.agreed_elapsed = elapsed_sum / self.env.world_size

        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip_norm if cfg.grad_clip_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        # fp16 overflow of the gradients with a finite loss is the scaler's business (it
        # lowers the scale and skips); everything else non-finite is skipped and counted here.
        nonfinite = not math.isfinite(loss_value) or (self.scaler is None and not math.isfinite(grad_norm))
        if nonfinite:
            if self.scaler is not None:
                self.scaler.update()
            st.skipped_steps += 1
            st.nonfinite_in_a_row += 1
            self.logger.message(f"step {st.step}: non-finite loss ({loss_value}) or gradient norm "
                                f"({grad_norm}); update skipped ({st.nonfinite_in_a_row} in a row)")
            if st.nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                raise NonFiniteLossError(
                    f"{st.nonfinite_in_a_row} consecutive non-finite steps (max_nonfinite_steps = "
                    f"{cfg.max_nonfinite_steps}) at step {st.step}; stopping without saving. Last "
                    f"checkpoint: {self.manager.latest() or 'none'}. Lower the learning rate, "
                    f"tighten grad_clip_norm or use amp=bf16/none")
        else:
            st.nonfinite_in_a_row = 0
            updated = True
            if self.scaler is not None:
                scale = self.scaler.get_scale()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                updated = self.scaler.get_scale() >= scale
            else:
                self.optimizer.step()
            if self.ema is not None and updated:
                self.ema.update(self.model)
            meter.add(loss_value, metrics, grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        meter.count(items, frame_count)
        return stop_votes > 0

    def _progress(self) -> float:
        """Share of the run's budget spent, the same on every rank: the larger of the step share
        and the time share (over this run and the ones it resumed, as of the last agreed clock)."""
        cfg, st = self.cfg, self.state
        progress = st.step / max(cfg.max_steps, 1)
        if cfg.max_minutes > 0:
            total = st.seconds_before + cfg.max_minutes * 60.0
            progress = max(progress, (st.seconds_before + st.agreed_elapsed) / total)
        return min(progress, 1.0)

    # ------------------------------------------------------------------ logging, eval, saving

    def _after_step(self, meter: "_Meter", force_checkpoint: bool) -> None:
        cfg, st, log = self.cfg, self.state, self.logger
        lr = self.optimizer.param_groups[0]["lr"]
        if st.step % max(cfg.log_interval, 1) == 0 or force_checkpoint:
            summary = meter.flush()
            if summary is not None and log.enabled:
                log.scalars(summary, st.step)
                log.scalar("train/lr", lr, st.step)
                log.scalar("train/skipped_steps", st.skipped_steps, st.step)
                log.scalar("train/epoch", st.epoch, st.step)
                if self.scaler is not None:
                    log.scalar("train/loss_scale", self.scaler.get_scale(), st.step)
                log.progress(st.step, {"loss": f"{summary.get('train/loss', float('nan')):.4f}",
                                       "lr": f"{lr:.2e}"})
        else:
            log.progress(st.step, {})
        paused = time.perf_counter()
        if cfg.eval_interval > 0 and st.step % cfg.eval_interval == 0:
            if self.env.is_main:
                self._evaluate()
            distributed.barrier(self.env)
        if force_checkpoint or (cfg.checkpoint_interval > 0 and st.step % cfg.checkpoint_interval == 0):
            self._save()
        meter.pause(time.perf_counter() - paused)

    def _evaluate(self) -> None:
        """Dev loss and the task's artifacts, on rank 0, without touching the training RNG."""
        task, cfg, st = self.task, self.cfg, self.state
        if not self._dev_built:
            self._dev, self._dev_built = task.dev_dataset(), True
        dev = self._dev
        swap = self.ema.swapped_in(self.model) if self.ema is not None else contextlib.nullcontext()
        self.model.eval()
        try:
            with rng.isolated(self.device), torch.no_grad(), swap:
                if dev is not None and len(dev) > 0:
                    sampler = task.batch_sampler(dev, cfg.batch_size, seed=cfg.seed, shuffle=False)
                    sampler.set_epoch(0)
                    loader = DataLoader(dev, batch_sampler=sampler, collate_fn=_Counting(task.collate))
                    totals: dict[str, float] = {}
                    seen = 0
                    for n_items, batch in loader:
                        batch = task.batch_to_device(batch, self.device)
                        with self.precision.autocast():
                            loss, metrics = task.compute_loss(self.model, batch, st.step)
                        for name, value in {"loss": loss, **metrics}.items():
                            totals[name] = totals.get(name, 0.0) + float(value) * n_items
                        seen += n_items
                    self.logger.scalars({k: v / seen for k, v in totals.items()}, st.step, prefix="dev/")
                task.evaluate(self.model, dev, self.logger, st.step)
        finally:
            self.model.train()
        self.logger.flush()

    def _save(self) -> None:
        st, env = self.state, self.env
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise NonFiniteLossError(f"the weights became non-finite by step {st.step}; not saving. "
                                     f"Last checkpoint: {self.manager.latest() or 'none'}")
        rng_states = distributed.all_gather_object(env, rng.capture(self.device))
        if env.is_main:
            extra = self.task.checkpoint_extra()
            clash = RESERVED_KEYS.intersection(extra)
            if clash:
                raise TrainingError(f"task {self.task.name!r} checkpoint_extra() uses reserved "
                                    f"key(s) {', '.join(sorted(clash))}")
            state = {
                "format": FORMAT, "version": VERSION, "model_type": self.task.name,
                "model": self.model.state_dict(), "hparams": self.task.hp.to_dict(),
                "ema": self.ema.state_dict(self.model) if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "step": st.step, "epoch": st.epoch, "batch_in_epoch": st.batch_in_epoch,
                "world_size": env.world_size, "rng": rng_states,
                "skipped_steps": st.skipped_steps, "nonfinite_in_a_row": st.nonfinite_in_a_row,
                "trained_seconds": st.seconds_before + (time.monotonic() - self.started),
                **extra,
            }
            self.last_checkpoint = self.manager.save(state, st.step)
            self.logger.message(f"saved {self.last_checkpoint}")
        distributed.barrier(env)


class _Meter:
    """Running sums between two log lines (rank 0 reads them)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Any] = {}
        self.updates = 0
        self.steps = 0
        self.items = 0.0
        self.frames = 0.0
        self.paused = 0.0
        self.since = time.perf_counter()

    def add(self, loss: float, metrics: dict[str, Any], grad_norm: float) -> None:
        self.updates += 1
        for name, value in {"loss": loss, "grad_norm": grad_norm, **metrics}.items():
            value = value.detach() if isinstance(value, torch.Tensor) else float(value)
            self.sums[name] = self.sums.get(name, 0.0) + value

    def count(self, items: float, frames: float) -> None:
        self.steps += 1
        self.items += items
        self.frames += frames

    def pause(self, seconds: float) -> None:
        """Evaluation and checkpoint time, kept out of the throughput."""
        self.paused += seconds

    def flush(self) -> dict[str, float] | None:
        if self.steps == 0:
            return None
        elapsed = max(time.perf_counter() - self.since - self.paused, 1e-9)
        out = {f"train/{k}": float(v) / self.updates for k, v in self.sums.items()} if self.updates else {}
        out["throughput/steps_per_s"] = self.steps / elapsed
        out["throughput/items_per_s"] = self.items / elapsed
        if self.frames:
            out["throughput/frames_per_s"] = self.frames / elapsed
        self._reset()
        return out
