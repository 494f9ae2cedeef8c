"""Tacotron-2 model, loss and inference on tiny configurations (CPU, a few seconds in all)."""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from tacowave.hparams import Tacotron2Config, TrainTacotron2Config
from tacotron2 import Tacotron2Loss, build_tacotron2
from tacotron2.layers import dropout
from tacotron2.fused_decoder import dropout_multipliers
from tacotron2.fused_decoder import load_library as load_fused_library
from tacotron2 import fast_inference
from tacotron2.model import frame_dropout, reference_decoder_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_SYMBOLS, N_MELS = 12, 6


def tiny_cfg(**overrides) -> Tacotron2Config:
    base = dict(symbols_embedding_dim=16, encoder_embedding_dim=16, attention_rnn_dim=24, attention_dim=8,
                attention_location_n_filters=4, attention_location_kernel_size=5, prenet_dim=12,
                decoder_rnn_dim=20, postnet_embedding_dim=16, postnet_n_convolutions=3, max_decoder_steps=40)
    base.update(overrides)
    return Tacotron2Config(**base)


def tiny_model(seed: int = 0, n_speakers: int = 1, **overrides):
    torch.manual_seed(seed)
    return build_tacotron2(tiny_cfg(**overrides), N_SYMBOLS, N_MELS, n_speakers)


def batch(seed: int = 0, text_lengths=(7, 4), mel_lengths=(11, 6)):
    gen = torch.Generator().manual_seed(seed)
    b = len(text_lengths)
    text = torch.randint(1, N_SYMBOLS, (b, max(text_lengths)), generator=gen)
    mels = torch.randn(b, max(mel_lengths), N_MELS, generator=gen)
    tl, ml = torch.tensor(text_lengths), torch.tensor(mel_lengths)
    for i in range(b):  # conventional padding: id 0, zero frames
        text[i, tl[i]:] = 0
        mels[i, ml[i]:] = 0
    return text, tl, mels, ml


# --------------------------------------------------------------------------- shapes & masking


@pytest.mark.parametrize("r", [1, 2, 3])
def test_teacher_forced_shapes_and_padding_values(r):
    model = tiny_model(n_frames_per_step=r)
    text, tl, mels, ml = batch(mel_lengths=(10, 5))  # 10 frames: not a multiple of 3 or 4
    out = model(text, tl, mels, ml)
    assert out.mel_outputs.shape == out.mel_outputs_postnet.shape == (2, 10, N_MELS)
    assert out.gate_outputs.shape == (2, 10)
    assert out.alignments.shape == (2, math.ceil(10 / r), 7)
    assert torch.all(out.mel_outputs_postnet[1, 5:] == 0) and torch.all(out.gate_outputs[1, 5:] == 1e3)
    # Attention rows are distributions over the valid characters only.
    torch.testing.assert_close(out.alignments.sum(2), torch.ones(2, math.ceil(10 / r)))
    assert torch.all(out.alignments[1, :, 4:] == 0)


def test_padding_does_not_change_valid_outputs_or_loss():
    model = tiny_model(prenet_dropout=0.0).eval()  # eval + no pre-net dropout: deterministic
    text, tl, mels, ml = batch()
    criterion = Tacotron2Loss(TrainTacotron2Config(guided_attention_weight=2.0), 1)
    out = model(text, tl, mels, ml)
    loss, parts = criterion(out, mels, ml, tl)

    # Garbage in the padding, and more of it.
    text2 = torch.cat((text, torch.randint(1, N_SYMBOLS, (2, 3))), 1)
    text2[1, 4:] = torch.randint(1, N_SYMBOLS, (text2.shape[1] - 4,))
    mels2 = torch.cat((mels, torch.randn(2, 4, N_MELS)), 1)
    mels2[1, 6:] = torch.randn(mels2.shape[1] - 6, N_MELS)
    out2 = model(text2, tl, mels2, ml)
    loss2, parts2 = criterion(out2, mels2, ml, tl)
    torch.testing.assert_close(loss2, loss)
    for key in parts:
        torch.testing.assert_close(parts2[key], parts[key])
    for i, (n, t) in enumerate(zip(tl.tolist(), ml.tolist())):
        torch.testing.assert_close(out2.mel_outputs_postnet[i, :t], out.mel_outputs_postnet[i, :t])
        torch.testing.assert_close(out2.gate_outputs[i, :t], out.gate_outputs[i, :t])
        # ... and equal to the utterance alone, unpadded.
        alone = model(text[i:i + 1, :n], tl[i:i + 1], mels[i:i + 1, :t], ml[i:i + 1])
        torch.testing.assert_close(alone.mel_outputs_postnet[0], out.mel_outputs_postnet[i, :t])
        torch.testing.assert_close(alone.alignments[0], out.alignments[i, :t, :n])


