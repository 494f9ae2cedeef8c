"""Objective evaluation of synthesised speech against reference recordings.

Pairs <synth_dir>/<name>.wav with <ref_dir>/<name>.wav and reports per utterance, then the
mean ± std over utterances (population std, as ESPnet):

  MCD         mel-cepstral distortion in dB after DTW, the ESPnet / ParallelWaveGAN recipe
              (pysptk mcep on Hamming-windowed int16-scaled frames, etype=1, eps=1e-6;
              fastdtw with the Euclidean distance); c0 included unless --no-c0.
  MCD-noDTW   the same on frame-aligned frames truncated to the shorter side (diagnostic).
  F0RMSE      log-F0 RMSE in cents over frames voiced in both (pyworld harvest), frames
              aligned by the MCD's DTW path.
  VUV         fraction of path frames whose voiced/unvoiced decisions differ.
  dur         duration ratio of the speech: synthesised / reference seconds, each with its
              leading and trailing silence (quieter than 40 dB below the peak) cut as
              preprocessing cuts training audio; for Tacotron-2 output, how close to the
              reference length it stopped.
  focus diag mono
              attention focus rate, diagonality (mass within +-10% of T_enc of the
              straight diagonal) and monotonicity of the alignments (T_dec, T_enc).
  WER WERref  pocketsphinx (bundled US-English model, offline) word error rate on the
              synthesised and on the reference audio, against the transcript in its
              spoken form (numbers, ordinals, years, currency and abbreviations spelled
              out as the English front-ends speak them: "45" -> "forty five"). Both sides
              are heard framed alike: edge audio quieter than 40 dB below the loudest
              20 ms cut, then 0.25 s of silence added at each end, because the recogniser
              drops first words of audio that starts at once (references cut to their speech:
              17.2% instead of 9.4%). The corpus WER (all errors / all reference words) is
              printed below the table.
  WERgl       with --griffin-lim-ceiling: the WER of each reference re-synthesised from its
              own mel (analysed as preprocessing does, inverted as synthesis.py does):
              what a perfect acoustic model would score through Griffin-Lim, so WER - WERgl
              is roughly the acoustic model's share of the gap and WERgl - WERref the
              vocoder's.

Usage:
  evaluate.py [options] <synth_dir> <ref_dir>
  evaluate.py -h | --help

Options:
  --sample-rate=HZ     Resample both sides to HZ (default: each reference's own rate).
  --alignments=DIR     Directory of <name>_alignment.npy (as synthesis.py writes them) or
                       <name>.npy attention matrices, shape (T_dec, T_enc).
  --texts=FILE         Transcripts for WER: "name|text" lines, or a data dir's eval.txt
                       ("utt_id|speaker|n_samples|n_frames|text|phones").
  --wer                Transcribe with pocketsphinx and report WER (needs --texts).
  --griffin-lim-ceiling=PRESET
                       Also score the references through their own mels and Griffin-Lim with
                       PRESET's audio settings (a preset name or JSON file; needs --wer).
  --frame-length=N     Mel-cepstrum analysis frame in samples [default: 1024].
  --frame-shift=N      Frame shift in samples, also harvest's frame period [default: 256].
  --mcep-order=N       Mel-cepstrum order (default by rate: 16 kHz 23, 22.05/24 kHz 34,
                       44.1/48 kHz 39).
  --mcep-alpha=A       All-pass constant (default by rate: 16 kHz 0.42, 22.05 kHz 0.45,
                       24 kHz 0.46, 44.1 kHz 0.53, 48 kHz 0.55).
  --no-c0              Leave c0 (log gain) out of the MCD.
  --dtw-radius=N       fastdtw search radius [default: 1].
  --no-f0              Skip F0 RMSE and V/UV error (harvest is the slowest step).
  --f0-min=HZ          Lowest F0 harvest searches [default: 40].
  --f0-max=HZ          Highest F0 harvest searches [default: 800].
  --out=FILE           Also write settings, per-utterance results and the summary as JSON.
  -h --help            Show this help.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from tacowave.cli.common import UserError, float_option, int_option, parse_args, run_main

PROG = "evaluate.py"
# Table columns: (JSON key, header, format).
_COLUMNS = [
    ("mcd_db", "MCD", "{:.3f}"),
    ("mcd_no_dtw_db", "MCD-noDTW", "{:.3f}"),
    ("f0_rmse_cents", "F0RMSE", "{:.1f}"),
    ("vuv_error", "VUV", "{:.3f}"),
    ("duration_ratio", "dur", "{:.2f}"),
    ("focus_rate", "focus", "{:.3f}"),
    ("diagonality", "diag", "{:.3f}"),
    ("monotonicity", "mono", "{:.3f}"),
    ("wer", "WER", "{:.3f}"),
    ("wer_ref", "WERref", "{:.3f}"),
    ("wer_gl", "WERgl", "{:.3f}"),
]
_LIST_LIMIT = 10


def _wavs(directory: str, what: str) -> dict[str, str]:
    if not os.path.isdir(directory):
        raise UserError(f"{what} directory not found: {directory}")
    return {name[:-4]: os.path.join(directory, name) for name in sorted(os.listdir(directory))
            if name.endswith(".wav") and os.path.isfile(os.path.join(directory, name))}


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LIST_LIMIT else "")


def _read_texts(path: str) -> dict[str, str]:
    """``name|text`` or ``utt_id|speaker|n_samples|n_frames|text|phones`` lines -> {name: text}."""
    if not os.path.isfile(path):
        raise UserError(f"texts file not found: {path}")
    texts: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("|")
            if len(fields) == 2:
                name, text = fields
            elif len(fields) == 6:
                name, text = fields[0], fields[4]
            else:
                raise UserError(f"{path}:{number}: expected 'name|text' or a data-dir line with 6 "
                                f"'|'-separated fields, got {len(fields)} fields")
            texts[name.strip()] = text.strip()
    return texts


def _load_alignment(path: str) -> Any:
    import numpy as np

    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read alignment {path}: {e}") from None
    # A saved batch of one, (1, T_dec, T_enc), is common.
    return a[0] if a.ndim == 3 and a.shape[0] == 1 else a


def _json_value(value: Any) -> Any:
    """NaN / inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _summary(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Mean and population std of every table metric over the utterances where it is finite."""
    import numpy as np

    out: dict[str, dict[str, float | int | None]] = {}
    for key, _, _ in _COLUMNS:
        values = [r[key] for r in rows.values() if isinstance(r.get(key), (int, float))
                  and math.isfinite(r[key])]
        if values:
            out[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    return fmt.format(value) if math.isfinite(value) else "nan"


def _print_table(rows: dict[str, dict[str, Any]], summary: dict[str, dict[str, Any]]) -> None:
    columns = [c for c in _COLUMNS if c[0] in summary or any(r.get(c[0]) is not None for r in rows.values())]
    lines = [[n] + [_cell(r.get(k), fmt) for k, _, fmt in columns] for n, r in rows.items()]
    stats = [[stat] + [fmt.format(summary[k][stat]) if k in summary else "-" for k, _, fmt in columns]
             for stat in ("mean", "std")]
    header = ["utterance"] + [h for _, h, _ in columns]
    widths = [max(len(row[i]) for row in [header] + stats + lines) for i in range(len(header))]

    def fmt_row(row: list[str]) -> str:
        return "  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])

    print(fmt_row(header))
    print("-" * len(fmt_row(header)))
    for row in lines:
        print(fmt_row(row))
    print("-" * len(fmt_row(header)))
    for row in stats:
        print(fmt_row(row))


@dataclass(frozen=True)
class _Options:
    sample_rate: int | None
    frame_length: int
    frame_shift: int
    order: int | None
    alpha: float | None
    include_c0: bool
    dtw_radius: int
    with_f0: bool
    f0_floor: float
    f0_ceil: float

    def settings(self) -> dict[str, Any]:
        """The analysis settings as written to the JSON report."""
        return {
            "sample_rate": self.sample_rate or "each reference's rate",
            "frame_length": self.frame_length, "frame_shift": self.frame_shift,
            "mcep_order": "by sample rate" if self.order is None else self.order,
            "mcep_alpha": "by sample rate" if self.alpha is None else self.alpha,
            "include_c0": self.include_c0,
            "dtw": f"fastdtw, Euclidean distance on all mel-cepstral coefficients, radius {self.dtw_radius}",
            "f0": {"method": "pyworld.harvest", "f0_min": self.f0_floor, "f0_max": self.f0_ceil}
            if self.with_f0 else None,
            "units": {"mcd_db": "dB", "f0_rmse_cents": "cents", "log_f0_rmse": "natural-log Hz",
                      "vuv_error": "fraction of path frames", "duration_ratio": "synthesised / reference seconds of speech (edge silence cut)",
                      "wer": "fraction"},
            "std": "population (ddof=0) over utterances",
        }


def _parse_options(args: dict[str, Any]) -> _Options:
    opts = _Options(
        sample_rate=int_option(args, "--sample-rate", minimum=1),
        frame_length=int_option(args, "--frame-length", minimum=1),
        frame_shift=int_option(args, "--frame-shift", minimum=1),
        order=int_option(args, "--mcep-order", minimum=1),
        alpha=float_option(args, "--mcep-alpha"),
        include_c0=not args["--no-c0"],
        dtw_radius=int_option(args, "--dtw-radius", minimum=0),
        with_f0=not args["--no-f0"],
        f0_floor=float_option(args, "--f0-min"),
        f0_ceil=float_option(args, "--f0-max"),
    )
    if opts.with_f0 and not 0 < opts.f0_floor < opts.f0_ceil:
        raise UserError(f"need 0 < --f0-min < --f0-max, got {opts.f0_floor} and {opts.f0_ceil}")
    if opts.alpha is not None and not -1 < opts.alpha < 1:
        raise UserError(f"--mcep-alpha must be in (-1, 1), got {opts.alpha}")
    return opts


def _load_pair(synth_path: str, ref_path: str, opts: _Options) -> tuple[Any, Any, int]:
    """Both waveforms at the analysis rate: --sample-rate, else the reference's own rate."""
    import soundfile as sf

    from tacowave.audio import AudioError, load_wav
    from tacowave.metrics import MCEP_PARAMS

    try:
        rate = opts.sample_rate or sf.info(ref_path).samplerate
        # A rate without defaults is a settings problem for every pair: stop, don't skip.
        if (opts.order is None or opts.alpha is None) and rate not in MCEP_PARAMS:
            raise UserError(f"no default mel-cepstrum order/alpha for {rate} Hz ({ref_path}); give "
                            f"--sample-rate={'|'.join(map(str, MCEP_PARAMS))} or --mcep-order and --mcep-alpha")
        return load_wav(synth_path, rate), load_wav(ref_path, rate), rate
    except (AudioError, RuntimeError) as e:  # soundfile raises RuntimeError on a non-audio file
        raise UserError(str(e)) from None


_WER_LABELS = {"wer": "synthesised", "wer_ref": "reference",
               "wer_gl": "reference through its mel and Griffin-Lim"}


def _griffin_lim_settings(preset: str | None, wer: bool) -> Any:
    """The AudioConfig of --griffin-lim-ceiling's preset, or None without the option."""
    if preset is None:
        return None
    if not wer:
        raise UserError("--griffin-lim-ceiling scores WER: give --wer (and --texts) too")
    from tacowave.hparams import HParamsError, load_hparams

    try:
        return load_hparams(preset).audio
    except HParamsError as e:
        raise UserError(f"--griffin-lim-ceiling: {e}") from None


def _through_griffin_lim(ref_path: str, cfg: Any) -> tuple[Any, int]:
    """The reference as a Griffin-Lim voice would render its mel: read at the preset's rate,
    analysed as preprocessing does, inverted as synthesis.py does."""
    from tacowave.audio import AudioError, inv_melspectrogram, load_training_wav, melspectrogram

    try:
        wav = load_training_wav(ref_path, cfg)
    except (AudioError, RuntimeError) as e:
        raise UserError(str(e)) from None
    return inv_melspectrogram(melspectrogram(wav, cfg), cfg), cfg.sample_rate


def _speech_seconds(wav: Any, rate: int) -> float:
    """Seconds between the first and last sound, trimmed as training audio is (AudioConfig's
    trim_top_db / frame / hop defaults, the hop scaled to this rate)."""
    from tacowave.audio import trim_silence
    from tacowave.hparams import AudioConfig

    hop = max(1, round(AudioConfig.trim_hop_length * rate / 22050))
    cfg = AudioConfig(sample_rate=rate, trim_hop_length=hop, trim_frame_length=4 * hop)
    return len(trim_silence(wav, cfg)) / rate


def _body(args: dict[str, Any]) -> int:
    import dataclasses

    from tqdm import tqdm

    from tacowave.asr import Recognizer, normalize_text, spoken_reference, word_errors
    from tacowave.audio import atomic_write
    from tacowave.metrics import MetricError, attention_metrics, compare_waveforms

    synth = _wavs(args["<synth_dir>"], "synthesised-speech")
    ref = _wavs(args["<ref_dir>"], "reference")
    opts = _parse_options(args)
    align_dir = args["--alignments"]
    if align_dir is not None and not os.path.isdir(align_dir):
        raise UserError(f"alignments directory not found: {align_dir}")
    texts = _read_texts(args["--texts"]) if args["--texts"] else None
    if args["--wer"] and texts is None:
        raise UserError("--wer needs --texts=FILE with the reference transcripts")
    if texts is not None and not args["--wer"]:
        sys.stderr.write(f"{PROG}: note: --texts given without --wer; WER is not computed\n")
    ceiling = _griffin_lim_settings(args["--griffin-lim-ceiling"], args["--wer"])

    pairs = [n for n in synth if n in ref]
    skipped: dict[str, Any] = {"no_reference": [n for n in synth if n not in ref],
                               "no_synthesis": [n for n in ref if n not in synth]}
    if not pairs:
        raise UserError(f"no <name>.wav is in both {args['<synth_dir>']} ({len(synth)} wavs) and "
                        f"{args['<ref_dir>']} ({len(ref)} wavs)")
    for key, what in (("no_reference", "no reference"), ("no_synthesis", "no synthesised speech")):
        if skipped[key]:
            sys.stderr.write(f"{PROG}: skipped {len(skipped[key])} with {what}: {_names(skipped[key])}\n")
    try:
        recognizer = Recognizer() if args["--wer"] else None
    except ImportError as e:
        raise UserError(str(e)) from None
    skipped.update(no_alignment=[], no_text=[], failed={})

    rows: dict[str, dict[str, Any]] = {}
    errors = {"wer": [0, 0], "wer_ref": [0, 0]}  # [edit errors, reference words]
    if ceiling is not None:
        errors["wer_gl"] = [0, 0]
    warned_spoken = False
    for name in tqdm(pairs, desc="evaluate", unit="utt", disable=None):
        wav_s, wav_r, rate = _load_pair(synth[name], ref[name], opts)
        try:
            m = compare_waveforms(wav_s, wav_r, rate, frame_length=opts.frame_length,
                                  frame_shift=opts.frame_shift, order=opts.order, alpha=opts.alpha,
                                  include_c0=opts.include_c0, dtw_radius=opts.dtw_radius, f0=opts.with_f0,
                                  f0_floor=opts.f0_floor, f0_ceil=opts.f0_ceil)
        except MetricError as e:
            skipped["failed"][name] = str(e)
            continue
        except ImportError as e:
            raise UserError(str(e)) from None
        row: dict[str, Any] = {"sample_rate": rate, **dataclasses.asdict(m),
                               "duration_ratio": _speech_seconds(wav_s, rate) / max(_speech_seconds(wav_r, rate), 1e-9)}
        if align_dir is not None:
            # synthesis.py writes <name>_alignment.npy beside the mel <name>.npy; a folder of
            # bare <name>.npy alignment matrices works too.
            path = os.path.join(align_dir, name + "_alignment.npy")
            if not os.path.isfile(path):
                path = os.path.join(align_dir, name + ".npy")
            if os.path.isfile(path):
                try:
                    row.update(attention_metrics(_load_alignment(path)))
                except MetricError as e:
                    raise UserError(f"{path}: {e}") from None
            else:
                skipped["no_alignment"].append(name)
        if recognizer is not None and name not in texts:
            skipped["no_text"].append(name)
        elif recognizer is not None:
            row["text"] = texts[name]
            try:
                row["text_spoken"] = spoken_reference(texts[name])
            except ImportError as e:
                if not warned_spoken:
                    sys.stderr.write(f"{PROG}: warning: numbers in transcripts stay digits: {e}\n")
                    warned_spoken = True
                row["text_spoken"] = normalize_text(texts[name])
            heard = [("wer", "hypothesis", wav_s, rate), ("wer_ref", "hypothesis_ref", wav_r, rate)]
            if ceiling is not None:
                heard.append(("wer_gl", "hypothesis_gl", *_through_griffin_lim(ref[name], ceiling)))
            for key, hyp_key, wav, wav_rate in heard:
                row[hyp_key] = recognizer.transcribe(wav, wav_rate)
                counts = word_errors(row["text_spoken"], row[hyp_key])
                if counts.reference_words:
                    row[key] = counts.wer
                    errors[key][0] += counts.errors
                    errors[key][1] += counts.reference_words
        rows[name] = row

    for key, what in (("no_alignment", "alignment"), ("no_text", "text")):
        if skipped[key]:
            sys.stderr.write(f"{PROG}: no {what} for {len(skipped[key])}: {_names(skipped[key])}\n")
    for name, reason in skipped["failed"].items():
        sys.stderr.write(f"{PROG}: skipped {name}: {reason}\n")
    if not rows:
        raise UserError("no utterance could be evaluated (see the reasons above)")

    summary = _summary(rows)
    corpus_wer = {k: e / n for k, (e, n) in errors.items() if n}
    analyses = sorted({(r["sample_rate"], r["order"], r["alpha"]) for r in rows.values()})
    print(f"{len(rows)} utterances; MCD in dB with c0 {'included' if opts.include_c0 else 'excluded'}, "
          + ", ".join(f"{sr} Hz mcep order {o} alpha {a}" for sr, o, a in analyses)
          + f", fastdtw radius {opts.dtw_radius}"
          + (f"; F0 RMSE in cents (harvest {opts.f0_floor:g}-{opts.f0_ceil:g} Hz)" if opts.with_f0 else ""))
    _print_table(rows, summary)
    if corpus_wer:
        print("corpus WER (errors / reference words): "
              + ", ".join(f"{_WER_LABELS[k]} {100 * v:.1f}% "
                          f"({errors[k][0]}/{errors[k][1]})" for k, v in corpus_wer.items()))

    if args["--out"]:
        result = {
            "settings": {**opts.settings(), "griffin_lim_ceiling": args["--griffin-lim-ceiling"]},
            "utterances": {n: {k: _json_value(v) for k, v in r.items()} for n, r in rows.items()},
            "summary": {**summary, **({"corpus_wer": corpus_wer} if corpus_wer else {})},
            "skipped": skipped,
        }
        text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)

        atomic_write(args["--out"], write)
        print(f"wrote {args['--out']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``tacowave-evaluate`` / ``python evaluate.py``."""
    args = parse_args(__doc__, argv, PROG)
    return run_main(lambda: _body(args), PROG)
