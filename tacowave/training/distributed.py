"""torchrun-style process groups. A single process is the degenerate case of the same path:
``world_size == 1``, no process group, and every collective below returns its input.

torchrun (``python -m torch.distributed.run``) sets RANK, LOCAL_RANK, WORLD_SIZE,
LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT; multi-node runs only add torchrun flags
(``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``), nothing here changes.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Rank 0 evaluates and writes checkpoints while the other ranks wait in a barrier; a WaveNet
# evaluation that generates audio can take minutes, so the default 10-minute NCCL timeout
# would kill healthy runs.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def detect() -> DistEnv:
    """Read the launcher's environment; a plain ``python train.py`` is rank 0 of 1."""
    def env_int(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        return int(value) if value.strip() else default

    world = env_int("WORLD_SIZE", 1)
    return DistEnv(rank=env_int("RANK", 0), local_rank=env_int("LOCAL_RANK", 0), world_size=world,
                   local_world_size=env_int("LOCAL_WORLD_SIZE", world))


def init(env: DistEnv, device: torch.device) -> None:
    """Join the process group: NCCL between GPUs, gloo between CPU processes."""
    if not env.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        # Binding the group to this rank's GPU avoids NCCL guessing device 0 for barriers.
        kwargs["device_id"] = device
    dist.init_process_group(backend=backend, init_method="env://", rank=env.rank,
                            world_size=env.world_size, timeout=COLLECTIVE_TIMEOUT, **kwargs)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_sum(env: DistEnv, values: torch.Tensor) -> torch.Tensor:
    """Elementwise sum over ranks (in place; the input on one process)."""
    if env.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_object(env: DistEnv, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (small picklable objects such as RNG states)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a small picklable value, e.g. a path)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
