"""Convert a third-party checkpoint into a tacowave checkpoint.

Usage:
  tacowave-convert nvidia-tacotron2 [--force] [--quiet] <checkpoint> <output>
  tacowave-convert -h | --help

Converters:
  nvidia-tacotron2  An NVIDIA/tacotron2 checkpoint (their published tacotron2_statedict.pt
                    or one of their training checkpoints; the optimizer state is dropped)
                    -> a tacowave Tacotron-2 checkpoint with their feature definition
                    (22.05 kHz, n_fft/win 1024, hop 256, 80 mels 0-8000 Hz, natural log,
                    see presets/ljspeech_nvidia.json), their English symbol set (text
                    front-end english_nvidia) and one speaker. Only checkpoints trained
                    with n_frames_per_step=1 (their only supported value) convert.

Arguments:
  <checkpoint>  the checkpoint to read. It is loaded with torch.load(weights_only=True):
                tensors and plain containers only, never arbitrary pickled code.
  <output>      the tacowave checkpoint to write; written to a temporary file in the same
                directory, then renamed, so it is never left half-written.

Options:
  --force       overwrite <output> if it already exists.
  -q --quiet    print nothing on success.
  -h --help     show this help.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from tacowave.cli.common import UserError, parse_args, run_main

PROG = "tacowave-convert"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, argv, PROG)

    def body() -> int:
        from tacotron2.convert_nvidia import ConversionError, convert_nvidia_tacotron2

        src, dst = args["<checkpoint>"], args["<output>"]
        if os.path.exists(dst) and not args["--force"]:
            raise UserError(f"{dst} exists; pass --force to overwrite it")
        if os.path.abspath(src) == os.path.abspath(dst):
            raise UserError(f"{dst}: the output must not overwrite the input")
        out_dir = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(out_dir):
            raise UserError(f"{dst}: directory {out_dir} does not exist")
        try:
            checkpoint = convert_nvidia_tacotron2(src, dst)
        except ConversionError as e:
            raise UserError(f"{src}: {e}") from None
        except OSError as e:
            raise UserError(f"{dst}: cannot write ({e.strerror or e})") from None
        if not args["--quiet"]:
            n_params = sum(t.numel() for k, t in checkpoint["model"].items()
                           if t.is_floating_point() and "running_" not in k)
            print(f"{dst}: tacotron2, {n_params / 1e6:.1f} M parameters, "
                  f"{len(checkpoint['symbols'])} symbols (front-end english_nvidia), "
                  f"audio {checkpoint['hparams']['audio']['sample_rate']} Hz / "
                  f"{checkpoint['hparams']['audio']['num_mels']} mels")
        return 0

    return run_main(body, PROG)


if __name__ == "__main__":
    sys.exit(main())
