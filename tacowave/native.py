"""Building and caching the project's small C kernels (compiled on first use, loaded by ctypes).

The hot loops that PyTorch runs as hundreds of tiny operator calls (WaveNet sample-by-sample
generation, the Tacotron-2 decoder recurrence on a CPU) ship as C source in Python strings, so
they install with the package and need no build step. :func:`build_library` compiles such a
source with the system C compiler (``$CC``, ``cc``, ``gcc`` or ``clang``) into
``$TACOWAVE_CACHE_DIR`` (default ``~/.cache/tacowave``), keyed by source, flags, compiler and CPU
(``-march=native`` output must never reach another CPU through a shared cache). Callers fall back
to their PyTorch path when it fails.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from typing import Optional, Sequence


def cache_dir() -> str:
    root = os.environ.get("TACOWAVE_CACHE_DIR")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "tacowave") if os.path.isabs(base) else temp_cache_dir()


def temp_cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"tacowave-{getattr(os, 'getuid', lambda: 0)()}")


def cpu_signature() -> str:
    """What ``-march=native`` depends on, so a shared cache never hands a binary to the wrong CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.machine() + platform.processor()


def find_compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _compile(cc: str, source: str, stem: str, flags: Sequence[str], path: str) -> None:
    """Compile ``source`` into the shared library ``path`` (atomically: temp file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        src = os.path.join(tmp, stem + ".c")
        with open(src, "w", encoding="utf-8") as f:
            f.write(source)
        lib = os.path.join(tmp, stem + ".so")
        base = [cc, "-O3", "-std=gnu99", "-fPIC", "-shared", *flags, src, "-o", lib, "-lm"]
        errors = []
        # -march=native lets vector code use the widest units of this CPU; some compilers (or
        # targets) reject it, and the portable build still beats PyTorch's per-operator calls.
        for extra in (["-march=native"], []):
            proc = subprocess.run(base[:1] + extra + base[1:], capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(lib, path)
                return
            errors.append(proc.stderr.strip()[-2000:])
        raise RuntimeError("C compilation failed:\n" + "\n---\n".join(errors))


def build_library(cc: str, source: str, stem: str, flags: Sequence[str] = ()) -> ctypes.CDLL:
    """Compile (or reuse the cached build of) ``source`` and load it. ``stem`` names the file
    (``<stem>-<key>.so``). Raises OSError, RuntimeError or SubprocessError on failure."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256("\0".join([source, " ".join(flags), cc, version, cpu_signature()]).encode())
    name = f"{stem}-{key.hexdigest()[:16]}.so"
    path = os.path.join(cache_dir(), name)
    if not os.path.exists(path):
        try:
            _compile(cc, source, stem, flags, path)
        except OSError:
            # an unwritable cache (read-only home, no $HOME): build in the temp dir instead
            path = os.path.join(temp_cache_dir(), name)
            if not os.path.exists(path):
                _compile(cc, source, stem, flags, path)
    return ctypes.CDLL(path)
