"""Tacotron 2 (Shen et al. 2018) with the layer math of NVIDIA/tacotron2, plus a reduction factor,
a speaker embedding, batched inference and a monotonic attention window.

Shapes: ``B`` batch, ``N`` text symbols, ``T`` mel frames, ``S = ceil(T / r)`` decoder steps
(``r = n_frames_per_step``), ``E`` memory (encoder + speaker embedding) channels. Mels are
``(B, T, n_mels)`` everywhere, the layout of the data dir's ``mel/*.npy``.

Differences from NVIDIA's code, none of which changes the output of an unpadded utterance with
r = 1 (so their published weights give their outputs, see ``convert_nvidia.py``):

* padded characters / frames are zeroed before every convolution and excluded from attention,
  so each utterance of a padded batch gets exactly the outputs it would get alone;
* with r > 1 the decoder feeds the *last* frame of each step to the pre-net (NVIDIA feeds all r)
  and predicts one stop-token logit per frame;
* the decoder recurrence is reorganised for speed (see :class:`Decoder`); the reference loop at
  the end of this file is the straightforward formulation it is tested and timed against.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tacowave.hparams import Tacotron2Config

from . import fast_inference
from .fused_decoder import dropout_multipliers, fused_decoder_loop
from .fused_decoder import load_library as load_fused_library
from .graphed_decoder import GraphedDecoderLoop
from .layers import (Block, ConvBNBlock, StackedMatmuls, dropout, full, lengths_to_mask, lstm_cell_pointwise,
                     make_linear, symbol_embedding_bound, xavier_uniform_)

STOP_GATE = "gate"
STOP_MAX_STEPS = "max_decoder_steps"


class Tacotron2Output(NamedTuple):
    """Teacher-forced outputs; frame axes have exactly the target's ``T`` frames."""

    mel_outputs: Tensor          # (B, T, n_mels) decoder output, before the post-net
    mel_outputs_postnet: Tensor  # (B, T, n_mels) after the post-net residual
    gate_outputs: Tensor         # (B, T) stop-token logits, one per frame
    alignments: Tensor           # (B, S, N) attention weights, one row per decoder step


@dataclass
class InferenceResult:
    """One free-running synthesis.

    ``mel`` is ``(T, n_mels)`` (frames first, as the data dir stores mels); ``alignment`` is
    ``(S, N)``: one row per decoder step (S = ceil(T / r)), one column per input symbol.
    ``stop_reason`` says whether the stop token fired (``"gate"``) or the decoder ran out of
    steps (``"max_decoder_steps"``, usually a failed alignment).
    """

    mel: Tensor
    mel_before_postnet: Tensor
    gate: Tensor        # (T,) stop-token logits
    alignment: Tensor
    stop_reason: str

    @property
    def n_frames(self) -> int:
        return int(self.mel.shape[0])


# --------------------------------------------------------------------------- encoder


