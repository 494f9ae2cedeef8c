"""Synthesis: text -> wav, mel -> wav, and ground-truth-aligned (GTA) mel dumps.

Usage:
  synthesis.py [options] --tacotron2=CKPT (--text=TEXT | --text-file=FILE) <out_dir>
  synthesis.py [options] --tacotron2=CKPT --gta --data-root=DIR
  synthesis.py [options] <wavenet_checkpoint> <out_dir> (--conditional=MEL | --mel-list=FILE)
  synthesis.py -h | --help

Text to speech (first form): each text becomes <name>.wav, its mel <name>.npy (frames, num_mels),
and the attention alignment <name>_alignment.npy / .png. The vocoder is the WaveNet given by
the --wavenet option, else Griffin-Lim. Japanese and Mandarin text go through the checkpoint's
own front-end.

GTA (second form): runs the Tacotron-2 teacher-forced over the data dir's lists and writes
DIR/gta/<utt_id>.npy, frame-for-frame aligned with DIR/audio, to train the WaveNet on.

Vocoder only (third form): any mel .npy in the data-dir layout (from preprocessing, Tacotron-2
or GTA) through a WaveNet checkpoint.

Options:
  --tacotron2=CKPT         Tacotron-2 checkpoint (a training run's or tacowave-convert's).
  --wavenet=CKPT           WaveNet checkpoint used as the vocoder for text input.
  --griffin-lim            Use Griffin-Lim even when --wavenet is given (fast preview).
  --text=TEXT              One text to speak (written as <out_dir>/<--name>.wav).
  --text-file=FILE         One text per line, "name|text" or plain text (named line_0001, ...).
                           Lines starting with # are ignored.
  --name=NAME              Output name for --text [default: synthesis].
  --conditional=MEL        A mel .npy, shape (frames, num_mels), to vocode.
  --mel-list=FILE          A file with one mel .npy path per line, vocoded as one batch.
  --speaker=SPEAKER        Speaker name or index for multi-speaker models.
  --seed=N                 Seed for sampling and pre-net dropout (repeatable output) [default: 1234].
  --max-decoder-steps=N    Stop Tacotron-2 after this many decoder steps (default: the preset's).
  --gl-iters=N             Griffin-Lim iterations (default: the preset's).
  --gl-power=P             Power the magnitudes are raised to before Griffin-Lim (default: the
                           checkpoint's audio section; lower is gentler sharpening).
  --edge-silence=S         Seconds of silence before and after each text's speech [default: 0.15].
  --sentence-pause=S       Seconds of silence between the sentences of a long text (texts over
                           200 characters are decoded sentence by sentence) [default: 0.3].
  --gta                    Dump ground-truth-aligned mels for a data dir (needs --data-root).
  --data-root=DIR          Data dir written by preprocess.py (for --gta).
  --lists=NAMES            Comma-separated lists of the data dir for --gta [default: train,dev,eval].
  --batch-size=N           Utterances per batch for --gta and text input [default: 8].
  --no-ema                 Use the raw weights instead of the EMA weights a run kept.
  --device=DEVICE          auto, cpu, cuda, cuda:N or mps [default: auto].
  -h, --help               Show this help.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Sequence

PROG = "synthesis.py"


def main(argv: Sequence[str] | None = None) -> int:
    from tacowave.cli.common import parse_args, run_main

    args = parse_args(__doc__, argv, PROG)
    return run_main(lambda: _run(args), PROG)


def _run(args: dict[str, Any]) -> int:
    from tacowave.cli.common import UserError, float_option, int_option
    from tacowave.synthesizer import SynthesisError, Synthesizer
    from tacowave.training.checkpoint import CheckpointError

    seed = int_option(args, "--seed")
    try:
        if args["--gta"]:
            return _gta(args, int_option(args, "--batch-size", 1))
        wavenet = args["<wavenet_checkpoint>"] or args["--wavenet"]
        if args["--griffin-lim"] and args["<wavenet_checkpoint>"]:
            raise UserError("--griffin-lim applies to text input; the third form vocodes with WaveNet")
        tts = Synthesizer(tacotron2=args["--tacotron2"],
                          wavenet=None if args["--griffin-lim"] else wavenet,
                          device=args["--device"], use_ema=not args["--no-ema"], seed=seed,
                          griffin_lim_iters=int_option(args, "--gl-iters", 1),
                          griffin_lim_power=float_option(args, "--gl-power", 0.1),
                          edge_silence_s=float_option(args, "--edge-silence", 0.0),
                          sentence_pause_s=float_option(args, "--sentence-pause", 0.0))
        if args["<wavenet_checkpoint>"]:
            return _vocode_mels(tts, args)
        return _speak_texts(tts, args, int_option(args, "--batch-size", 1),
                            int_option(args, "--max-decoder-steps", 1))
    except (SynthesisError, CheckpointError, ValueError) as e:
        raise UserError(str(e)) from None


# --------------------------------------------------------------------------- inputs


def read_text_file(path: str) -> list[tuple[str, str]]:
    """``name|text`` or plain lines -> [(name, text)]; names must be unique and file-safe."""
    from tacowave.cli.common import UserError

    if not os.path.isfile(path):
        raise UserError(f"text file not found: {path}")
    items: list[tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, text = line.partition("|")
            if not sep:
                name, text = f"line_{number:04d}", line
            name = name.strip()
            if not name or "/" in name or name.startswith("."):
                raise UserError(f"{path}:{number}: bad output name {name!r}")
            items.append((name, text.strip()))
    names = [n for n, _ in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{path}: duplicate names {', '.join(duplicates)}")
    if not items:
        raise UserError(f"{path} holds no text lines")
    return items


def _load_mel(path: str):
    import numpy as np

    from tacowave.cli.common import UserError

    if not os.path.isfile(path):
        raise UserError(f"mel file not found: {path}")
    try:
        return np.load(path)
    except Exception as e:  # numpy raises ValueError/OSError/pickle errors by cause
        raise UserError(f"{path} is not a readable .npy mel: {e}") from None


# --------------------------------------------------------------------------- the three forms


def _speak_texts(tts, args: dict[str, Any], batch_size: int, max_steps: int | None) -> int:
    from tacowave import audio

    out_dir = args["<out_dir>"]
    if args["--text"] is not None:
        items = [(args["--name"], args["--text"])]
    else:
        items = read_text_file(args["--text-file"])
    os.makedirs(out_dir, exist_ok=True)
    vocoder = "Griffin-Lim" if tts.wavenet is None else "WaveNet"
    total_audio = total_compute = 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        t0 = time.perf_counter()
        results = tts.text_to_mel([t for _, t in chunk], args["--speaker"], max_steps)
        t_mel = time.perf_counter() - t0
        wavs = tts.vocode([r.mel for r in results], args["--speaker"], progress=_rtf_bar(tts.sample_rate))
        compute = time.perf_counter() - t0
        for (name, _), result, wav in zip(chunk, results, wavs):
            base = os.path.join(out_dir, name)
            audio.save_wav(wav, base + ".wav", tts.sample_rate)
            audio.save_npy(result.mel, base + ".npy")
            alignment = _block_diagonal(result.alignments)
            audio.save_npy(alignment, base + "_alignment.npy")
            save_alignment_png(alignment, base + "_alignment.png", title=name)
            stops = ", ".join(result.stop_reasons)
            print(f"{name}: {len(wav) / tts.sample_rate:.2f} s, {result.mel.shape[0]} frames, "
                  f"stop: {stops}")
        seconds = sum(len(w) for w in wavs) / tts.sample_rate
        total_audio += seconds
        total_compute += compute
        print(f"  batch of {len(chunk)}: Tacotron-2 {t_mel:.1f} s, {vocoder} {compute - t_mel:.1f} s "
              f"for {seconds:.1f} s of audio")
    print(f"wrote {len(items)} utterance(s) to {out_dir}; real-time factor "
          f"(compute s / audio s) {total_compute / max(total_audio, 1e-9):.3f}")
    return 0


def _vocode_mels(tts, args: dict[str, Any]) -> int:
    from tacowave import audio
    from tacowave.cli.common import UserError

    if args["--conditional"]:
        paths = [args["--conditional"]]
    else:
        list_file = args["--mel-list"]
        if not os.path.isfile(list_file):
            raise UserError(f"mel list not found: {list_file}")
        with open(list_file, encoding="utf-8") as f:
            paths = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        if not paths:
            raise UserError(f"{list_file} lists no mel files")
    mels = [tts.check_mel(_load_mel(p), p) for p in paths]
    os.makedirs(args["<out_dir>"], exist_ok=True)
    t0 = time.perf_counter()
    wavs = tts.vocode(mels, args["--speaker"], progress=_rtf_bar(tts.sample_rate))
    compute = time.perf_counter() - t0
    seconds = sum(len(w) for w in wavs) / tts.sample_rate
    for path, wav in zip(paths, wavs):
        out = os.path.join(args["<out_dir>"], os.path.splitext(os.path.basename(path))[0] + ".wav")
        audio.save_wav(wav, out, tts.sample_rate)
        print(out)
    print(f"vocoded {len(wavs)} mel(s), {seconds:.2f} s of audio in {compute:.1f} s "
          f"(real-time factor {compute / max(seconds, 1e-9):.2f})")
    return 0


def _gta(args: dict[str, Any], batch_size: int) -> int:
    from tacotron2.gta import dump_gta
    from tacowave.cli.common import UserError
    from tacowave.synthesizer import load_model
    from tacowave.training.device import select_device

    if not args["--data-root"]:
        raise UserError("--gta needs --data-root")
    device = select_device(args["--device"])
    loaded = load_model(args["--tacotron2"], "tacotron2", device, use_ema=not args["--no-ema"])
    lists = [name.strip() for name in args["--lists"].split(",") if name.strip()]
    written = dump_gta(loaded, args["--data-root"], lists, batch_size=batch_size, device=device)
    print(f"wrote {written} GTA mel(s) to {os.path.join(args['--data-root'], 'gta')}")
    return 0


# --------------------------------------------------------------------------- helpers


def _block_diagonal(alignments):
    """Per-sentence alignments (S_i, N_i) -> one (sum S, sum N) matrix for a whole text."""
    import numpy as np

    if len(alignments) == 1:
        return alignments[0]
    out = np.zeros((sum(a.shape[0] for a in alignments), sum(a.shape[1] for a in alignments)),
                   dtype=np.float32)
    r = c = 0
    for a in alignments:
        out[r:r + a.shape[0], c:c + a.shape[1]] = a
        r, c = r + a.shape[0], c + a.shape[1]
    return out


def save_alignment_png(alignment, path: str, title: str = "") -> None:
    """Encoder steps (y) against decoder steps (x), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tacowave.audio import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    im = ax.imshow(alignment.T, aspect="auto", origin="lower", interpolation="none")
    fig.colorbar(im, ax=ax)
    ax.set_xlabel("decoder step")
    ax.set_ylabel("encoder step")
    ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _rtf_bar(sample_rate: int):
    """A tqdm factory for WaveNet generation that shows the live real-time factor."""
    from tqdm import tqdm

    class RTFBar(tqdm):
        def update(self, n: int = 1) -> bool | None:
            out = super().update(n)
            rate = self.format_dict.get("rate")
            if rate:
                self.set_postfix_str(f"RTF {sample_rate / rate:.2f}", refresh=False)
            return out

    def factory(**kwargs: Any) -> tqdm:
        kwargs.setdefault("unit", "sample")
        kwargs.setdefault("unit_scale", True)
        kwargs.setdefault("file", sys.stderr)
        kwargs.setdefault("desc", "WaveNet")
        return RTFBar(**kwargs)

    return factory


if __name__ == "__main__":
    raise SystemExit(main())