def test_cpu_encoder_on_a_padded_batch_equals_the_packed_lstm():
    """The CPU encoder runs its backward direction over each sequence reversed within its length
    instead of packing: outputs, padding zeros and every gradient must match PyTorch's packed
    bidirectional LSTM over the same convolution outputs."""
    model = tiny_model(encoder_n_convolutions=1, encoder_dropout=0.0).train()
    encoder = model.encoder
    lengths = torch.tensor([5, 9, 1, 7])  # unsorted, one a single symbol, the longest not first
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 9, encoder.lstm.input_size, generator=gen)
    x[0, 5:] = 100.0  # garbage padding must not reach the valid outputs either way
    out = encoder(x, lengths)

    conv_out = encoder.convolutions[0](x.transpose(1, 2),
                                       (torch.arange(9)[None, :] < lengths[:, None])[:, None, :].float())
    packed = torch.nn.utils.rnn.pack_padded_sequence(conv_out.transpose(1, 2), lengths,
                                                     batch_first=True, enforce_sorted=False)
    reference = torch.nn.utils.rnn.pad_packed_sequence(encoder.lstm(packed)[0], batch_first=True,
                                                       total_length=9)[0]
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    assert float(out.detach()[2, 1:].abs().max()) == 0.0 and float(out.detach()[0, 5:].abs().max()) == 0.0
    # The backward direction at a sequence's first symbol has read the whole sequence: changing
    # its last real symbol moves it, changing padding does not.
    half = encoder.lstm.hidden_size
    nudged = x.clone()
    nudged[3, 6] += 1.0
    assert float((encoder(nudged, lengths)[3, 0, half:] - out[3, 0, half:]).abs().max()) > 1e-4

    weights = list(encoder.parameters())
    target = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad((out * target).sum(), weights)
    ref_grads = torch.autograd.grad((reference * target).sum(), weights)
    for (name, _), g, ref in zip(encoder.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5, msg=name)


# --------------------------------------------------------------------------- fast == reference


def _assert_same_grads(model, grads_a, grads_b):
    for (name, _), ga, gb in zip(model.decoder.named_parameters(), grads_a, grads_b):
        assert (ga is None) == (gb is None), name
        if ga is not None:
            torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5, msg=name)


def _weighted_sum(outputs):
    """A loss that gives every output element its own gradient (fixed random weights)."""
    return sum((o * torch.randn(o.shape, generator=torch.Generator().manual_seed(i)).to(o.device)).sum()
               for i, o in enumerate(outputs))


def _index_weighted_sum(outputs):
    return sum((o * (i + 1)).sum() for i, o in enumerate(outputs))


def _run_backward(model, fn, memory, loss_of):
    """Outputs of ``fn(memory copy)``, the decoder's parameter gradients and d(memory)."""
    model.zero_grad()
    mem = memory.clone().requires_grad_()
    outputs = fn(mem)
    loss_of(outputs).backward()
    return outputs, [None if p.grad is None else p.grad.clone() for p in model.decoder.parameters()], mem.grad


def _assert_same_runs(model, run_a, run_b, rtol, atol, mem_rtol, mem_atol):
    (out_a, grads_a, mem_a), (out_b, grads_b, mem_b) = run_a, run_b
    for a, b in zip(out_a, out_b):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    torch.testing.assert_close(mem_a, mem_b, rtol=mem_rtol, atol=mem_atol)
    _assert_same_grads(model, grads_a, grads_b)


needs_fused = pytest.mark.skipif(load_fused_library() is None, reason="no C compiler: no fused decoder")
DECODER_PATHS = [pytest.param(True, id="fused", marks=needs_fused), pytest.param(False, id="autograd")]


