#!/usr/bin/env python
"""Train a model: ``python train.py --help`` (see tacowave/cli/train.py)."""
import sys

from tacowave.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
