"""Every command: --help documents its options and exits 0; a bad flag is one line and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)

# (top-level script or None, console script, options its --help must document)
COMMANDS = [
    ("preprocess.py", "tacowave-preprocess", ["--preset", "--num-workers", "--overwrite"]),
    ("train.py", "tacowave-train", ["--preset", "--model", "--data-root", "--checkpoint-dir",
                                    "--resume", "--init-from"]),
    ("synthesis.py", "tacowave-synthesis", ["--tacotron2", "--wavenet", "--conditional", "--text"]),
    ("evaluate.py", "tacowave-evaluate", ["--out"]),
    (None, "tacowave-convert", ["nvidia-tacotron2"]),
]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _invocations():
    for script, console, options in COMMANDS:
        if script:
            yield pytest.param([sys.executable, os.path.join(ROOT, script)], options, id=script)
        yield pytest.param([os.path.join(BIN, console)], options, id=console)


@pytest.mark.parametrize("argv, options", list(_invocations()))
def test_help_documents_options_and_exits_zero(argv, options):
    proc = _run(argv + ["--help"])
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout.lower()
    for option in options:
        assert option in proc.stdout, f"{option} missing from {argv[-1]} --help"


@pytest.mark.parametrize("argv, options", list(_invocations()))
def test_bad_flag_is_one_line_and_exit_two(argv, options):
    proc = _run(argv + ["--no-such-flag"])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--help" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_option_is_declared_twice_in_any_help_text():
    """docopt reads any help line starting with '-' as an option; a prose line that does so
    declares the option twice and silently breaks parsing of it."""
    from docopt import parse_defaults

    from tacowave.cli import convert, evaluate, preprocess, synthesis, train

    for module in (convert, evaluate, preprocess, synthesis, train):
        names = [o.long or o.short for o in parse_defaults(module.__doc__)]
        assert len(names) == len(set(names)), (module.__name__, names)
