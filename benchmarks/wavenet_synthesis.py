"""WaveNet synthesis speed: plain PyTorch incremental generation vs the compiled fast path.

Prints samples generated per second (aggregate over the batch) at batch 1 and batch 16 on the
reference configuration (24 layers / 4 stacks, residual 128, gate 256, skip 128, kernel 3,
80 mel bins, upsampling x256, mixture of logistics). The weights and mels are random: speed
does not depend on what the network has learned. Targets (2 CPU cores): >= 2,500 samples/s
at batch 1, >= 10,000 samples/s aggregate at batch 16.

    python benchmarks/wavenet_synthesis.py [--seconds 0.5] [--repeats 2] [--threads N]
    python benchmarks/wavenet_synthesis.py --device cuda     # the CUDA-graph path on a GPU

The machine's load average is printed before and after: on a shared machine the numbers
vary from run to run; the best of the repeats is the least disturbed one. "samples per
CPU-second" divides by the CPU time this process actually got, and "cores used" says how
much of the machine that was.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch

from tacowave.hparams import WaveNetConfig
from wavenet_vocoder import build_wavenet, generate
from wavenet_vocoder.fast_generation import load_library
from wavenet_vocoder.generation import ROWS_PER_THREAD, available_cores
from wavenet_vocoder.mixture import StepNoise
from machine_info import cpu_model

SAMPLE_RATE = 22050


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def measure(model: torch.nn.Module, batch: int, frames: int, fast: bool, repeats: int,
            threads: int | None, device: torch.device) -> tuple[list[float], list[float]]:
    """``repeats`` runs generating ``batch`` utterances of ``frames`` frames.

    Returns the aggregate samples per wall-clock second and per CPU-second of this process
    (all its threads) of each run; their ratio is the number of cores the run actually got.
    """
    mels = [torch.rand(model.cfg.cin_channels, frames, device=device) for _ in range(batch)]
    rates, cpu_rates = [], []
    for r in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        wavs = generate(model, mels, seed=r, fast=fast, threads=threads)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        n = sum(len(w) for w in wavs)
        rates.append(n / elapsed)
        cpu_rates.append(n / max(cpu, 1e-9))
    return rates, cpu_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.5, help="audio per utterance, fast path, batch 1")
    parser.add_argument("--batch-seconds", type=float, default=0.25, help="audio per utterance, fast path, batch 16")
    parser.add_argument("--naive-frames", type=int, default=2, help="frames (x256 samples) per utterance, naive path")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="fast-path threads (default: automatic)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: the CUDA-graph path (batches 1, 16, 128)")
    args = parser.parse_args()
    if args.device != "cpu":
        return main_gpu(args)

    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {cpu_model()}, nproc {os.cpu_count()}, usable cores {available_cores()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"load average before: {load()}")
    torch.manual_seed(0)
    cfg = WaveNetConfig()  # the reference configuration (defaults)
    model = build_wavenet(cfg).eval()
    model.remove_weight_norm()
    print(f"model: {cfg.layers} layers / {cfg.stacks} stacks, residual {cfg.residual_channels}, gate "
          f"{cfg.gate_channels}, skip {cfg.skip_out_channels}, kernel {cfg.kernel_size}, {cfg.cin_channels} mels, "
          f"upsampling x{model.hop_size}, {cfg.output_distribution} output; random weights")

    start = time.perf_counter()
    lib = load_library()
    print(f"compiled loop: {'ready' if lib else 'UNAVAILABLE'} ({time.perf_counter() - start:.1f} s to build/load)")

    hop = model.hop_size
    rows = []
    for batch, fast, frames in ((1, False, args.naive_frames), (16, False, max(1, args.naive_frames // 2)),
                                (1, True, max(1, round(args.seconds * SAMPLE_RATE / hop))),
                                (16, True, max(1, round(args.batch_seconds * SAMPLE_RATE / hop)))):
        if fast and lib is None:
            continue
        rates, cpu_rates = measure(model, batch, frames, fast, 1 if not fast else args.repeats, args.threads,
                                   torch.device("cpu"))
        name = "fast " if fast else "naive"
        rows.append((name, batch, rates))
        threads = args.threads or min(available_cores(), max(1, batch // ROWS_PER_THREAD))
        how = f"{threads} thread(s)" if fast else "PyTorch, 1 thread"
        best = rates.index(max(rates))
        print(f"{name} batch {batch:2d}: {rates[best]:9,.0f} samples/s best, {statistics.median(rates):9,.0f} median "
              f"({how}, {frames * hop} samples per utterance, {len(rates)} run(s)); real-time factor "
              f"{SAMPLE_RATE / rates[best]:.2f}; {cpu_rates[best]:,.0f} samples per CPU-second "
              f"(cores used {cpu_rates[best] and rates[best] / cpu_rates[best]:.2f})", flush=True)
    for batch in (1, 16):
        naive = [max(r) for n, b, r in rows if b == batch and n == "naive"]
        fast = [max(r) for n, b, r in rows if b == batch and n == "fast "]
        if naive and fast:
            print(f"speed-up at batch {batch}: {fast[0] / naive[0]:.0f}x")
    print(f"load average after: {load()}")


def main_gpu(args: argparse.Namespace) -> None:
    """The same model on a GPU: the plain PyTorch loop against chunks replayed as CUDA graphs.

    Each fast measurement includes recording the graph (once per call of ``generate``), which
    is reported on its own first.
    """
    from wavenet_vocoder.graph_generation import DEFAULT_CHUNK, GraphWaveNet

    device = torch.device(args.device)
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {torch.cuda.get_device_name(device)}; host {cpu_model()}, torch {torch.__version__}")
    torch.manual_seed(0)
    cfg = WaveNetConfig()
    model = build_wavenet(cfg).eval().to(device)
    model.remove_weight_norm()
    hop = model.hop_size
    for batch in (1, 16):
        start = time.perf_counter()
        GraphWaveNet(model).run(None, None, 1, batch, StepNoise(cfg, batch, 0))
        torch.cuda.synchronize(device)
        print(f"recording one {DEFAULT_CHUNK}-step graph at batch {batch}: "
              f"{time.perf_counter() - start:.2f} s", flush=True)
    rows = []
    for batch, fast, seconds in ((1, False, None), (16, False, None), (1, True, args.seconds),
                                 (16, True, args.batch_seconds), (128, True, args.batch_seconds)):
        frames = args.naive_frames if seconds is None else max(1, round(seconds * SAMPLE_RATE / hop))
        rates, _ = measure(model, batch, frames, fast, args.repeats if fast else 1, None, device)
        name = "graph" if fast else "naive"
        rows.append((name, batch, max(rates)))
        print(f"{name} batch {batch:3d}: {max(rates):11,.0f} samples/s best of {len(rates)} "
              f"({frames * hop} samples per utterance); real-time factor {SAMPLE_RATE / max(rates):.3f}", flush=True)
    for batch in (1, 16):
        naive = [r for n, b, r in rows if b == batch and n == "naive"]
        fast = [r for n, b, r in rows if b == batch and n == "graph"]
        if naive and fast:
            print(f"speed-up at batch {batch}: {fast[0] / naive[0]:.0f}x")


if __name__ == "__main__":
    main()
