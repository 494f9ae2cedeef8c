#!/usr/bin/env python
"""Preprocess a corpus into a tacowave data dir; see ``python preprocess.py --help``."""
import sys

from tacowave.cli.preprocess import main

if __name__ == "__main__":
    sys.exit(main())
