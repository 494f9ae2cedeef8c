"""The training engine both models train through.

``Task`` (task.py) is the model-specific half: a model package subclasses it. ``Trainer``
(trainer.py) is the generic half: device and distributed set-up, data loading, the step,
mixed precision, EMA, LR schedule, logging, evaluation, checkpoints and exact resume.

Modules, one job each: ``device`` picks cuda / mps / cpu; ``distributed`` wraps torchrun
process groups; ``precision`` the autocast policy; ``workers`` the DataLoader worker count
and start method; ``checkpoint`` atomic files; ``ema``; ``schedule`` LR schedules; ``rng``
generator states; ``logging`` tensorboard + tqdm; ``task`` the Task base class and registry;
``trainer`` the loop.
"""
from tacowave.training.checkpoint import CheckpointError, load_checkpoint
from tacowave.training.task import Task, TaskNotFoundError, get_task, register_task
from tacowave.training.trainer import NonFiniteLossError, RunOptions, RunResult, Trainer, TrainingError

__all__ = ["CheckpointError", "NonFiniteLossError", "RunOptions", "RunResult", "Task",
           "TaskNotFoundError", "Trainer", "TrainingError", "get_task", "load_checkpoint",
           "register_task"]
