"""How many DataLoader worker processes a run can afford, and how they are started.

The crash this prevents (``OSError: [Errno 12] Cannot allocate memory`` from ``fork()``):
forking a parent that holds a big corpus or model duplicates its address space per worker.
Here the parent never holds features (see ``tacowave.data``), workers are started from a
small fresh server process (``forkserver``; ``spawn`` where that is unavailable) rather
than forked from the trainer, and their number is bounded by cores and by free memory.
Workers leave stop signals to the trainer and never outlive it.
"""
from __future__ import annotations

import multiprocessing
import os
import select
import signal
import threading
import time

# A worker holds torch and numpy plus prefetch_factor collated batches and the arrays of the
# batch it is building. Measured with benchmarks/training_memory.py (Linux, forkserver with
# torch preloaded): ~190 MiB RSS per worker, of which all but ~40 MiB is shared with the fork
# server. Under "spawn" (macOS, Windows) nothing is shared, so a worker costs its whole RSS,
# and big Tacotron-2 batches add tens of MiB; 512 MiB errs on the side of fewer workers.
PER_WORKER_BYTES = 512 * 2**20
# Share of the currently available memory that loader workers may take; the rest is left to
# the trainer itself (model, optimizer, activations on CPU runs) and to the page cache that
# the memory-mapped features read through.
MEMORY_FRACTION = 0.5
# Memory-mapped .npy loading is cheap; beyond this many workers per process there is no gain.
MAX_WORKERS = 8


def auto_num_workers(cpu_count: int, available_bytes: int | None, *, local_world_size: int = 1,
                     per_worker_bytes: int = PER_WORKER_BYTES, fraction: float = MEMORY_FRACTION,
                     max_workers: int = MAX_WORKERS) -> int:
    """The default worker count for one training process::

        by_cores  = max(cores_per_process − 1, 1)           (one core stays with the trainer)
        by_memory = floor(available × fraction / processes / per_worker_bytes)
        workers   = min(by_cores, by_memory, max_workers)   (0 = load in the trainer process)

    where ``processes`` is the number of training processes on this node (torchrun's
    ``--nproc_per_node``), which share the node's cores and memory. ``available_bytes=None``
    (unknown) bounds by cores only.
    """
    local_world_size = max(1, local_world_size)
    by_cores = max(cpu_count // local_world_size - 1, 1)
    workers = min(by_cores, max_workers)
    if available_bytes is not None:
        by_memory = int(available_bytes * fraction / local_world_size // per_worker_bytes)
        workers = min(workers, by_memory)
    return max(0, workers)


def usable_cpu_count() -> int:
    """Cores this process may run on (affinity masks and taskset respected)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_limit_files(cgroup_root: str, proc_cgroup: str) -> list[tuple[str, str]]:
    """(limit, usage) file pairs of this process's memory cgroup and all its ancestors, for
    cgroup v2 (``0::/path``) and v1 (``N:memory:/path``): a limit at any level applies."""
    try:
        with open(proc_cgroup, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    hierarchies = {"v2": "/", "v1": "/"}
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            hierarchies["v2"] = fields[2]
        elif "memory" in fields[1].split(","):
            hierarchies["v1"] = fields[2]
    out = []
    for version, rel in hierarchies.items():
        base = cgroup_root if version == "v2" else os.path.join(cgroup_root, "memory")
        limit_name, usage_name = (("memory.max", "memory.current") if version == "v2"
                                  else ("memory.limit_in_bytes", "memory.usage_in_bytes"))
        parts = [p for p in rel.split("/") if p]
        for depth in range(len(parts) + 1):
            d = os.path.join(base, *parts[:depth])
            out.append((os.path.join(d, limit_name), os.path.join(d, usage_name)))
    return out


def available_memory_bytes(meminfo: str = "/proc/meminfo", cgroup_root: str = "/sys/fs/cgroup",
                           proc_cgroup: str = "/proc/self/cgroup") -> int | None:
    """Memory a new process can use: /proc/meminfo ``MemAvailable``, lowered to the headroom
    under any memory cgroup limit of this process (``limit − usage``) when it runs in a
    container or a batch-system slot. None where nothing is readable (non-Linux)."""
    candidates: list[int] = []
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    for limit_file, usage_file in _cgroup_limit_files(cgroup_root, proc_cgroup):
        limit = _read_int(limit_file)
        # v2 writes "max" and v1 a page-rounded LONG_MAX for "no limit".
        if limit is not None and limit < 2**60:
            usage = _read_int(usage_file) or 0
            candidates.append(max(0, limit - usage))
    return min(candidates) if candidates else None


def resolve_num_workers(requested: int | None, local_world_size: int = 1) -> int:
    """``requested`` (from ``--num-workers`` or the preset) when >= 0, else the automatic count."""
    if requested is not None and requested >= 0:
        return requested
    return auto_num_workers(usable_cpu_count(), available_memory_bytes(),
                            local_world_size=local_world_size)


def multiprocessing_context() -> multiprocessing.context.BaseContext:
    """Start workers without forking the (possibly large) trainer process.

    The fork server is a fresh, small process; importing torch and numpy there once lets every
    worker share those pages copy-on-write and start in a fraction of a second instead of
    importing torch anew (the trainer's own memory is never duplicated either way).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "torch", "numpy", "tacowave.data"])
    _start_forkserver_shielded()
    return ctx


def _start_forkserver_shielded() -> None:
    """Start the fork server while SIGINT and SIGTERM are ignored: an ignored disposition
    survives fork and exec, so the server and the workers it forks keep ignoring them.

    Ctrl-C, and torchrun's SIGTERM (sent to each rank's whole process group), must reach the
    trainer alone: it finishes the step, checkpoints, then shuts its workers down (it always
    does so before exiting, see ``Trainer``; workers whose trainer was killed exit by
    themselves, see :class:`WorkerInit`; the server exits after the last of them). Workers or
    a fork server killed first would turn that clean stop into a DataLoader crash. A signal
    arriving during the few milliseconds the server takes to start is lost.
    """
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        forkserver.ensure_running()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class WorkerInit:
    """The loader's ``worker_init_fn``: a worker ignores Ctrl-C and SIGTERM (see
    :func:`_start_forkserver_shielded`; the fork server restores SIGINT's default in its
    children, and under spawn the trainer starts workers itself), and exits as soon as the
    trainer process is gone.

    The second part matters after the trainer is killed outright (SIGKILL, the OOM killer):
    a forked-from-server worker watches its parent, the fork server, which in turn lives as
    long as any worker holds its pipe, so without this the workers would outlive the run.
    """

    def __init__(self, trainer_pid: int) -> None:
        self.trainer_pid = trainer_pid

    def __call__(self, worker_id: int) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        threading.Thread(target=_exit_when_gone, args=(self.trainer_pid,), daemon=True,
                         name="trainer-watch").start()


def _exit_when_gone(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)  # Linux >= 5.3: readable once the process has exited
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])
        os._exit(0)
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
