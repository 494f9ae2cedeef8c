"""Tacotron-2 training and inference speed: the fast decoder against the straightforward loop.

Run as ``python benchmarks/tacotron2_speed.py``.

Usage:
  tacotron2_speed.py [options]

Options:
  --threads=<n>     torch intra-op threads [default: 2].
  --batch=<n>       training batch size [default: 4].
  --symbols=<n>     input symbols per utterance [default: 100].
  --frames=<n>      mel frames per utterance (= decoder steps at r = 1) [default: 400].
  --repeats=<n>     timed repetitions per measurement; the median is reported [default: 3].
  --small           a tiny model instead of NVIDIA's sizes (a smoke run of this script).
  --preset=<file>   the model and loss of this preset instead of NVIDIA's sizes, e.g.
                    presets/demo.json (with --batch=16 --symbols=60 --frames=300: a demo step).
  --device=<d>      cpu or cuda [default: cpu].
  -h --help         show this help.

Threads: under concurrent load, OpenMP threads spinning at barriers make 2 threads far slower
than 1 (and ``OMP_WAIT_POLICY=PASSIVE`` helps); measure both when the machine is shared.

Both paths run the same model, weights and math (NVIDIA/tacotron2's default sizes, r = 1):
"naive" is ``reference_decoder_forward`` (NVIDIA's code structure: nn.LSTMCell calls on
concatenated inputs, per-step projections, per-step weight-gradient accumulation), "fast" is
``Decoder``. Training is timed three ways: naive, "autograd" (``Decoder`` with
``use_fused_decoder`` off) and, on a CPU, "fused" (teacher forcing through the compiled step
kernels of ``tacotron2/fused_decoder.py``, the default wherever they build) or, on a GPU,
"graphed" (the loop replayed as CUDA graphs, ``tacotron2.cuda_graph_decoder``). A training step
is forward + loss + backward + Adam step; inference decodes a fixed number of steps (the stop
token is disabled) and runs the post-net. Inference on a CPU is timed three ways too: naive,
"pytorch step" (``Decoder._step``) and fast (the compiled synthesis step of
``tacotron2/fast_inference.py``, the default wherever it builds). Frames/s count mel
frames (batch x frames). On a CPU the last lines bound batch-1 inference by memory bandwidth:
each decoder step reads nearly all the decoder's weights, so frames/s cannot exceed the
machine's read rate (measured in the same run) divided by the bytes a step reads. Nothing here
is asserted: numbers depend on the machine and its load.
"""
from __future__ import annotations

import datetime
import os
import statistics
import sys
import time

import torch
from docopt import docopt

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tacowave.hparams import Tacotron2Config, TrainTacotron2Config, load_hparams  # noqa: E402
from tacotron2 import fast_inference  # noqa: E402
from tacotron2.fused_decoder import load_library as load_fused_library  # noqa: E402
from tacotron2.graphed_decoder import GraphedDecoderLoop  # noqa: E402
from tacotron2.loss import Tacotron2Loss  # noqa: E402
from tacotron2.model import ON_CTX, Tacotron2, build_tacotron2, reference_decoder_forward  # noqa: E402
from machine_info import cpu_model  # noqa: E402

N_SYMBOLS, N_MELS = 148, 80