@pytest.mark.parametrize("fused", DECODER_PATHS)
@pytest.mark.parametrize("r", [1, 3])
def test_fast_decoder_equals_reference_loop_with_gradients(r, fused):
    """The regrouped decoder computes NVIDIA's math: same outputs and gradients, dropout included,
    both through the compiled step kernels and through autograd."""
    model = tiny_model(n_frames_per_step=r).train()
    model.decoder.use_fused_decoder = fused
    text, tl, mels, ml = batch()
    memory = model.encode(text, tl).detach()
    assert (model.decoder._fused_library(memory) is not None) == fused
    results = []
    for fn in (model.decoder, lambda m, l, t: reference_decoder_forward(model.decoder, m, l, t)):
        model.zero_grad()
        mem = memory.clone().requires_grad_()
        torch.manual_seed(1)  # same dropout masks on both paths
        outputs = fn(mem, tl, mels)
        weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(i)) for i, o in enumerate(outputs)]
        sum((o * w).sum() for o, w in zip(outputs, weights)).backward()
        grads = [None if p.grad is None else p.grad.clone() for p in model.decoder.parameters()]
        results.append((outputs, grads, mem.grad))
    (out_a, grads_a, mem_a), (out_b, grads_b, mem_b) = results
    for a, b in zip(out_a, out_b):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mem_a, mem_b, rtol=1e-4, atol=1e-5)
    _assert_same_grads(model, grads_a, grads_b)
    assert all(g is not None for g in grads_a)


@needs_fused
def test_fused_decoder_without_grad_matches_autograd_path():
    """Eval-mode teacher forcing under no_grad (GTA dumps, dev loss) takes the fused path too."""
    model = tiny_model().eval()
    text, tl, mels, ml = batch(text_lengths=(9, 3, 6), mel_lengths=(13, 5, 8))
    with torch.no_grad():
        memory = model.encode(text, tl)
        model.decoder.use_fused_decoder = True
        torch.manual_seed(2)  # the pre-net keeps its dropout in eval mode
        fused = model.decoder(memory, tl, mels)
        model.decoder.use_fused_decoder = False
        torch.manual_seed(2)
        plain = model.decoder(memory, tl, mels)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert float(fused[2][2, :, 6:].abs().max()) == 0.0  # padding symbols get no attention


@needs_fused
def test_fused_decoder_batch_split_across_threads_changes_nothing():
    """The kernels split the batch over PyTorch's OpenMP threads (when the build can join them):
    five utterances over two threads give what one thread gives, outputs and gradients."""
    from tacotron2.compiled_kernels import joins_torch_openmp

    lib = load_fused_library()
    # an OpenMP build binds GOMP_parallel through its libgomp dependency; a plain build has none
    assert hasattr(lib, "GOMP_parallel") == joins_torch_openmp()
    model = tiny_model().train()
    text, tl, mels, ml = batch(text_lengths=(9, 3, 6, 9, 5), mel_lengths=(13, 5, 8, 11, 13))
    memory = model.encode(text, tl).detach()
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            torch.manual_seed(4)
            results.append(_run_backward(model, lambda m: model.decoder(m, tl, mels), memory, _index_weighted_sum))
    finally:
        torch.set_num_threads(threads)
    _assert_same_runs(model, *results, rtol=1e-6, atol=1e-7, mem_rtol=1e-6, mem_atol=1e-7)


def test_graphed_decoder_padding_to_shape_buckets_changes_nothing(monkeypatch: pytest.MonkeyPatch):
    """The CUDA-graph path pads symbols and decoder steps up to shape buckets. With recording
    replaced by the plain module (this runs on a CPU), its outputs and every gradient equal the
    eager loop's: padded symbols are masked, padded steps come after the real ones."""
    from tacotron2.graphed_decoder import BUCKET

    recorded = []
    monkeypatch.setattr(torch.cuda, "make_graphed_callables",
                        lambda module, sample: recorded.append([t.shape for t in sample]) or module)
    model = tiny_model(n_frames_per_step=2, prenet_dropout=0.0, p_attention_dropout=0.0,
                       p_decoder_dropout=0.0, cuda_graph_decoder=True).train()
    model.decoder.use_fused_decoder = False
    loop = model.decoder._graphed
    text, tl, mels, ml = batch(text_lengths=(9, 3, 6), mel_lengths=(13, 5, 8))
    memory = model.encode(text, tl).detach()
    results = [_run_backward(model, fn, memory, _weighted_sum)
               for fn in (lambda m: loop(m, tl, mels), lambda m: model.decoder._forward_autograd(m, tl, mels))]
    assert [o.shape for o in results[0][0]] == [o.shape for o in results[1][0]]
    _assert_same_runs(model, *results, rtol=1e-5, atol=1e-6, mem_rtol=1e-5, mem_atol=1e-6)
    # recorded once, at the padded shapes: 9 symbols -> BUCKET, 7 steps of 2 frames -> BUCKET steps
    assert recorded == [[(3, BUCKET, memory.shape[2]), (3, BUCKET), (3, 2 * BUCKET, N_MELS)]]
    loop(memory.clone().requires_grad_(), tl[[1, 0, 2]], mels)
    assert len(recorded) == 1  # same bucket: the recorded graph is reused


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_graphed_decoder_on_gpu_equals_eager_loop():
    """Real recording and replay: outputs and gradients of the graphed loop equal the eager
    loop's (measured on an H200: outputs bit-equal, gradients within 1e-6 relative)."""
    dev = torch.device("cuda")
    model = tiny_model(n_frames_per_step=2, prenet_dropout=0.0, p_attention_dropout=0.0,
                       p_decoder_dropout=0.0, cuda_graph_decoder=True).to(dev).train()
    text, tl, mels, ml = (t.to(dev) for t in batch(text_lengths=(9, 3, 6), mel_lengths=(13, 5, 8)))
    memory = model.encode(text, tl).detach()
    results = [_run_backward(model, fn, memory, _index_weighted_sum)
               for fn in (lambda m: model.decoder._forward(m, tl, mels),
                          lambda m: model.decoder._forward_autograd(m, tl, mels))]
    assert len(model.decoder._graphed.graphs) == 1 and not model.decoder._graphed.failed
    _assert_same_runs(model, *results, rtol=1e-5, atol=1e-6, mem_rtol=1e-4, mem_atol=1e-5)


