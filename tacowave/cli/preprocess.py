"""Turn a corpus into a tacowave data dir (mels, waveforms, train/dev/eval lists, meta.json).

usage: preprocess.py [options] <corpus> <in_dir> <out_dir>
       preprocess.py -h | --help

Corpora (<corpus>, and what <in_dir> is):
  ljspeech     LJSpeech-1.1 (metadata.csv + wavs/), or its parent
  cmu_arctic   the folder holding cmu_us_<spk>_arctic/ (or one of those)
  jsut         jsut_ver1.1 (<subset>/wav + transcript_utf8.txt), or its parent
  thchs30      data_thchs30 (data/ + the official train/ dev/ test/), or its parent
  folder       any folder of audio plus metadata.csv, 'file|text' or 'file|speaker|text'

Writes <out_dir>/meta.json, train.txt, dev.txt and eval.txt (utt_id|speaker|n_samples|n_frames|
text|phones), audio/<utt_id>.npy and mel/<utt_id>.npy. Utterances that cannot be used are listed
with the reason in skipped.txt, characters the text front-end dropped in unknown_chars.txt.
A rerun resumes: utterances whose arrays are complete are kept as they are. A rerun with another
audio section is refused unless --overwrite is given.

options:
  --preset=<p>          Preset name or JSON path. Default: the corpus's own (presets/<corpus>.json);
                        the folder corpus has none and needs one, e.g. --preset=demo.
  --hparams=<list>      Overrides on top of the preset: "audio.max_duration_s=15,...".
  --num-workers=<n>     Worker processes (default: the number of CPU cores).
  --speakers=<list>     cmu_arctic, folder: comma-separated speakers, e.g. awb,slt (default: all).
  --subsets=<list>      jsut: comma-separated subsets, e.g. basic5000 (default: all found).
  --dev-fraction=<f>    Share of utterances held out for validation: 0.05 unless given, at most
                        100 and at least 1 once there are 3 utterances. Not for thchs30, whose
                        official split is used.
  --eval-fraction=<f>   The same for the final-evaluation list (default 0.05).
  --dev-count=<n>       Exact number of dev utterances (instead of --dev-fraction).
  --eval-count=<n>      Exact number of eval utterances (instead of --eval-fraction).
  --seed=<n>            Seed of the dev/eval draw (same input + seed = same lists) [default: 1234].
  --overwrite           Recompute every utterance instead of resuming.
  -h --help             Show this help.
"""
from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Sequence

from tacowave.cli.common import UserError, float_option, int_option, parse_args, run_main

PROG = "preprocess.py"


def _split_spec(args: dict[str, Any], official: bool, corpus: str) -> Any:
    from tacowave.features import SplitSpec

    given = {"dev_fraction": float_option(args, "--dev-fraction", minimum=0.0, below=1.0),
             "eval_fraction": float_option(args, "--eval-fraction", minimum=0.0, below=1.0),
             "dev_count": int_option(args, "--dev-count", minimum=0),
             "eval_count": int_option(args, "--eval-count", minimum=0)}
    given = {key: value for key, value in given.items() if value is not None}
    if official and given:
        raise UserError(f"the {corpus} corpus has an official train/dev/eval split; "
                        f"--{next(iter(given)).replace('_', '-')} does not apply")
    return SplitSpec(seed=int_option(args, "--seed"), **given)


def _report(summary: Any, frontend: str) -> None:
    lists = summary.lists
    total = sum(summary.seconds.values())
    print(f"{PROG}: wrote {summary.out_dir}: {len(lists['train'])} train / {len(lists['dev'])} dev / "
          f"{len(lists['eval'])} eval utterances, {total:.1f} s of audio "
          f"({summary.computed} computed, {summary.reused} already done)")
    if summary.skipped:
        reasons = Counter(o.skip[0].value for o in summary.skipped)
        print(f"{PROG}: skipped {len(summary.skipped)} utterance(s) ("
              + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
              + f"); see {summary.out_dir}/skipped.txt")
    if summary.unknown:
        chars = Counter(ch for items in summary.unknown.values() for _, ch in items)
        print(f"{PROG}: the {frontend} front-end dropped unknown characters in {len(summary.unknown)} "
              f"utterance(s): " + ", ".join(f"{ch!r} x{n}" for ch, n in chars.most_common(20))
              + f"; see {summary.out_dir}/unknown_chars.txt")


def _body(argv: Sequence[str] | None) -> int:
    args = parse_args(__doc__, argv, PROG)
    from tacowave.corpora import CorpusError, get_corpus, open_corpus
    from tacowave.features import PreprocessError, preprocess
    from tacowave.hparams import load_hparams

    name = args["<corpus>"]
    try:
        cls = get_corpus(name)
        preset = args["--preset"] or cls.preset
        if preset is None:
            raise UserError(f"the {name} corpus has no preset of its own; pass --preset=<name or path> "
                            f"(e.g. --preset=demo for English at 16 kHz)")
        hp = load_hparams(preset, args["--hparams"] or "")
        num_workers = int_option(args, "--num-workers", minimum=1)
        corpus = open_corpus(name, args["<in_dir>"], speakers=args["--speakers"], subsets=args["--subsets"])
        split = _split_spec(args, cls.official_split, name)
        summary = preprocess(corpus, args["<out_dir>"], hp, preset=preset, num_workers=num_workers,
                             overwrite=bool(args["--overwrite"]), split=split,
                             progress=True)
    except (CorpusError, PreprocessError) as e:
        raise UserError(str(e)) from None
    _report(summary, hp.text.frontend)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``tacowave-preprocess``; returns the exit code."""
    return run_main(lambda: _body(argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