def _interleaved(fns, repeats: int, device: torch.device) -> list[float]:
    """Median seconds of each callable in ``fns``, timed in turn so that a change in the machine's
    load hits all alike; one untimed warm-up call each (allocator, kernel choice, compilation)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def training_step(model: Tacotron2, path: str, batch: int, n_symbols: int, n_frames: int,
                  loss_cfg: TrainTacotron2Config | None = None):
    """A callable doing one training step: forward + loss + backward + Adam update. ``path``:
    "naive" (the reference loop), "autograd" (Decoder without the compiled kernels), "fused" (CPU)
    or "graphed" (CUDA: the teacher-forced loop replayed as CUDA graphs, recorded in the first
    call, which the timing leaves out)."""
    graphed = GraphedDecoderLoop(model.decoder) if path == "graphed" else None
    gen = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    text = torch.randint(1, N_SYMBOLS, (batch, n_symbols), generator=gen).to(device)
    text_lengths = torch.full((batch,), n_symbols, device=device)
    mels = torch.randn(batch, n_frames, N_MELS, generator=gen).to(device)
    mel_lengths = torch.full((batch,), n_frames, device=device)
    criterion = Tacotron2Loss(loss_cfg or TrainTacotron2Config(), model.r)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step():
        model.train()
        model.decoder.use_fused_decoder = path == "fused"
        model.decoder._graphed = graphed
        optimizer.zero_grad(set_to_none=True)
        if path == "naive":  # the model's forward with the decoder swapped for the reference loop
            memory = model.encode(text, text_lengths)
            mel, gate, align = reference_decoder_forward(model.decoder, memory, text_lengths, mels)
            outputs = (mel, mel + model.postnet(mel, mel_lengths), gate, align)
        else:
            outputs = model(text, text_lengths, mels, mel_lengths)
        loss, _ = criterion(outputs, mels, mel_lengths, text_lengths)
        loss.backward()
        optimizer.step()

    return step


def inference_run(model: Tacotron2, naive: bool, batch: int, n_symbols: int, n_frames: int,
                  compiled_step: bool = True):
    """A callable synthesising ``batch`` utterances of exactly ``n_frames`` frames (no stop token);
    ``compiled_step=False`` keeps the pass on the PyTorch step."""
    text = torch.randint(1, N_SYMBOLS, (batch, n_symbols), generator=torch.Generator().manual_seed(1))
    text = text.to(next(model.parameters()).device)
    steps = -(-n_frames // model.r)

    def run():
        model.eval()
        with torch.no_grad():
            if naive:
                memory = model.encode(text)
                mel, _, _ = reference_decoder_forward(model.decoder, memory, None, None,
                                                      max_steps=steps, gate_threshold=2.0)
                mel + model.postnet(mel)
            else:  # a threshold above 1 never fires
                load = fast_inference.load_library
                fast_inference.load_library = load if compiled_step else lambda: None
                try:
                    results = model.inference_batch(text, max_decoder_steps=steps, gate_threshold=2.0)
                finally:
                    fast_inference.load_library = load
                assert results[0].n_frames == steps * model.r

    return run


def per_step_weight_bytes(model: Tacotron2, n_symbols: int) -> int:
    """Bytes the fast path reads per batch-1 free-running decoder step: the whole decoder except
    the encoder-memory projection, which runs once per utterance; where the decoder projects the
    memory through the context matrices (``Decoder._constants`` decides), the projected rows
    replace those matrices."""
    dec = model.decoder
    once = {id(p) for p in dec.attention.memory.parameters()}
    total = sum(p.numel() * p.element_size() for p in dec.parameters() if id(p) not in once)
    with torch.no_grad():
        k = dec._constants(torch.zeros(1, n_symbols, dec.memory_dim), None, free_running=True)
    if k.projected_memory is not None:
        stack = k.mats.weights[ON_CTX]
        total += (k.projected_memory.numel() - stack.numel()) * stack.element_size()
    return total


def read_bandwidth(n_bytes: int, repeats: int) -> tuple[float, float]:
    """Bytes/s of (a) summing a float32 tensor of 4 x ``n_bytes`` or 256 MB, whichever is larger
    (no cache holds it), and (b) a vector-matrix product with a contiguous (in, out) matrix of
    ``n_bytes``, the layout and access pattern of batch-1 decoding; medians of ``repeats``."""
    big = torch.ones(max(4 * n_bytes, 1 << 28) // 4)
    side = int((n_bytes // 4) ** 0.5)
    mat, vec = torch.ones(side, side), torch.ones(side)
    t_sum, t_gemv = _interleaved([big.sum, lambda: vec @ mat], repeats, torch.device("cpu"))
    return big.numel() * 4 / t_sum, mat.numel() * 4 / t_gemv


def main(argv: list[str] | None = None) -> None:
    args = docopt(__doc__, argv=argv)
    threads, batch = int(args["--threads"]), int(args["--batch"])
    n_symbols, n_frames, repeats = int(args["--symbols"]), int(args["--frames"]), int(args["--repeats"])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg, loss_cfg, model_label = Tacotron2Config(), None, "NVIDIA default sizes"
    if args["--preset"]:
        hp = load_hparams(args["--preset"])
        cfg, loss_cfg, model_label = hp.tacotron2, hp.train_tacotron2, f"preset {args['--preset']}"
    elif args["--small"]:
        model_label = "small"
        cfg = Tacotron2Config(symbols_embedding_dim=64, encoder_embedding_dim=64, attention_rnn_dim=128,
                              attention_dim=32, prenet_dim=64, decoder_rnn_dim=128, postnet_embedding_dim=64)
    device = torch.device(args["--device"])
    model = build_tacotron2(cfg, N_SYMBOLS, N_MELS).to(device)

    print(f"# Tacotron-2 speed  {datetime.datetime.now().isoformat(timespec='seconds')}")
    if device.type == "cuda":
        print(f"# device: {torch.cuda.get_device_name(device)}")
    print(f"# machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{threads} thread(s), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"# model: {model_label}, r = {cfg.n_frames_per_step}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters; "
          f"{n_symbols} symbols, {n_frames} frames; median of {repeats}")
    rows = []
    paths = ["naive", "autograd"]
    if device.type == "cuda":
        paths.append("graphed")
    elif load_fused_library():
        paths.append("fused")
    times = _interleaved([training_step(model, path, batch, n_symbols, n_frames, loss_cfg) for path in paths],
                         repeats, device)
    rates = [batch * n_frames / t for t in times]
    print(f"{'training':<20} batch {batch}:  naive {rates[0]:7.1f} frames/s   " + "   ".join(
        f"{path} {rate:7.1f} frames/s (ratio {rate / rates[0]:4.2f}x)" for path, rate in zip(paths[1:], rates[1:])),
        flush=True)
    rows.append(("training", batch, rates[0], rates[-1]))
    for name, b in (("inference", 1), (f"inference, batch {batch}", batch)):
        runs = [inference_run(model, True, b, n_symbols, n_frames), inference_run(model, False, b, n_symbols, n_frames)]
        compiled = device.type == "cpu" and fast_inference.load_library() is not None
        if compiled:
            runs.append(inference_run(model, False, b, n_symbols, n_frames, compiled_step=False))
        times = _interleaved(runs, repeats, device)
        naive, fast = b * n_frames / times[0], b * n_frames / times[1]
        rows.append((name, b, naive, fast))
        step = ""
        if compiled:
            torch_step = b * n_frames / times[2]
            step = f"   (pytorch step {torch_step:7.1f} frames/s: compiled step {fast / torch_step:4.2f}x)"
        print(f"{name:<20} batch {b}:  naive {naive:7.1f} frames/s   fast {fast:7.1f} frames/s   "
              f"ratio {fast / naive:5.2f}x{step}", flush=True)
    print(f"# batched inference throughput vs naive batch-1 inference: "
          f"{rows[2][3] / rows[1][2]:.2f}x")
    if device.type == "cpu":
        # At batch 1 every step streams the decoder's weights from memory (they do not fit in the
        # caches at NVIDIA's size), so memory bandwidth caps frames/s whatever the code does. The
        # machine's bandwidth drifts between runs; compare the ratios printed in one run.
        n_bytes = per_step_weight_bytes(model, n_symbols)
        summing, gemv = read_bandwidth(n_bytes, repeats)
        fast = rows[1][3]
        for label, rate in (("streaming read (sum)", summing), ("PyTorch vector-matrix product", gemv)):
            ceiling = rate / n_bytes * cfg.n_frames_per_step
            print(f"# batch-1 ceiling at the {label} rate, {rate / 1e9:.1f} GB/s over "
                  f"{n_bytes / 1e6:.1f} MB read per decoder step: {ceiling:.0f} frames/s; "
                  f"fast reaches {fast / ceiling:.0%}")
    print(f"# load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
