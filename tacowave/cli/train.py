"""Train a Tacotron-2 or WaveNet model on a preprocessed data dir.

Usage:
  train.py --preset=<name> --model=<task> --data-root=<dir> --checkpoint-dir=<dir> [options]
  train.py -h | --help

Options:
  --preset=<name>          Preset: a shipped name (ljspeech, demo, ...) or a JSON file path.
  --model=<task>           What to train: tacotron2, wavenet, or package.module:TaskClass.
  --data-root=<dir>        Data dir written by preprocess.py (meta.json, train.txt, mel/, ...).
  --checkpoint-dir=<dir>   Run directory: checkpoint_step*.pth, checkpoint_latest.pth,
                           hparams.json (the resolved preset) and log/ (tensorboard).
  --hparams=<overrides>    Overrides on top of the preset, "section.key=value,...",
                           e.g. "train_tacotron2.batch_size=8" [default: ].
  --resume=<ckpt>          Continue this checkpoint exactly (weights, optimizer, EMA, step,
                           position in the epoch, RNG). Default: the run directory's
                           checkpoint_latest.pth when it exists, so rerunning a command
                           continues it.
  --init-from=<ckpt>       Start a new run from another run's model weights (fine-tuning);
                           ignored when the run directory already holds a checkpoint.
  --init-exclude=<names>   Comma-separated parameter-name prefixes that keep their fresh
                           initialisation under --init-from (e.g. new speaker embeddings).
  --num-workers=<n>        DataLoader worker processes per training process; 0 loads in
                           the trainer process. Default: the preset's num_workers, where -1
                           means bounded by free cores and free memory.
  --max-steps=<n>          Stop after this many updates (overrides the preset's max_steps).
  --max-minutes=<m>        Wall-clock budget in minutes: checkpoint and stop when it is
                           spent (overrides the preset's max_minutes; 0 = unlimited).
  --device=<device>        cpu, cuda, mps or auto (CUDA, else MPS, else CPU) [default: auto].
  --no-progress            No progress bar (batch jobs); log lines still go to stderr.
  -h --help                Show this help.

Several GPUs or nodes: launch the same command through torchrun, e.g.
  torchrun --nproc_per_node=4 train.py --preset=ljspeech --model=tacotron2 ...
batch_size is per process (global batch = batch_size x processes). Only rank 0 logs,
evaluates and writes checkpoints. Ctrl-C or SIGTERM saves a checkpoint, then exits.

Memory: a step holds batch_size x max_frames mel frames (Tacotron-2; longer utterances are
excluded) or batch_size x max_time_steps samples (WaveNet random crops); lower either one
with --hparams when a GPU runs out of memory.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from tacowave.cli.common import UserError, float_option, int_option, parse_args, run_main

PROG = "train.py"


def _train(args: dict[str, Any]) -> int:
    # Heavy imports here, not at module level: --help and usage errors stay instant.
    from tacowave.data import DataDir, DataDirError
    from tacowave.hparams import load_hparams
    from tacowave.training import (CheckpointError, RunOptions, TaskNotFoundError, Trainer,
                                   TrainingError, get_task)
    from tacowave.training.device import DeviceError

    max_steps = int_option(args, "--max-steps", minimum=1)
    num_workers = int_option(args, "--num-workers", minimum=0)
    max_minutes = float_option(args, "--max-minutes", minimum=0.0)
    exclude = tuple(p.strip() for p in (args["--init-exclude"] or "").split(",") if p.strip())
    if exclude and not args["--init-from"]:
        raise UserError("--init-exclude needs --init-from")
    try:
        task_cls = get_task(args["--model"])
        hp = load_hparams(args["--preset"], args["--hparams"] or "")
        section = getattr(hp, task_cls.train_section)
        changes = {k: v for k, v in (("max_steps", max_steps), ("max_minutes", max_minutes),
                                     ("num_workers", num_workers)) if v is not None}
        setattr(hp, task_cls.train_section, dataclasses.replace(section, **changes))
        task = task_cls(hp, DataDir(args["--data-root"]))
        options = RunOptions(checkpoint_dir=args["--checkpoint-dir"], resume=args["--resume"],
                             init_from=args["--init-from"], init_exclude=exclude,
                             device=args["--device"], show_progress=not args["--no-progress"])
        result = Trainer(task, options).run()
    except (DataDirError, CheckpointError, TaskNotFoundError, TrainingError, DeviceError) as e:
        raise UserError(str(e)) from None
    # A run stopped by a signal has saved its state but has not finished: say so to the shell.
    return 128 + result.signum if result.reason == "signal" and result.signum else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, argv, PROG)
    return run_main(lambda: _train(args), PROG)
