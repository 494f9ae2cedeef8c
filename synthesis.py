#!/usr/bin/env python
"""Synthesis: text -> wav (Tacotron-2 + WaveNet or Griffin-Lim), mel -> wav, and GTA mel dumps."""
from tacowave.cli.synthesis import main

if __name__ == "__main__":
    raise SystemExit(main())
