#!/usr/bin/env python
"""Preprocessing throughput: seconds of audio per second of wall time, and peak memory.

Builds (once, cached) an LJSpeech-layout corpus of flite ``slt`` speech at 22.05 kHz with at
least ``--minutes`` of audio, then runs ``preprocess.py ljspeech`` on it into a fresh out_dir,
end to end as a user would (interpreter start, worker start-up and the final lists included).
Two more runs with one worker (all work in the CLI process, so its CPU time is fully
counted), on the whole corpus and on its first two utterances, split the CPU cost into a fixed
start-up part (interpreter, librosa and front-end imports) and a per-second-of-audio part.
Those CPU figures hardly move with other load on the machine, unlike wall time, and give the
projection for idle cores: start-up CPU + audio / (cores x audio per CPU second).

Memory is sampled from /proc every 50 ms over the whole process tree (the CLI, the fork server,
the workers): the peak of the summed RSS (shared pages counted once per process, so an upper
bound) and the largest single process. The machine's load average is printed too: on a shared
machine it explains most of the spread of the wall-time figures.

usage: python benchmarks/preprocess_throughput.py [--minutes=10] [--num-workers=N] [--cache-dir=DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import soundfile as sf

from tacowave.features import default_num_workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Clauses combined pairwise into varied sentences of a few seconds each.
CLAUSES = [
    "The committee met again on Tuesday morning",
    "a long line of carts waited by the river",
    "nobody could explain why the bells had stopped",
    "she wrote the figures down in a small blue notebook",
    "the printer set each letter by hand",
    "after the storm the roads were closed for a week",
    "his brother kept the accounts with great care",
    "the old bridge was finally repaired last spring",
    "several witnesses described the same tall stranger",
    "the library opened its doors at nine",
    "we walked along the harbour until it grew dark",
    "the report was read aloud to the whole assembly",
    "a cold wind came down from the northern hills",
    "the children sang while the teacher played the piano",
    "each page was checked twice before it went to press",
    "the train from the coast arrived an hour late",
    "the garden behind the house was full of roses",
    "the clerk could not find the missing letter",
    "they argued about the price for most of the afternoon",
    "the lamp on the desk flickered and went out",
    "the merchants gathered in the square at noon",
    "a small boat drifted slowly toward the shore",
    "the judge asked the witness to speak more clearly",
    "the soldiers marched past the cathedral in silence",
]


def build_corpus(base: str, minutes: float) -> tuple[str, float]:
    """``base/LJSpeech-1.1`` with at least ``minutes`` of speech; returns (dir, seconds)."""
    corpus = os.path.join(base, "LJSpeech-1.1")
    wavs = os.path.join(corpus, "wavs")
    os.makedirs(wavs, exist_ok=True)
    lines, total, k = [], 0.0, 0
    while total < minutes * 60:
        first, second = CLAUSES[k % len(CLAUSES)], CLAUSES[(7 * k + 3) % len(CLAUSES)]
        text = f"{first}, and {second}."
        text = text[0].upper() + text[1:]
        k += 1
        utt_id = f"LJ900-{k:04d}"
        path = os.path.join(wavs, utt_id + ".wav")
        if not os.path.exists(path):
            tmp = os.path.join(wavs, ".flite.wav")
            subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", tmp], check=True)
            subprocess.run(["sox", tmp, "-b", "16", "-r", "22050", path], check=True)
            os.unlink(tmp)
        total += sf.info(path).duration
        lines.append(f"{utt_id}|{text}|{text}\n")
    with open(os.path.join(corpus, "metadata.csv"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    return corpus, total


def tiny_copy(corpus: str, base: str, n: int = 2) -> tuple[str, float]:
    """An LJSpeech layout with the first ``n`` utterances of ``corpus`` (wavs linked, not copied)."""
    tiny = os.path.join(base, "LJSpeech-1.1")
    shutil.rmtree(tiny, ignore_errors=True)
    os.makedirs(os.path.join(tiny, "wavs"))
    with open(os.path.join(corpus, "metadata.csv"), encoding="utf-8") as f:
        lines = [next(f) for _ in range(n)]
    with open(os.path.join(tiny, "metadata.csv"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    seconds = 0.0
    for line in lines:
        name = line.split("|", 1)[0] + ".wav"
        os.symlink(os.path.join(corpus, "wavs", name), os.path.join(tiny, "wavs", name))
        seconds += sf.info(os.path.join(corpus, "wavs", name)).duration
    return tiny, seconds


def _tree_rss(root_pid: int) -> tuple[int, int]:
    """(sum, max) resident set size in bytes of ``root_pid`` and all its descendants."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    # The command name may hold spaces; fields resume after its closing ')'.
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parent.items() if p == pid and c not in tree]
        tree.update(children)
        frontier += children
    page = os.sysconf("SC_PAGE_SIZE")
    sizes = []
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as f:
                sizes.append(int(f.read().split()[1]) * page)
        except (OSError, IndexError, ValueError):
            continue
    return sum(sizes), max(sizes, default=0)