def test_graphed_decoder_falls_back_to_eager_when_recording_fails(monkeypatch: pytest.MonkeyPatch):
    def fail(module, sample):
        raise RuntimeError("capture not supported here")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fail)
    model = tiny_model(cuda_graph_decoder=True).train()
    text, tl, mels, ml = batch()
    memory = model.encode(text, tl)
    with pytest.warns(RuntimeWarning, match="capture not supported here"):
        assert model.decoder._graphed(memory, tl, mels) is None
    assert model.decoder._graphed.failed and model.decoder._graphed(memory, tl, mels) is None


@pytest.mark.parametrize("p_att, p_dec", [(0.1, 0.3), (0.0, 0.2), (0.25, 0.0)])
def test_dropout_multipliers_equal_per_step_dropout_draws(p_att, p_dec):
    """All steps' masks from one draw are the masks per-step ``dropout`` calls would make."""
    steps, b, h, d = 4, 3, 5, 7
    torch.manual_seed(3)
    expected_att, expected_dec = [], []
    for _ in range(steps):
        expected_att.append(dropout(torch.ones(b, h), p_att))
        expected_dec.append(dropout(torch.ones(b, d), p_dec))
    torch.manual_seed(3)
    att, dec = dropout_multipliers(steps, [(b, h, p_att), (b, d, p_dec)], torch.ones(1))
    for got, want, p in ((att, expected_att, p_att), (dec, expected_dec, p_dec)):
        if p == 0.0:
            assert got is None
        else:
            torch.testing.assert_close(got, torch.stack(want), rtol=0, atol=0)
            assert set(got.unique().tolist()) <= {0.0, float(torch.tensor(1.0 / (1.0 - p)))}


def test_fused_decoder_switch_off_by_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TACOWAVE_FUSED_DECODER", "0")
    load_fused_library.cache_clear()
    try:
        assert load_fused_library() is None
        model = tiny_model().train()
        assert model.decoder._fused_library(torch.zeros(1, 3, 16)) is None
    finally:
        load_fused_library.cache_clear()


