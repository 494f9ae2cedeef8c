#!/usr/bin/env python
"""Evaluation: MCD, F0 RMSE, V/UV error, attention metrics and WER of synthesised speech."""
from tacowave.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