class Encoder(nn.Module):
    """Convolution stack + bidirectional LSTM: ``(B, N, symbols_embedding_dim)`` -> ``(B, N, encoder_embedding_dim)``."""

    def __init__(self, cfg: Tacotron2Config) -> None:
        super().__init__()
        dims = [cfg.symbols_embedding_dim] + [cfg.encoder_embedding_dim] * cfg.encoder_n_convolutions
        self.convolutions = nn.ModuleList(
            ConvBNBlock(dims[i], dims[i + 1], cfg.encoder_kernel_size, "relu", cfg.encoder_dropout)
            for i in range(cfg.encoder_n_convolutions))
        self.lstm = nn.LSTM(dims[-1], cfg.encoder_embedding_dim // 2, num_layers=1,
                            batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        n = x.shape[1]
        padded = lengths is not None and bool((lengths < n).any())
        valid = lengths_to_mask(lengths, n) if padded else None
        x = x.transpose(1, 2)
        for conv in self.convolutions:
            x = conv(x, None if valid is None else valid[:, None, :].to(x.dtype))
        x = x.transpose(1, 2)
        if valid is None:
            return self.lstm(x)[0]
        if x.device.type == "cpu":
            return self._padded_bidirectional_lstm(x, lengths, valid)
        # cuDNN runs packed sequences in one call (and wants its weights flattened, as nn.LSTM keeps them).
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=n)[0]

    def _padded_bidirectional_lstm(self, x: Tensor, lengths: Tensor, valid: Tensor) -> Tensor:
        """On a CPU: what the bidirectional LSTM gives each sequence alone, zeros on the padding.

        The forward direction runs over the padded batch as it is (padding only follows the
        valid steps); the backward direction runs forward over each sequence reversed within its
        own length, so it too starts on the last real symbol. Same weights and result as
        ``pack_padded_sequence`` without its per-step regrouping: on a CPU the packed LSTM's
        forward and backward took 46 vs 12 ms at the demo's size (16 x 50 symbols, 2 threads), ~8%
        of a whole training step.
        """
        lstm = self.lstm
        n, hidden = x.shape[1], lstm.hidden_size
        steps = torch.arange(n, device=x.device)[None, :]
        last = (lengths.to(x.device) - 1)[:, None]
        reverse = torch.where(valid, last - steps, steps)  # an involution: it also undoes itself
        zeros = x.new_zeros(1, x.shape[0], hidden)

        def run(inputs: Tensor, suffix: str) -> Tensor:
            weights = [getattr(lstm, f"{name}_l0{suffix}")
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            return torch.lstm(inputs, (zeros, zeros), weights, True, 1, 0.0, self.training,
                              False, True)[0]

        forward = run(x, "")
        x_reversed = x.gather(1, reverse[:, :, None].expand(-1, -1, x.shape[2]))
        backward = run(x_reversed, "_reverse").gather(1, reverse[:, :, None].expand(-1, -1, hidden))
        return torch.cat((forward, backward), 2) * valid[:, :, None].to(x.dtype)


# --------------------------------------------------------------------------- decoder parts


class Prenet(nn.Module):
    """Linear + ReLU + dropout layers, dropout applied in eval mode too (Tacotron 2 relies on the
    noise at inference for output variation and for not copying its own input)."""

    def __init__(self, in_dim: int, dim: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        dims = [in_dim] + [dim] * n_layers
        self.layers = nn.ModuleList(make_linear(dims[i], dims[i + 1], bias=False)
                                    for i in range(n_layers))
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in_dim)`` -> ``(..., dim)``."""
        for layer in self.layers:
            x = dropout(F.relu(layer(x)), self.dropout)
        return x


class LocationSensitiveAttention(nn.Module):
    """Additive attention with location features (Chorowski et al. 2015), NVIDIA's parametrisation.

    energy[b, n] = v^T tanh(W_q q[b] + W_m m[b, n] + W_d conv(cat(prev, cumulative)[b])[n]).
    """

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int,
                 n_filters: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"attention_location_kernel_size must be odd, got {kernel_size}")
        self.query = make_linear(query_dim, attention_dim, bias=False, nonlinearity="tanh")
        self.memory = make_linear(memory_dim, attention_dim, bias=False, nonlinearity="tanh")
        self.v = make_linear(attention_dim, 1, bias=False)
        self.location_conv = nn.Conv1d(2, n_filters, kernel_size, padding=(kernel_size - 1) // 2,
                                       bias=False)
        xavier_uniform_(self.location_conv.weight)
        self.location_dense = make_linear(n_filters, attention_dim, bias=False, nonlinearity="tanh")

    def location_kernel(self) -> Tensor:
        """The location conv and dense layer composed into one matrix ``(2 * K, attention_dim)``
        that multiplies the flattened ``(channel, tap)`` window around each encoder position.

        Both layers are linear with nothing in between, so one matmul over the windows replaces a
        conv + a per-position matmul + a transpose at every decoder step. A matmul over the
        (B * N) windows rather than a 2-channel conv1d, whose per-call setup dominates on a CPU:
        the whole energy computation at demo sizes (batch 16, 60 symbols, 64 attention dims)
        took 1.1 instead of 1.4 ms per decoder step, forward and backward (AMD EPYC, 2 threads).
        """
        conv = self.location_conv.weight  # (filters, 2, K)
        return torch.mm(self.location_dense.weight, conv.flatten(1)).t()

    def location_windows(self, weights: Tensor, weights_cum: Tensor) -> Tensor:
        """``(B, N)`` previous and cumulative weights -> ``(B * N, 2 * K)``: row ``b * N + n`` is
        the zero-padded window of both centred on position ``n``, channel-major (the layout of
        :meth:`location_kernel`'s rows)."""
        b, n = weights.shape
        k = self.location_conv.weight.shape[-1]
        x = F.pad(torch.stack((weights, weights_cum), 1), (k // 2, k // 2))  # (B, 2, N + K - 1)
        return x.unfold(2, k, 1).transpose(1, 2).reshape(b * n, 2 * k)


class Postnet(nn.Module):
    """``postnet_n_convolutions`` conv layers (tanh on all but the last) predicting a residual:
    ``(B, T, n_mels)`` -> ``(B, T, n_mels)``; frames at or beyond ``lengths`` are zeroed before
    every conv so that padding cannot leak into valid frames."""

    def __init__(self, cfg: Tacotron2Config, n_mels: int) -> None:
        super().__init__()
        n = cfg.postnet_n_convolutions
        dims = [n_mels] + [cfg.postnet_embedding_dim] * (n - 1) + [n_mels]
        self.convolutions = nn.ModuleList(
            ConvBNBlock(dims[i], dims[i + 1], cfg.postnet_kernel_size,
                        "tanh" if i < n - 1 else None, cfg.postnet_dropout)
            for i in range(n))
        # The residual starts at exactly zero (zero-initialised last batch-norm scale, as in
        # Goyal et al. 2017): a unit-variance random residual on [0, 1] mels costs the first
        # thousand steps of a small run just to be unlearnt.
        nn.init.zeros_(self.convolutions[-1].norm.weight)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        mask = lengths_to_mask(lengths, x.shape[1])[:, None, :].to(x.dtype) if lengths is not None else None
        x = x.transpose(1, 2)
        for conv in self.convolutions:
            x = conv(x, mask)
        return x.transpose(1, 2)


# --------------------------------------------------------------------------- decoder


class _DecoderState:
    """The recurrent state of one decoding pass (all ``(B, ·)`` tensors).

    Besides NVIDIA's state it carries the recurrent halves of the next step's LSTM pre-activations
    (``att_recurrent = h_att W_hh^T + context W_ih_ctx^T``, ``dec_recurrent = h_dec W_hh^T``):
    they are computed in the stacked matmuls of the current step, together with other products of
    the same inputs, so each large weight is read once per step.
    """

    __slots__ = ("att_cell", "dec_cell", "weights", "weights_cum", "att_recurrent", "dec_recurrent")

    def __init__(self, batch: int, n_memory: int, cfg: Tacotron2Config, like: Tensor) -> None:
        zeros = like.new_zeros
        self.att_cell = zeros(batch, cfg.attention_rnn_dim)
        self.dec_cell = zeros(batch, cfg.decoder_rnn_dim)
        self.weights = zeros(batch, n_memory)
        self.weights_cum = zeros(batch, n_memory)
        # Zero state and zero initial context: the recurrent contributions start at zero.
        self.att_recurrent: Tensor | None = None
        self.dec_recurrent: Tensor | None = None


class _PassConstants(NamedTuple):
    """What every step of one decoding pass reads and nothing updates."""

    memory: Tensor             # (B, N, E)
    processed_memory: Tensor   # (B * N, A)
    location_kernel: Tensor    # (2K, A)
    invalid: Tensor | None     # (B, N) True on padding
    att_bias: Tensor           # (4H,) both attention-LSTM biases
    dec_bias: Tensor           # (4D,) both decoder-LSTM biases
    mats: StackedMatmuls       # the ON_* stacks below
    window: int
    # Free-running with few symbols: memory already multiplied by the ON_CTX stack (B, N, out),
    # so each step reads N rows of it instead of the whole stack (see Decoder._constants).
    projected_memory: Tensor | None = None


# Indices of the stacked per-step matmuls, by the vector they multiply.
ON_H_ATT, ON_CTX, ON_H_DEC, ON_PRENET = range(4)


class Decoder(nn.Module):
    """Autoregressive decoder: pre-net, attention LSTM, location-sensitive attention, decoder LSTM,
    frame and stop-token projections. Emits ``r`` frames per step.

    The step is NVIDIA's math regrouped: every large matrix that multiplies the same vector in a
    step is stacked into one matmul (h_att feeds the query layer, the decoder LSTM and the next
    attention-LSTM step; the context feeds both LSTMs); in teacher forcing the pre-net and its part
    of the attention-LSTM input projection run for all steps at once, the output projections run
    once after the loop, and weight gradients come from one GEMM per matrix (see ``layers.py``).
    Free-running over fewer symbols than memory channels, the matrices that multiply the context
    are applied to the memory once per pass and each step mixes the projected rows instead.
    Teacher forcing on a CPU runs the same stacks through compiled step kernels with a hand-written
    backward (``fused_decoder.py``; ``use_fused_decoder = False`` or no C compiler: autograd).
    Free-running on a CPU, everything after the pre-net runs as one compiled call per step over
    the same stacks, transposed (``fast_inference.py``).
    """

    def __init__(self, cfg: Tacotron2Config, n_mels: int, memory_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_mels = n_mels
        self.r = cfg.n_frames_per_step
        self.memory_dim = memory_dim
        self.prenet = Prenet(n_mels, cfg.prenet_dim, cfg.prenet_layers, cfg.prenet_dropout)
        self.attention_rnn = nn.LSTMCell(cfg.prenet_dim + memory_dim, cfg.attention_rnn_dim)
        self.attention = LocationSensitiveAttention(
            cfg.attention_rnn_dim, memory_dim, cfg.attention_dim,
            cfg.attention_location_n_filters, cfg.attention_location_kernel_size)
        self.decoder_rnn = nn.LSTMCell(cfg.attention_rnn_dim + memory_dim, cfg.decoder_rnn_dim)
        out_in = cfg.decoder_rnn_dim + memory_dim
        self.mel_proj = make_linear(out_in, n_mels * self.r)
        self.gate_proj = make_linear(out_in, self.r, nonlinearity="sigmoid")
        # Transposed weight stacks for synthesis on a CPU (see StackedMatmuls); not state.
        self._stack_cache: dict = {}
        # Teacher forcing on a CPU through the compiled step kernels (fused_decoder.py) when they
        # build; False keeps the autograd path (tests compare the two).
        self.use_fused_decoder = True
        # Teacher forcing in training on a GPU as replayed CUDA graphs (graphed_decoder.py).
        self._graphed = GraphedDecoderLoop(self) if cfg.cuda_graph_decoder else None

    # -- per-pass setup ----------------------------------------------------------------------

    def _stack_blocks(self) -> list[list[Block]]:
        """The ON_* stacks' parameter blocks, shared by the autograd and the fused paths."""
        p, h, e = self.cfg.prenet_dim, self.cfg.attention_rnn_dim, self.memory_dim
        att, dec = self.attention_rnn, self.decoder_rnn
        return [[full(att.weight_hh), full(self.attention.query.weight), (dec.weight_ih, 0, h)],
                [(att.weight_ih, p, p + e), (dec.weight_ih, h, h + e)],
                [full(dec.weight_hh)],
                [(att.weight_ih, 0, p)]]

    def _constants(self, memory: Tensor, memory_lengths: Tensor | None, free_running: bool,
                   window: int = 0, invalid: Tensor | None = None, transposed: bool = False) -> _PassConstants:
        """Per-utterance precomputation and the stacked per-step matmuls.

        Row blocks: h_att -> [att W_hh | query | dec W_ih(h_att part)], context -> [att W_ih(context
        part) | dec W_ih(context part) (| mel, gate)], h_dec -> [dec W_hh (| mel, gate)], pre-net
        output -> [att W_ih(pre-net part)]. The projections join only when free-running, where
        each step's frame is needed at once. ``transposed``: the stacks laid out (in, out) at any
        batch size, the layout the compiled synthesis step reads (batch 1 always gets it).
        """
        d, e = self.cfg.decoder_rnn_dim, self.memory_dim
        att, dec = self.attention_rnn, self.decoder_rnn
        stacks = self._stack_blocks()
        if free_running:
            stacks[ON_CTX] += [(self.mel_proj.weight, d, d + e), (self.gate_proj.weight, d, d + e)]
            stacks[ON_H_DEC] += [(self.mel_proj.weight, 0, d), (self.gate_proj.weight, 0, d)]
        b, n = memory.shape[:2]
        processed = torch.mm(memory.reshape(b * n, e), self.attention.memory.weight.t())
        mats = StackedMatmuls(stacks, b, self._stack_cache, transposed)
        projected = None
        if free_running and b * n < e:
            # The context is only ever multiplied by the ON_CTX stack, and it is a weighted sum of
            # memory rows: stack @ context = sum_n w_n (stack @ memory_n). With fewer symbols than
            # memory channels the projected rows are smaller than the stack, and at batch 1 the
            # stack is the largest read of a memory-bound step after the two LSTMs' own.
            projected = mats(ON_CTX, memory.reshape(b * n, e)).view(b, n, -1)
        return _PassConstants(
            memory, processed, self.attention.location_kernel(),
            _invalid_mask(memory_lengths, n) if invalid is None else invalid,
            att.bias_ih + att.bias_hh, dec.bias_ih + dec.bias_hh, mats, window, projected)

    # -- the step ---------------------------------------------------------------------------

    def _step(self, att_input: Tensor, st: _DecoderState, k: _PassConstants
              ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """One decoder step; updates ``st``.

        ``att_input`` (B, 4H) is the pre-net part of the attention-LSTM pre-activation, biases
        included. Returns the (dropped-out) decoder hidden state (B, D), the context (B, E; None
        when the pass projected the memory instead), the attention weights (B, N) and, when
        free-running, the projections (B, r*n_mels + r) without their biases. With ``k.window``
        > 0 only encoder positions within ``window`` of the previous step's attention peak can be
        attended.
        """
        cfg = self.cfg
        h_dim, d_dim, a_dim = cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.attention_dim

        gates = att_input if st.att_recurrent is None else att_input + st.att_recurrent
        h_att, st.att_cell = lstm_cell_pointwise(gates, st.att_cell)
        h_att = dropout(h_att, cfg.p_attention_dropout, self.training)
        y = k.mats(ON_H_ATT, h_att)
        att_hh, query = y[:, :4 * h_dim], y[:, 4 * h_dim:4 * h_dim + a_dim]
        dec_from_h = y[:, 4 * h_dim + a_dim:]

        b, n = st.weights.shape
        # processed memory + location features in one addmm, rows (b, n).
        keys = torch.addmm(k.processed_memory,
                           self.attention.location_windows(st.weights, st.weights_cum),
                           k.location_kernel).view(b, n, a_dim)
        hidden = torch.tanh(keys + query.unsqueeze(1))
        energies = torch.matmul(hidden, self.attention.v.weight.t()).squeeze(2)
        invalid = k.invalid
        if k.window > 0:
            peak = st.weights.argmax(1, keepdim=True)
            pos = torch.arange(energies.shape[1], device=energies.device)[None, :]
            outside = (pos - peak).abs() > k.window
            invalid = outside if invalid is None else invalid | outside
        if invalid is not None:
            energies = energies.masked_fill(invalid, float("-inf"))
        weights = torch.softmax(energies, 1)
        st.weights, st.weights_cum = weights, st.weights_cum + weights

        if k.projected_memory is None:
            context = torch.bmm(weights.unsqueeze(1), k.memory).squeeze(1)
            y = k.mats(ON_CTX, context)
        else:
            context = None
            if weights.shape[0] == 1:  # vector-matrix over a row-major (N, out): MKL's fast layout
                y = torch.mm(weights, k.projected_memory[0])
            else:
                y = torch.bmm(weights.unsqueeze(1), k.projected_memory).squeeze(1)
        att_from_ctx, dec_from_ctx = y[:, :4 * h_dim], y[:, 4 * h_dim:4 * (h_dim + d_dim)]
        gates = dec_from_h + dec_from_ctx + k.dec_bias
        if st.dec_recurrent is not None:
            gates = gates + st.dec_recurrent
        h_dec, st.dec_cell = lstm_cell_pointwise(gates, st.dec_cell)
        h_dec = dropout(h_dec, cfg.p_decoder_dropout, self.training)
        y_dec = k.mats(ON_H_DEC, h_dec)
        st.att_recurrent = att_hh + att_from_ctx
        st.dec_recurrent = y_dec[:, :4 * d_dim]
        out = None
        if y.shape[1] > 4 * (h_dim + d_dim):
            out = y[:, 4 * (h_dim + d_dim):] + y_dec[:, 4 * d_dim:]
        return h_dec, context, weights, out

    # -- teacher forcing -------------------------------------------------------------------

    def teacher_inputs(self, targets: Tensor) -> Tensor:
        """``(B, T, n_mels)`` targets -> ``(B, S, n_mels)`` pre-net inputs: step s reads the last
        frame of step s - 1, step 0 an all-zero "go" frame."""
        r, steps = self.r, -(-targets.shape[1] // self.r)
        return torch.cat((targets.new_zeros(targets.shape[0], 1, self.n_mels),
                          targets[:, r - 1:(steps - 1) * r:r]), 1)

    def forward(self, memory: Tensor, memory_lengths: Tensor | None, targets: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced decoding.

        ``memory`` (B, N, E), ``memory_lengths`` (B,) or None (all full), ``targets`` (B, T, n_mels).
        Returns mel ``(B, S*r, n_mels)``, gate logits ``(B, S*r)`` and alignments ``(B, S, N)``.
        """
        # LSTM cells in fp32 even under autocast: fp16 recurrences overflow (NVIDIA/tacotron2 #112).
        with torch.autocast(memory.device.type, enabled=False):
            return self._forward(memory.float(), memory_lengths, targets.float())

    def _forward(self, memory: Tensor, memory_lengths: Tensor | None, targets: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
        lib = self._fused_library(memory)
        if lib is not None:
            return self._forward_fused(lib, memory, memory_lengths, targets)
        if self._graphed is not None and memory.is_cuda and self.training and torch.is_grad_enabled():
            out = self._graphed(memory, memory_lengths, targets)
            if out is not None:
                return out
        return self._forward_autograd(memory, memory_lengths, targets)

    def _fused_library(self, memory: Tensor):
        """The compiled step kernels when they apply here (a float32 CPU pass, a library that
        built, ``use_fused_decoder`` left on), else None."""
        cfg = self.cfg
        if not (self.use_fused_decoder and memory.device.type == "cpu" and memory.dtype == torch.float32
                and cfg.p_attention_dropout < 1.0 and cfg.p_decoder_dropout < 1.0):
            return None
        return load_fused_library()

    def _forward_fused(self, lib, memory: Tensor, memory_lengths: Tensor | None, targets: Tensor
                       ) -> tuple[Tensor, Tensor, Tensor]:
        cfg, att, dec = self.cfg, self.attention_rnn, self.decoder_rnn
        p, h, d, e = cfg.prenet_dim, cfg.attention_rnn_dim, cfg.decoder_rnn_dim, self.memory_dim
        b, n = memory.shape[:2]
        prenet_out = self.prenet(self.teacher_inputs(targets)).transpose(0, 1)  # (S, B, P)
        steps = prenet_out.shape[0]
        att_in = torch.addmm(att.bias_ih + att.bias_hh, prenet_out.reshape(steps * b, p),
                             att.weight_ih[:, :p].t()).view(steps, b, 4 * h)
        mask_att, mask_dec = dropout_multipliers(
            steps, [(b, h, cfg.p_attention_dropout if self.training else 0.0),
                    (b, d, cfg.p_decoder_dropout if self.training else 0.0)], memory)
        h_dec, contexts, alignments = fused_decoder_loop(
            lib, att_in, memory,
            torch.mm(memory.reshape(b * n, e), self.attention.memory.weight.t()),
            self.attention.location_kernel(), self.attention.v.weight.reshape(-1),
            dec.bias_ih + dec.bias_hh,
            *(torch.cat([w[:, a:z] for w, a, z in stack], 0) for stack in self._stack_blocks()[:ON_PRENET]),
            _invalid_mask(memory_lengths, n), mask_att, mask_dec)
        out_in = torch.cat((h_dec, contexts), 2).transpose(0, 1)  # (B, S, D + E)
        mel = self.mel_proj(out_in).reshape(b, steps * self.r, self.n_mels)
        gate = self.gate_proj(out_in).reshape(b, steps * self.r)
        return mel, gate, alignments.transpose(0, 1)

    def _forward_autograd(self, memory: Tensor, memory_lengths: Tensor | None, targets: Tensor,
                          invalid: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``invalid`` (B, N) True on padding, instead of ``memory_lengths`` (the graphed path's
        form: deriving it from lengths tests for padding on the host)."""
        b, n = memory.shape[:2]
        k = self._constants(memory, memory_lengths, free_running=False, invalid=invalid)
        prenet_out = self.prenet(self.teacher_inputs(targets)).transpose(0, 1)  # (S, B, P)
        steps = prenet_out.shape[0]
        # The pre-net part of the attention-LSTM input for all steps in one matmul.
        att_inputs = k.mats(ON_PRENET, prenet_out.reshape(steps * b, -1)) + k.att_bias
        st = _DecoderState(b, n, self.cfg, memory)
        hs, contexts, alignments = [], [], []
        # unbind, not indexing: one backward node instead of a full-size zero gradient per step.
        for att_input in att_inputs.view(steps, b, -1).unbind(0):
            h_dec, context, weights, _ = self._step(att_input, st, k)
            hs.append(h_dec)
            contexts.append(context)
            alignments.append(weights)
        out_in = torch.cat((torch.stack(hs, 1), torch.stack(contexts, 1)), 2)  # (B, S, D + E)
        mel = self.mel_proj(out_in).reshape(b, steps * self.r, self.n_mels)
        gate = self.gate_proj(out_in).reshape(b, steps * self.r)
        return mel, gate, torch.stack(alignments, 1)

    # -- free running ----------------------------------------------------------------------

    @torch.no_grad()
    def inference(self, memory: Tensor, memory_lengths: Tensor | None, max_decoder_steps: int,
                  gate_threshold: float, attention_window: int = 0
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Free-running decoding of a batch until every item's stop token fires or the step limit.

        Returns mel ``(B, S*r, n_mels)``, gate logits ``(B, S*r)``, alignments ``(B, S, N)``,
        frame counts ``(B,)`` (frames up to and including the first stop frame; all S*r frames
        for an item that never stopped) and ``stopped`` ``(B,)`` bool.
        """
        with torch.autocast(memory.device.type, enabled=False):
            return self._inference(memory.float(), memory_lengths, max_decoder_steps, gate_threshold,
                                   attention_window)

    def _inference(self, memory: Tensor, memory_lengths: Tensor | None, max_decoder_steps: int,
                   gate_threshold: float, attention_window: int
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        b, n = memory.shape[:2]
        r, n_mels = self.r, self.n_mels
        lib = fast_inference.library_for(memory, self.training)
        k = self._constants(memory, memory_lengths, free_running=True, window=attention_window,
                            transposed=lib is not None)
        if lib is not None:
            return fast_inference.decode(lib, self, k, max_decoder_steps, gate_threshold)
        st = _DecoderState(b, n, self.cfg, memory)
        frame = memory.new_zeros(b, n_mels)
        n_frames = torch.zeros(b, dtype=torch.long, device=memory.device)
        stopped = torch.zeros(b, dtype=torch.bool, device=memory.device)
        mels, gates, alignments = [], [], []
        for s in range(max_decoder_steps):
            att_input = k.mats(ON_PRENET, self.prenet(frame)) + k.att_bias
            _, _, weights, out = self._step(att_input, st, k)
            mel = out[:, :r * n_mels] + self.mel_proj.bias
            gate = out[:, r * n_mels:] + self.gate_proj.bias
            mels.append(mel)
            gates.append(gate)
            alignments.append(weights)
            frame = mel[:, (r - 1) * n_mels:]
            fired = torch.sigmoid(gate) > gate_threshold  # (B, r)
            newly = fired.any(1) & ~stopped
            if bool(newly.any()):
                first = fired.float().argmax(1)  # first frame of the step whose gate fired
                n_frames = torch.where(newly, s * r + first + 1, n_frames)
                stopped = stopped | newly
                if bool(stopped.all()):
                    break
        steps = len(mels)
        n_frames = torch.where(stopped, n_frames, torch.full_like(n_frames, steps * r))
        return (torch.stack(mels, 1).reshape(b, steps * r, n_mels),
                torch.stack(gates, 1).reshape(b, steps * r),
                torch.stack(alignments, 1), n_frames, stopped)


def frame_dropout(mels: Tensor, mel_lengths: Tensor, p: float) -> Tensor:
    """``mels`` (B, T, n_mels) with each frame replaced, with probability ``p``, by the mean of
    the batch's real (unpadded) frames. The mean carries no information about which sound comes
    next, so a dropped frame leaves only the attention context and the decoder's memory."""
    valid = lengths_to_mask(mel_lengths, mels.shape[1])
    mean = (mels * valid[:, :, None]).sum((0, 1)) / valid.sum().clamp_min(1)
    drop = torch.rand(mels.shape[:2], device=mels.device) < p
    return torch.where(drop[:, :, None], mean.detach().to(mels.dtype), mels)


def _invalid_mask(lengths: Tensor | None, n: int) -> Tensor | None:
    if lengths is None or not bool((lengths < n).any()):
        return None
    return ~lengths_to_mask(lengths, n)


# --------------------------------------------------------------------------- the model


class Tacotron2(nn.Module):
    """Text ids -> mel spectrogram. Build with :func:`build_tacotron2`."""

    def __init__(self, cfg: Tacotron2Config, n_symbols: int, n_mels: int, n_speakers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_symbols, self.n_mels, self.n_speakers = n_symbols, n_mels, n_speakers
        self.r = cfg.n_frames_per_step
        self.embedding = nn.Embedding(n_symbols, cfg.symbols_embedding_dim)
        bound = symbol_embedding_bound(n_symbols, cfg.symbols_embedding_dim)
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.speaker_embedding: nn.Embedding | None = None
        if cfg.speaker_embedding_dim > 0:
            self.speaker_embedding = nn.Embedding(n_speakers, cfg.speaker_embedding_dim)
            bound = symbol_embedding_bound(n_speakers, cfg.speaker_embedding_dim)
            nn.init.uniform_(self.speaker_embedding.weight, -bound, bound)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, n_mels, cfg.encoder_embedding_dim + cfg.speaker_embedding_dim)
        self.postnet = Postnet(cfg, n_mels)

    def encode(self, text: Tensor, text_lengths: Tensor | None = None,
               speaker_ids: Tensor | None = None) -> Tensor:
        """``text`` (B, N) ids -> memory ``(B, N, E)``: encoder outputs, speaker embedding appended."""
        memory = self.encoder(self.embedding(text), text_lengths)
        if self.speaker_embedding is not None:
            if speaker_ids is None:
                if self.n_speakers > 1:
                    raise ValueError(f"this model has {self.n_speakers} speakers; pass speaker ids")
                speaker_ids = torch.zeros(text.shape[0], dtype=torch.long, device=text.device)
            spk = self.speaker_embedding(speaker_ids.reshape(-1))
            memory = torch.cat((memory, spk[:, None, :].expand(-1, memory.shape[1], -1)), 2)
        return memory

    def forward(self, text: Tensor, text_lengths: Tensor, mels: Tensor, mel_lengths: Tensor,
                speaker_ids: Tensor | None = None) -> Tacotron2Output:
        """Teacher-forced pass (training, validation, GTA).

        ``text`` (B, N) long, ``text_lengths`` (B,), ``mels`` (B, T, n_mels) targets,
        ``mel_lengths`` (B,), ``speaker_ids`` (B,) or None. Outputs have exactly T frames; with
        ``mask_padding`` frames at or beyond ``mel_lengths`` are 0 (mel) and 1e3 (gate logit).
        """
        t = mels.shape[1]
        memory = self.encode(text, text_lengths, speaker_ids)
        inputs = mels
        if self.training and self.cfg.decoder_frame_dropout > 0:
            inputs = frame_dropout(mels, mel_lengths, self.cfg.decoder_frame_dropout)
        mel, gate, alignments = self.decoder(memory, text_lengths, inputs)
        mel, gate = mel[:, :t], gate[:, :t]  # drop the padding up to a multiple of r
        mel_post = mel + self.postnet(mel, mel_lengths)
        if self.cfg.mask_padding:
            pad = ~lengths_to_mask(mel_lengths, t)
            mel = mel.masked_fill(pad[:, :, None], 0.0)
            mel_post = mel_post.masked_fill(pad[:, :, None], 0.0)
            gate = gate.masked_fill(pad, 1e3)
        return Tacotron2Output(mel, mel_post, gate, alignments)

    @torch.no_grad()
    def inference(self, text_ids: Tensor, speaker_id: int | None = None,
                  max_decoder_steps: int | None = None, gate_threshold: float | None = None,
                  attention_window: int | None = None) -> InferenceResult:
        """Free-running synthesis of one utterance: ``text_ids`` (N,) long.

        Limits default to the config (``max_decoder_steps`` counts decoder steps of r frames,
        ``inference_attention_window``). Runs in eval mode (batch norm statistics, no dropout
        except the pre-net's) and restores the previous mode.
        """
        speakers = None if speaker_id is None else torch.tensor([speaker_id], device=text_ids.device)
        return self.inference_batch(text_ids[None], None, speakers, max_decoder_steps,
                                    gate_threshold, attention_window)[0]

    @torch.no_grad()
    def inference_batch(self, text_ids: Tensor, text_lengths: Tensor | None = None,
                        speaker_ids: Tensor | None = None, max_decoder_steps: int | None = None,
                        gate_threshold: float | None = None, attention_window: int | None = None
                        ) -> list[InferenceResult]:
        """Free-running synthesis of a padded batch ``text_ids`` (B, N) with ``text_lengths`` (B,).

        Each item gets what it would get alone (up to the pre-net's dropout noise); decoding runs
        until every item stopped or the step limit.
        """
        cfg = self.cfg
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(text_ids, text_lengths, speaker_ids)
            mel, gate, align, n_frames, stopped = self.decoder.inference(
                memory, text_lengths,
                cfg.max_decoder_steps if max_decoder_steps is None else max_decoder_steps,
                cfg.gate_threshold if gate_threshold is None else gate_threshold,
                cfg.inference_attention_window if attention_window is None else attention_window)
            post = mel + self.postnet(mel, n_frames)
        finally:
            self.train(was_training)
        lengths = [text_ids.shape[1]] * text_ids.shape[0] if text_lengths is None else text_lengths.tolist()
        results = []
        for i, (frames, n_text) in enumerate(zip(n_frames.tolist(), lengths)):
            results.append(InferenceResult(
                mel=post[i, :frames], mel_before_postnet=mel[i, :frames], gate=gate[i, :frames],
                alignment=align[i, :math.ceil(frames / self.r), :n_text],
                stop_reason=STOP_GATE if bool(stopped[i]) else STOP_MAX_STEPS))
        return results


def build_tacotron2(cfg: Tacotron2Config, n_symbols: int, n_mels: int, n_speakers: int = 1) -> Tacotron2:
    """Check the config against the data's sizes and build the model.

    ``n_symbols`` is the text front-end's symbol count, ``n_mels`` the audio section's
    ``num_mels``, ``n_speakers`` the data's speaker count (the speaker embedding exists only when
    ``cfg.speaker_embedding_dim`` > 0; with 0 all speakers share one voice).
    """
    check_config(cfg, n_symbols, n_mels, n_speakers)
    return Tacotron2(cfg, n_symbols, n_mels, n_speakers)


def check_config(cfg: Tacotron2Config, n_symbols: int, n_mels: int, n_speakers: int = 1) -> None:
    """Raise ``ValueError`` listing every size in ``cfg`` that cannot make a model."""
    problems = []
    if n_symbols < 1 or n_mels < 1 or n_speakers < 1:
        problems.append(f"n_symbols ({n_symbols}), n_mels ({n_mels}) and n_speakers ({n_speakers}) must be >= 1")
    if not 1 <= cfg.n_frames_per_step <= 3:
        problems.append(f"n_frames_per_step must be 1, 2 or 3, got {cfg.n_frames_per_step}")
    if cfg.encoder_embedding_dim % 2:
        problems.append(f"encoder_embedding_dim must be even (two LSTM directions), got {cfg.encoder_embedding_dim}")
    for name in ("encoder_kernel_size", "postnet_kernel_size", "attention_location_kernel_size"):
        if getattr(cfg, name) % 2 != 1:
            problems.append(f"{name} must be odd, got {getattr(cfg, name)}")
    if cfg.postnet_n_convolutions < 2 or cfg.encoder_n_convolutions < 1 or cfg.prenet_layers < 1:
        problems.append("need postnet_n_convolutions >= 2, encoder_n_convolutions >= 1, prenet_layers >= 1")
    if cfg.speaker_embedding_dim < 0:
        problems.append(f"speaker_embedding_dim must be >= 0, got {cfg.speaker_embedding_dim}")
    if not 0.0 <= cfg.decoder_frame_dropout < 1.0:
        problems.append(f"decoder_frame_dropout must be in [0, 1), got {cfg.decoder_frame_dropout}")
    if problems:
        raise ValueError("invalid tacotron2 configuration: " + "; ".join(problems))


# --------------------------------------------------------------------------- reference loop


def reference_decoder_forward(decoder: Decoder, memory: Tensor, memory_lengths: Tensor | None,
                              targets: Tensor | None, max_steps: int = 0, gate_threshold: float | None = None
                              ) -> tuple[Tensor, Tensor, Tensor]:
    """The straightforward per-step formulation of :class:`Decoder`, structured like NVIDIA's code:
    ``nn.LSTMCell`` calls on concatenated inputs, location conv then dense layer, projections at
    every step, each weight gradient accumulated step by step. Teacher-forced when ``targets``
    (B, T, n_mels) is given (pre-net over all inputs at once, as NVIDIA does), else free-running
    for ``max_steps`` steps, stopping early once every item's stop token exceeds ``gate_threshold``
    (if given; NVIDIA's check, made at every step). Returns mel ``(B, S*r, n_mels)``, gate ``(B, S*r)``,
    alignments ``(B, S, N)``; with the same random state it draws the same dropout masks as
    :class:`Decoder`, so the two agree in training mode too.

    It exists to check the fast decoder (tests) and to time it against (benchmarks).
    """
    cfg, att = decoder.cfg, decoder.attention
    b, n, _ = memory.shape
    r, n_mels = decoder.r, decoder.n_mels
    zeros = memory.new_zeros
    h_att, c_att = zeros(b, cfg.attention_rnn_dim), zeros(b, cfg.attention_rnn_dim)
    h_dec, c_dec = zeros(b, cfg.decoder_rnn_dim), zeros(b, cfg.decoder_rnn_dim)
    weights, weights_cum, context = zeros(b, n), zeros(b, n), zeros(b, memory.shape[2])
    processed_memory = att.memory(memory)
    invalid = _invalid_mask(memory_lengths, n)
    teacher = decoder.prenet(decoder.teacher_inputs(targets)) if targets is not None else None
    steps = teacher.shape[1] if teacher is not None else max_steps
    frame = zeros(b, n_mels)
    mels, gates, alignments = [], [], []
    for s in range(steps):
        prenet_out = teacher[:, s] if teacher is not None else decoder.prenet(frame)
        h_att, c_att = decoder.attention_rnn(torch.cat((prenet_out, context), -1), (h_att, c_att))
        h_att = dropout(h_att, cfg.p_attention_dropout, decoder.training)
        location = att.location_dense(att.location_conv(torch.stack((weights, weights_cum), 1)).transpose(1, 2))
        energies = att.v(torch.tanh(att.query(h_att).unsqueeze(1) + location + processed_memory)).squeeze(-1)
        if invalid is not None:
            energies = energies.masked_fill(invalid, float("-inf"))
        weights = torch.softmax(energies, 1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        weights_cum = weights_cum + weights
        h_dec, c_dec = decoder.decoder_rnn(torch.cat((h_att, context), -1), (h_dec, c_dec))
        h_dec = dropout(h_dec, cfg.p_decoder_dropout, decoder.training)
        out_in = torch.cat((h_dec, context), 1)
        mel = decoder.mel_proj(out_in)
        mels.append(mel)
        gates.append(decoder.gate_proj(out_in))
        alignments.append(weights)
        frame = mel[:, (r - 1) * n_mels:]
        if gate_threshold is not None and bool((torch.sigmoid(gates[-1]) > gate_threshold).any(1).all()):
            break
    steps = len(mels)
    return (torch.stack(mels, 1).reshape(b, steps * r, n_mels), torch.stack(gates, 1).reshape(b, steps * r),
            torch.stack(alignments, 1))