@pytest.mark.parametrize("r, text_lengths", [(1, (7, 4)), (2, (7, 4)), (2, (7,)), (1, (20, 9)), (2, (20,))])
def test_fast_inference_equals_reference_loop(r, text_lengths):
    """Free-running too: batched, and single-utterance with its transposed weight stacks; with
    fewer symbols (times the batch) than the 16 memory channels the context stack is applied to
    the memory once per pass, with more it multiplies the context at every step."""
    model = tiny_model(n_frames_per_step=r).eval()
    n_texts = len(text_lengths)
    text, tl, _, _ = batch(text_lengths=text_lengths, mel_lengths=(3, 3)[:n_texts])
    with torch.no_grad():
        memory = model.encode(text, tl)
        projected = model.decoder._constants(memory, tl, free_running=True).projected_memory
    assert (projected is not None) == (n_texts * max(text_lengths) < memory.shape[2] == 16)
    for _ in range(2):  # the second pass reuses the cached stacks, after a weight update
        torch.manual_seed(3)
        mel, gate, align, n_frames, stopped = model.decoder.inference(memory, tl, 6, gate_threshold=2.0)
        torch.manual_seed(3)
        with torch.no_grad():
            ref_mel, ref_gate, ref_align = reference_decoder_forward(model.decoder, memory, tl, None, max_steps=6)
        torch.testing.assert_close(mel, ref_mel, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gate, ref_gate, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(align, ref_align, rtol=1e-5, atol=1e-6)
        assert n_frames.tolist() == [6 * r] * n_texts and not stopped.any()
        with torch.no_grad():
            model.decoder.decoder_rnn.weight_hh.mul_(1.5)
            model.decoder.mel_proj.weight.add_(0.1)


# --------------------------------------------------------------------------- inference


@pytest.mark.parametrize("r", [1, 2, 3])
def test_inference_stops_on_gate_or_max_steps(r):
    model = tiny_model(n_frames_per_step=r)
    text = torch.randint(1, N_SYMBOLS, (5,))
    with torch.no_grad():
        model.decoder.gate_proj.bias.fill_(-1e4)
    res = model.inference(text, max_decoder_steps=7)
    assert res.stop_reason == "max_decoder_steps"
    assert res.mel.shape == res.mel_before_postnet.shape == (7 * r, N_MELS)
    assert res.gate.shape == (7 * r,) and res.alignment.shape == (7, 5)

    with torch.no_grad():
        model.decoder.gate_proj.bias.fill_(-1e4)
        model.decoder.gate_proj.bias[r - 1] = 1e4  # the last frame of every step says "stop"
    res = model.inference(text, max_decoder_steps=7)
    assert res.stop_reason == "gate"
    assert res.n_frames == r and res.alignment.shape == (1, 5)
    assert model.training  # restored


def test_batched_inference_matches_single_utterances():
    model = tiny_model(prenet_dropout=0.0)
    text, tl, _, _ = batch(text_lengths=(7, 4, 5), mel_lengths=(3, 3, 3))
    batched = model.inference_batch(text, tl, max_decoder_steps=9)
    for i, n in enumerate(tl.tolist()):
        alone = model.inference(text[i, :n], max_decoder_steps=9)
        assert alone.stop_reason == batched[i].stop_reason
        torch.testing.assert_close(batched[i].mel, alone.mel, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched[i].alignment, alone.alignment, rtol=1e-4, atol=1e-5)


needs_synthesis_step = pytest.mark.skipif(fast_inference.load_library() is None,
                                          reason="no C compiler: no compiled synthesis step")


def _free_run(model, memory, lengths, steps, threshold, window, compiled, monkeypatch):
    """Decoder.inference under seed 3 through the compiled synthesis step or the PyTorch step;
    fails if the compiled step was wanted and not taken."""
    taken = []
    real_decode, real_load = fast_inference.decode, fast_inference.load_library
    monkeypatch.setattr(fast_inference, "decode", lambda *a: taken.append(1) or real_decode(*a))
    monkeypatch.setattr(fast_inference, "load_library", real_load if compiled else lambda: None)
    torch.manual_seed(3)
    with torch.no_grad():
        out = model.decoder.inference(memory, lengths, steps, threshold, window)
    monkeypatch.undo()
    assert bool(taken) == compiled
    return out


@needs_synthesis_step
@pytest.mark.parametrize("r, lengths, n_pad, window", [(1, (7,), 0, 0), (2, (7,), 2, 0), (1, (20,), 0, 2), (3, (9,), 3, 1),
                                                        (2, (9, 4, 6), 0, 0), (1, (5, 3), 1, 2)])
def test_compiled_synthesis_step_matches_pytorch_step(monkeypatch, r, lengths, n_pad, window):
    """Free-running through the compiled step and through Decoder._step: same frames, stop
    logits, alignments, stop frames, for one utterance and for padded batches. With fewer
    symbols (times the batch) than the 16 memory channels the context stack is applied to the
    memory once per pass, with more at every step; padded memory rows must get no attention; the
    stop threshold is set just below one of the first utterance's frame stop probabilities after
    the first step, so it stops at its first frame above it."""
    model = tiny_model(n_frames_per_step=r).eval()
    n_max = max(lengths)
    text = torch.randint(1, N_SYMBOLS, (len(lengths), n_max), generator=torch.Generator().manual_seed(2))
    for i, n in enumerate(lengths):
        text[i, n:] = 0
    tl = torch.tensor(lengths)
    with torch.no_grad():
        memory = model.encode(text, tl)
    memory = torch.cat([memory, torch.randn(len(lengths), n_pad, memory.shape[2])], 1)
    mem_lengths = tl if n_pad or len(lengths) > 1 else None

    never = _free_run(model, memory, mem_lengths, 10, 2.0, window, False, monkeypatch)
    probs = torch.sigmoid(never[1][0])
    threshold = float(probs[r:].max()) - 1e-4
    first_above = int(torch.nonzero(probs > threshold)[0]) + 1

    for limit in (2.0, threshold):
        want = _free_run(model, memory, mem_lengths, 10, limit, window, False, monkeypatch)
        got = _free_run(model, memory, mem_lengths, 10, limit, window, True, monkeypatch)
        for a, b in zip(got[:3], want[:3]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert got[3].tolist() == want[3].tolist() and got[4].tolist() == want[4].tolist()
        for i, n in enumerate(lengths):
            assert bool((got[2][i, :, n:] == 0).all())
    assert got[3][0] == first_above and bool(got[4][0])
    if bool(got[4].all()):  # decoding ends with the step at which the last utterance stopped
        assert got[0].shape[1] == -(-int(got[3].max()) // r) * r


@needs_synthesis_step
def test_compiled_synthesis_step_threads_change_nothing(monkeypatch):
    """Sizes at which the step's products and attention split across PyTorch's OpenMP threads
    (when the build can join them), two utterances: two threads give what one gives, and what
    PyTorch gives."""
    from tacotron2.compiled_kernels import joins_torch_openmp

    assert hasattr(fast_inference.load_library(), "GOMP_parallel") == joins_torch_openmp()
    model = tiny_model(attention_rnn_dim=128, decoder_rnn_dim=96, attention_dim=32,
                       attention_location_kernel_size=31).eval()
    text = torch.randint(1, N_SYMBOLS, (2, 90), generator=torch.Generator().manual_seed(2))
    text[1, 70:] = 0
    lengths = torch.tensor([90, 70])
    with torch.no_grad():
        memory = model.encode(text, lengths)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(_free_run(model, memory, lengths, 8, 2.0, 0, True, monkeypatch))
        runs.append(_free_run(model, memory, lengths, 8, 2.0, 0, False, monkeypatch))
    finally:
        torch.set_num_threads(threads)
    for other, tol in ((runs[1], 1e-6), (runs[2], 1e-5)):
        for a, b in zip(runs[0][:3], other[:3]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol / 10)


def test_compiled_synthesis_step_switch_off_by_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TACOWAVE_FUSED_DECODER", "0")
    fast_inference.load_library.cache_clear()
    try:
        assert fast_inference.load_library() is None
        model = tiny_model().eval()
        assert model.inference(torch.tensor([1, 2, 3]), max_decoder_steps=3).n_frames == 3
    finally:
        fast_inference.load_library.cache_clear()


def test_attention_window_keeps_attention_near_the_previous_peak():
    model = tiny_model()
    text = torch.randint(1, N_SYMBOLS, (15,))
    free = model.inference(text, max_decoder_steps=12, attention_window=0).alignment
    assert (free[1:] > 0).sum(1).min() == 15  # unconstrained: every character gets weight
    align = model.inference(text, max_decoder_steps=12, attention_window=2).alignment
    peaks = torch.cat((torch.zeros(1, dtype=torch.long), align.argmax(1)[:-1]))
    pos = torch.arange(15)
    for s in range(align.shape[0]):
        outside = (pos - peaks[s]).abs() > 2
        assert torch.all(align[s, outside] == 0), s
        torch.testing.assert_close(align[s].sum(), torch.tensor(1.0))


def test_speaker_embedding_changes_output_and_is_required():
    model = tiny_model(n_speakers=3, speaker_embedding_dim=4, prenet_dropout=0.0).eval()
    assert model.decoder.memory_dim == 16 + 4
    text, tl, mels, ml = batch()
    out_a = model(text, tl, mels, ml, speaker_ids=torch.tensor([0, 1]))
    out_b = model(text, tl, mels, ml, speaker_ids=torch.tensor([2, 1]))
    assert not torch.allclose(out_a.mel_outputs_postnet[0], out_b.mel_outputs_postnet[0])
    torch.testing.assert_close(out_a.mel_outputs_postnet[1], out_b.mel_outputs_postnet[1])
    assert model.inference(text[0], speaker_id=2, max_decoder_steps=3).n_frames == 3
    with pytest.raises(ValueError, match="speaker"):
        model.inference(text[0], max_decoder_steps=3)


def test_model_deepcopies_and_rejects_bad_configs():
    model = tiny_model()
    text, tl, mels, ml = batch()
    model(text, tl, mels, ml)[0].sum().backward()
    copy.deepcopy(model)  # EMA copies; no graph tensors may hang off modules
    with pytest.raises(ValueError, match="n_frames_per_step"):
        build_tacotron2(tiny_cfg(n_frames_per_step=4), N_SYMBOLS, N_MELS)
    with pytest.raises(ValueError, match="encoder_embedding_dim"):
        build_tacotron2(tiny_cfg(encoder_embedding_dim=15), N_SYMBOLS, N_MELS)
    with pytest.raises(ValueError, match="decoder_frame_dropout"):
        build_tacotron2(tiny_cfg(decoder_frame_dropout=1.0), N_SYMBOLS, N_MELS)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_has_f_dropout_statistics_and_gradient(p):
    x = (torch.rand(64, 128, 50) + 0.5).requires_grad_()  # no zeros of its own
    torch.manual_seed(3)
    y = dropout(x, p)
    kept = y != 0
    assert abs(1.0 - kept.float().mean().item() - p) < 0.01  # 409,600 draws: sd 0.0008
    torch.testing.assert_close(y[kept], (x / (1.0 - p))[kept])  # survivors scaled by 1 / (1 - p)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1.0 - p))
    torch.manual_seed(3)
    assert torch.equal(dropout(x, p), y)  # one stream: same generator state, same mask
    assert dropout(x, p, training=False) is x and dropout(x, 0.0) is x
    assert not dropout(x, 1.0).any()


# --------------------------------------------------------------------------- frame dropout


def test_frame_dropout_replaces_frames_by_the_mean_of_real_frames():
    _, _, mels, ml = batch(mel_lengths=(300, 120))
    torch.manual_seed(0)
    out = frame_dropout(mels, ml, 0.3)
    real = np.concatenate([mels[0, :300].numpy(), mels[1, :120].numpy()])  # padding excluded
    mean = real.mean(0)
    dropped = ~torch.all(out == mels, 2)
    assert torch.allclose(out[dropped], torch.from_numpy(mean).expand(int(dropped.sum()), -1), atol=1e-6)
    assert torch.all(out[~dropped] == mels[~dropped])
    assert 0.25 < dropped.float().mean() < 0.35  # 600 frames at p = 0.3


def test_frame_dropout_feeds_the_decoder_in_training_passes_only():
    text, tl, mels, ml = batch()
    quiet = dict(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0,
                 encoder_dropout=0.0, postnet_dropout=0.0)  # frame dropout is the only noise left
    plain, dropping = tiny_model(**quiet), tiny_model(decoder_frame_dropout=0.5, **quiet)
    plain.eval(), dropping.eval()  # validation and GTA read the real frames
    torch.testing.assert_close(dropping(text, tl, mels, ml).mel_outputs, plain(text, tl, mels, ml).mel_outputs)
    plain.train(), dropping.train()
    torch.manual_seed(1)
    trained = dropping(text, tl, mels, ml).mel_outputs
    torch.manual_seed(1)
    torch.testing.assert_close(trained, plain(text, tl, frame_dropout(mels, ml, 0.5), ml).mel_outputs)
    assert not torch.allclose(trained, plain(text, tl, mels, ml).mel_outputs)


# --------------------------------------------------------------------------- loss


def test_guided_attention_loss_matches_numpy():
    g, r = 0.3, 2
    gen = torch.Generator().manual_seed(0)
    text_lengths, mel_lengths = torch.tensor([5, 3, 4]), torch.tensor([9, 4, 7])
    steps = [math.ceil(t / r) for t in mel_lengths.tolist()]
    align = torch.softmax(torch.randn(3, max(steps), 5, generator=gen), 2)
    mel = torch.zeros(3, 9, N_MELS)
    gate = torch.zeros(3, 9)
    cfg = TrainTacotron2Config(guided_attention_weight=7.0, guided_attention_sigma=g)
    total, parts = Tacotron2Loss(cfg, r)((mel, mel, gate, align), mel, mel_lengths, text_lengths)

    a = align.numpy().astype(np.float64)
    acc, count = 0.0, 0
    for b, (n_len, s_len) in enumerate(zip(text_lengths.tolist(), steps)):
        for s in range(s_len):
            for n in range(n_len):
                acc += a[b, s, n] * (1 - np.exp(-((n / n_len - s / s_len) ** 2) / (2 * g * g)))
                count += 1
    assert parts["guided_attention"].item() == pytest.approx(acc / count, rel=1e-5)
    non_ga = parts["mel"] + parts["mel_postnet"] + parts["gate"]
    assert total.item() == pytest.approx(non_ga.item() + 7.0 * acc / count, rel=1e-5)


def test_loss_terms_and_schedule():
    mel_t = torch.randn(2, 4, N_MELS)
    mel_lengths, text_lengths = torch.tensor([4, 2]), torch.tensor([3, 3])
    mel_out = mel_t + 1.0  # off by exactly 1 on every frame
    mel_out[1, 2:] = 123.0  # padding: must not count
    gate = torch.zeros(2, 4)
    align = torch.full((2, 4, 3), 1 / 3)
    cfg = TrainTacotron2Config(stop_token_pos_weight=3.0, guided_attention_weight=8.0,
                               guided_attention_decay=0.5, guided_attention_decay_steps=10)
    loss_fn = Tacotron2Loss(cfg, 1)
    _, parts = loss_fn((mel_out, mel_out, gate, align), mel_t, mel_lengths, text_lengths, step=25)
    assert parts["mel"].item() == pytest.approx(1.0) and parts["mel_postnet"].item() == pytest.approx(1.0)
    # Logit 0 everywhere: BCE = log 2 per frame, weighted 3 on the 2 stop frames of 6 valid ones.
    assert parts["gate"].item() == pytest.approx(math.log(2) * (4 * 1 + 2 * 3) / 6)
    assert parts["guided_attention_weight"].item() == pytest.approx(8.0 * 0.25)
    l1 = Tacotron2Loss(dataclasses.replace(cfg, mel_loss="l1", guided_attention_weight=0.0), 1)
    _, parts = l1((mel_out * 0 + mel_t - 2.0, mel_out, gate, align), mel_t, mel_lengths, text_lengths)
    assert parts["mel"].item() == pytest.approx(2.0) and "guided_attention" not in parts


# --------------------------------------------------------------------------- learning


def test_tiny_model_overfits_two_sequences():
    """The whole model (fast decoder, loss, gradients) learns: the loss falls at least 10x in 80 steps."""
    model = tiny_model(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0,
                       encoder_dropout=0.0, postnet_dropout=0.0, n_frames_per_step=2)
    text, tl, _, ml = batch(text_lengths=(6, 4), mel_lengths=(12, 8))
    t = torch.linspace(0, 1, 12)
    mels = torch.stack([torch.sin(6 * t[:, None] + torch.arange(N_MELS)), torch.cos(4 * t[:, None] * torch.arange(N_MELS))])
    mels[1, 8:] = 0
    criterion = Tacotron2Loss(TrainTacotron2Config(), 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        optimizer.zero_grad()
        loss, _ = criterion(model(text, tl, mels, ml), mels, ml, tl)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"overfit: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


# --------------------------------------------------------------------------- the demo's encoder


def _symbol_probe_accuracy(cfg: Tacotron2Config, seed: int = 0) -> float:
    """How well a least-squares linear read-out recovers each position's symbol from a freshly
    initialised encoder's output in training mode (dropout on): held-out half of 2,560 positions."""
    torch.manual_seed(seed)
    n_symbols = 30
    model = build_tacotron2(cfg, n_symbols, 80).train()
    ids = torch.randint(3, n_symbols, (64, 40))
    with torch.no_grad():
        feats = model.encode(ids).reshape(-1, cfg.encoder_embedding_dim).double().numpy()
    x = np.c_[feats, np.ones(len(feats))]
    y = ids.reshape(-1).numpy()
    half = len(x) // 2
    w = np.linalg.lstsq(x[:half], np.eye(n_symbols)[y[:half]], rcond=None)[0]
    return float((np.argmax(x[half:] @ w, 1) == y[half:]).mean())


def test_demo_encoder_passes_the_symbols_through_from_the_start():
    """Why the demo preset's encoder has one convolution with light dropout: at its width (128)
    NVIDIA's three convolutions with dropout 0.5 blur each position's symbol beyond a linear
    read-out at initialisation, and a small model trained for minutes then learns to ignore
    the text (measured: teacher-forced error with shuffled text / real text stayed at 1.0-1.07
    for 4,000 steps; with this encoder it was 1.27 after 500)."""
    from tacowave.hparams import load_hparams

    demo = load_hparams("demo").tacotron2
    assert _symbol_probe_accuracy(demo) > 0.5
    nvidia_style = dataclasses.replace(demo, encoder_n_convolutions=3, encoder_dropout=0.5)
    assert _symbol_probe_accuracy(nvidia_style) < 0.2