def run_preprocess(corpus: str, out_dir: str, num_workers: int | None) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak summed RSS and peak single-process RSS of one preprocess.py
    run. The CPU time counts the CLI process and only the descendants it waited for (not the
    fork server's workers), so it is complete with one worker only."""
    cmd = [sys.executable, os.path.join(ROOT, "preprocess.py"), "ljspeech", corpus, out_dir]
    if num_workers:
        cmd.append(f"--num-workers={num_workers}")
    peak_sum = peak_one = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_sum, peak_one
        while not done.is_set():
            total, one = _tree_rss(proc.pid)
            peak_sum, peak_one = max(peak_sum, total), max(peak_one, one)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    if sys.platform.startswith("linux"):
        sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    done.set()
    if proc.returncode != 0:
        raise SystemExit(f"preprocess.py failed with exit code {proc.returncode}:\n{out}")
    print(out.strip())
    return wall, cpu, peak_sum, peak_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio in the corpus (default 10)")
    parser.add_argument("--num-workers", type=int, default=None, help="default: preprocess.py's (all cores)")
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "tacowave-bench"),
                        help="where the generated corpus is kept between runs")
    args = parser.parse_args()
    load = os.getloadavg()

    corpus, seconds = build_corpus(os.path.join(args.cache_dir, f"flite-slt-{args.minutes:g}min"), args.minutes)
    tiny, tiny_seconds = tiny_copy(corpus, os.path.join(args.cache_dir, "tiny"))
    n_utts = sum(1 for _ in open(os.path.join(corpus, "metadata.csv"), encoding="utf-8"))
    out_dir = tempfile.mkdtemp(prefix="tacowave-bench-out-")
    try:
        wall, _, peak_sum, peak_one = run_preprocess(corpus, os.path.join(out_dir, "full"), args.num_workers)
        _, fixed_cpu, _, _ = run_preprocess(tiny, os.path.join(out_dir, "tiny1"), 1)
        _, one_cpu, _, _ = run_preprocess(corpus, os.path.join(out_dir, "full1"), 1)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    cores = args.num_workers or default_num_workers()
    per_cpu = (seconds - tiny_seconds) / max(one_cpu - fixed_cpu, 1e-6)
    print(f"corpus: {n_utts} utterances, {seconds:.1f} s of input audio ({corpus})")
    print(f"workers: {cores}{'' if args.num_workers else ' (default: all cores)'}, "
          f"load average before: {' '.join(f'{x:.1f}' for x in load)}")
    print(f"end to end: {wall:.2f} s wall = {seconds / wall:.1f}x real time "
          f"(interpreter and worker start-up included)")
    if peak_sum:
        print(f"peak memory: {peak_sum / 2**20:.0f} MiB summed RSS over the process tree, "
              f"largest process {peak_one / 2**20:.0f} MiB")
    print(f"CPU: {fixed_cpu:.2f} s fixed start-up, then {per_cpu:.0f} s of audio per CPU second "
          f"(one worker, {one_cpu:.2f} s CPU for the whole corpus)")
    projected = fixed_cpu + seconds / (cores * per_cpu)
    print(f"projection on {cores} idle cores: {projected:.1f} s wall = {seconds / projected:.0f}x real time "
          f"for this corpus; {cores * per_cpu:.0f}x once running")


if __name__ == "__main__":
    main()
