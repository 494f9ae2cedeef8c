"""What every CLI shares: docopt parsing with clean usage errors, and user-error reporting.

Conventions (DESIGN.md): a usage error prints one line and exits 2; an error the user caused
(bad path, bad preset, corrupt file) prints one ``error: ...`` line and exits 1; never a traceback.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from docopt import DocoptExit, docopt


class UserError(Exception):
    """An error the user can fix; the CLI prints its message alone and exits 1."""


def parse_args(doc: str, argv: Sequence[str] | None, prog: str) -> dict[str, Any]:
    """docopt, but a usage error is one line on stderr and exit code 2 (``--help`` exits 0)."""
    try:
        return docopt(doc, argv=list(sys.argv[1:] if argv is None else argv))
    except DocoptExit:
        sys.stderr.write(f"{prog}: invalid usage; run '{prog} --help' for the options\n")
        raise SystemExit(2) from None


def run_main(body: Callable[[], int | None], prog: str) -> int:
    """Run a CLI body, turning known user errors into one line and a non-zero exit."""
    from tacowave.hparams import HParamsError  # local: keep --help fast

    try:
        return int(body() or 0)
    except (UserError, HParamsError, FileNotFoundError) as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130


def int_option(args: dict[str, Any], name: str, minimum: int | None = None) -> int | None:
    """Parse an integer option (None when absent); a bad value is a usage error naming it."""
    value = args.get(name)
    if value is None:
        return None
    try:
        out = int(value)
    except ValueError:
        raise UserError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and out < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {out}")
    return out


def float_option(args: dict[str, Any], name: str, minimum: float | None = None,
                 below: float | None = None) -> float | None:
    """Parse a finite float option (None when absent) within ``[minimum, below)``; a bad
    value is one error naming the option."""
    import math

    value = args.get(name)
    if value is None:
        return None
    try:
        out = float(value)
    except ValueError:
        raise UserError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise UserError(f"{name} must be finite, got {value!r}")
    if minimum is not None and out < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {out}")
    if below is not None and out >= below:
        raise UserError(f"{name} must be < {below}, got {out}")
    return out
