"""Incremental generation on a GPU: whole chunks of steps replayed as one CUDA graph.

On a GPU the arithmetic of one WaveNet step is trivial; what costs is launching ~10 kernels per
layer per step from Python (24 layers: a few hundred launches, ~1 ms). Here a chunk of
``chunk`` steps is recorded once as a CUDA graph over static buffers and replayed for every
chunk, so a step costs only the kernels themselves. The step is written with

- weight normalisation folded and every weight stored in the layout its product reads;
- each layer's past inputs in a time-major history buffer of ``receptive_span - 1 + chunk``
  rows: step ``j`` of a chunk writes row ``span - 1 + j`` and reads its dilated taps as one
  strided slice, so no buffer is shifted per step (the tail moves to the front once per chunk);
- every layer's conditioning (upsampled mels through the 1x1 projections, speaker projection,
  convolution bias) computed for the whole chunk by one matrix product at its start;
- the residual and skip 1x1 convolutions fused into one product;
- sampling from the same pre-drawn noise as the reference (:class:`~wavenet_vocoder.mixture.StepNoise`),
  so a fixed seed gives the same waveform as the CPU paths (to float rounding).

Without CUDA the same chunk function runs eagerly, which is how the tests check it against
the PyTorch reference on a CPU-only machine.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from wavenet_vocoder.mixture import StepNoise, decode_mulaw, noise_dim, sample_from_noise
from wavenet_vocoder.model import WaveNet

DEFAULT_CHUNK = 128  # steps per graph: launch cost amortised, capture still well under a second


class GraphWaveNet:
    """A WaveNet's weights in generation layout, on the model's device.

    Build one from a model in its final state (weights are copied, weight norm folded); the
    model itself is not modified.

    Args:
        model: the vocoder, on the device to generate on.
        chunk: steps recorded in one graph (and computed per replay).
        use_graph: record CUDA graphs (default: when the model is on a CUDA device).
    """

    def __init__(self, model: WaveNet, chunk: int = DEFAULT_CHUNK, use_graph: Optional[bool] = None) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.model = model
        self.cfg = cfg = model.cfg
        self.device = model.first_conv.bias.device
        self.chunk = chunk
        self.use_graph = self.device.type == "cuda" if use_graph is None else use_graph
        if self.use_graph and self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a model on a CUDA device, not {self.device}")
        layers = model.conv_layers
        self.L, self.R, self.G = cfg.layers, cfg.residual_channels, cfg.gate_channels
        self.onehot = cfg.output_distribution == "mulaw"
        self.in_channels = model.in_channels
        self.out_channels = model.out_channels
        self.noise_dim = noise_dim(cfg)
        self.dilations = [layer.dilation for layer in layers]
        self.spans = [layer.receptive_span for layer in layers]

        def plain(t: torch.Tensor) -> torch.Tensor:
            return t.detach().float().contiguous().clone()

        with torch.no_grad(), parametrize.cached():
            first = model.first_conv.weight[:, :, 0]                            # (R, in)
            # one-hot inputs pick a column, so keep the transposed matrix for a row lookup
            self.w_first = plain(first.t())                                     # (in, R)
            self.b_first = plain(model.first_conv.bias)
            # conv weight (G, R, k) -> (k*R, G): row j*R + i is tap j (oldest first), channel i,
            # matching a time-major (B, k, R) slice of the history flattened to (B, k*R)
            self.w_conv = [plain(l.conv.weight.permute(2, 1, 0).reshape(-1, self.G)) for l in layers]
            self.conv_bias = plain(torch.cat([l.conv.bias for l in layers]))    # (L*G,)
            self.w_cond = (plain(torch.cat([l.conv1x1c.weight[:, :, 0] for l in layers]).t())  # (cin, L*G)
                           if model.local_conditioning else None)
            self.w_speaker = (plain(torch.cat([l.conv1x1g.weight[:, :, 0] for l in layers]).t())  # (gin, L*G)
                              if model.global_conditioning else None)
            self.w_res = [plain(torch.cat([l.conv1x1_out.weight[:, :, 0], l.conv1x1_skip.weight[:, :, 0]]).t())
                          for l in layers]                                      # (G/2, R+S)
            self.b_res = [plain(torch.cat([l.conv1x1_out.bias, l.conv1x1_skip.bias])) for l in layers]
            self.w_post1 = plain(model.last_conv_layers[1].weight[:, :, 0].t())
            self.b_post1 = plain(model.last_conv_layers[1].bias)
            self.w_post2 = plain(model.last_conv_layers[3].weight[:, :, 0].t())
            self.b_post2 = plain(model.last_conv_layers[3].bias)
            self.speaker_table = plain(model.embed_speakers.weight) if model.global_conditioning else None
        self.skip_scale = math.sqrt(1.0 / self.L)
        # the input that precedes the first sample (silence): a class index for mu-law
        init = model.initial_input(1)
        self.initial = float(init.argmax(1).item()) if self.onehot else 0.0

    # ------------------------------------------------------------------ one run

    def static_bias(self, g: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """(B, L*G) gate bias of every layer that does not change over time: conv bias + speaker."""
        bias = self.conv_bias.unsqueeze(0).expand(batch, -1)
        if self.w_speaker is not None:
            bias = bias + self.speaker_table[g.reshape(-1).long().to(self.device)] @ self.w_speaker
        return bias.contiguous()

    @torch.no_grad()
    def run(self, c_up: Optional[torch.Tensor], g: Optional[torch.Tensor], T: int, batch: int, noise: StepNoise,
            temperature: float = 1.0, forced: Optional[torch.Tensor] = None, keep_params: bool = False,
            tqdm: Optional[Callable[..., Any]] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Generate ``T`` steps for ``batch`` utterances.

        Args:
            c_up: (B, cin_channels, >= T) upsampled conditioning on any device, or None.
            g: (B,) speaker ids, or None.
            forced: (B, T) teacher-forced inputs (mu-law: class indices), or None.
            keep_params: also return the distribution parameters (B, out_channels, T).
            tqdm: a progress-bar factory (called with ``total=`` steps).
        Returns:
            samples (B, T) on the model's device (mu-law: decoded to [-1, 1]) and the parameters.
        """
        runner = _ChunkRunner(self, batch, self.static_bias(g, batch), temperature,
                              local=c_up is not None, forced=forced is not None)
        S = self.chunk
        samples = torch.empty(batch, T, device=self.device)
        params = torch.empty(batch, self.out_channels, T, device=self.device) if keep_params else None
        bar = tqdm(total=T, unit="sample") if tqdm is not None else None
        try:
            for t0 in range(0, T, S):
                n = min(S, T - t0)
                if c_up is not None:
                    runner.cond_in[:n].copy_(c_up[:, :, t0:t0 + n].permute(2, 0, 1))
                    runner.cond_in[n:].zero_()
                # steps past T are computed and dropped; StepNoise draws their noise in the
                # same fixed blocks, so the noise of steps < T does not depend on the chunking
                runner.noise_in.copy_(noise.get(t0, t0 + S))
                if forced is not None:
                    runner.forced_in[:n].copy_(forced[:, t0:t0 + n].t())
                runner.step()
                samples[:, t0:t0 + n] = runner.samples_out[:n].t()
                if params is not None:
                    params[:, :, t0:t0 + n] = runner.params_out[:n].permute(1, 2, 0)
                if bar is not None:
                    bar.update(n)
        finally:
            if bar is not None:
                bar.close()
        if self.onehot:
            samples = decode_mulaw(samples, self.in_channels)
        return samples, params

    @torch.no_grad()
    def incremental_forward(self, c: Optional[torch.Tensor] = None, g: Optional[torch.Tensor] = None,
                            T: Optional[int] = None, *, c_up: Optional[torch.Tensor] = None,
                            test_inputs: Optional[torch.Tensor] = None, noise: Optional[StepNoise] = None,
                            seed: Optional[int] = None, temperature: float = 1.0,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract and results as :meth:`WaveNet.incremental_forward`.

        Returns samples (B, T) in [-1, 1] and parameters (B, out_channels, T).
        """
        c_up, T, batch = self.model.resolve_incremental_inputs(c, g, T, c_up, test_inputs)
        if noise is None:
            noise = StepNoise(self.cfg, batch, seed)
        forced = None if test_inputs is None else self.model.teacher_forced_values(test_inputs, T).to(self.device)
        return self.run(c_up, g, T, batch, noise, temperature, forced, keep_params=True)


class _ChunkRunner:
    """Static buffers, the chunk function over them, and (on CUDA) its recorded graph."""

    def __init__(self, net: GraphWaveNet, batch: int, static_bias: torch.Tensor, temperature: float,
                 local: bool, forced: bool) -> None:
        self.net = net
        dev, S, B = net.device, net.chunk, batch
        self.batch = B
        self.temperature = float(temperature)
        self.static_bias = static_bias
        self.history = [torch.zeros(B, span - 1 + S, net.R, device=dev) for span in net.spans]
        self.current = torch.full((B,), net.initial, device=dev)
        self.cond_in = torch.zeros(S, B, net.w_cond.size(0), device=dev) if local else None
        self.noise_in = torch.zeros(S, B, net.noise_dim, device=dev)
        self.forced_in = torch.zeros(S, B, device=dev) if forced else None
        self.samples_out = torch.zeros(S, B, device=dev)
        self.params_out = torch.zeros(S, B, net.out_channels, device=dev)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        if net.use_graph:
            self._record()

    def _reset(self) -> None:
        for h in self.history:
            h.zero_()
        self.current.fill_(self.net.initial)

    def _record(self) -> None:
        # Warm up on a side stream (cuBLAS picks its kernels and workspaces), then record.
        side = torch.cuda.Stream(self.net.device)
        side.wait_stream(torch.cuda.current_stream(self.net.device))
        with torch.cuda.stream(side):
            self._chunk()
        torch.cuda.current_stream(self.net.device).wait_stream(side)
        self._reset()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._chunk()

    def step(self) -> None:
        """Run one chunk: reads cond_in / noise_in / forced_in, writes samples_out / params_out."""
        if self.graph is not None:
            self.graph.replay()
        else:
            self._chunk()

    def _chunk(self) -> None:
        net, S, R = self.net, self.net.chunk, self.net.R
        G = net.G
        if self.cond_in is not None:
            cond = torch.addmm(self.static_bias.repeat(S, 1), self.cond_in.reshape(S * self.batch, -1),
                               net.w_cond).view(S, self.batch, -1)
        else:
            cond = self.static_bias.unsqueeze(0).expand(S, -1, -1)
        half = math.sqrt(0.5)
        for j in range(S):
            x_in = self.forced_in[j] if self.forced_in is not None else self.current
            if net.onehot:
                h = net.w_first[x_in.long()] + net.b_first
            else:
                h = torch.addmm(net.b_first, x_in.unsqueeze(1), net.w_first)
            skips = None
            for i, (span, d) in enumerate(zip(net.spans, net.dilations)):
                hist = self.history[i]
                hist[:, span - 1 + j].copy_(h)
                taps = hist[:, j:j + span:d].reshape(self.batch, -1)
                y = torch.addmm(cond[j, :, i * G:(i + 1) * G], taps, net.w_conv[i])
                a, b = y.chunk(2, dim=1)
                rs = torch.addmm(net.b_res[i], torch.tanh(a) * torch.sigmoid(b), net.w_res[i])
                h = (h + rs[:, :R]) * half
                skips = rs[:, R:] if skips is None else skips + rs[:, R:]
            out = F.relu(skips * net.skip_scale)
            out = F.relu(torch.addmm(net.b_post1, out, net.w_post1))
            out = torch.addmm(net.b_post2, out, net.w_post2)
            self.params_out[j].copy_(out)
            x = sample_from_noise(net.cfg, out.unsqueeze(-1), self.noise_in[j].unsqueeze(1), self.temperature)[:, 0]
            self.samples_out[j].copy_(x)
            self.current.copy_(x)
        # the last span - 1 inputs of each layer become the past of the next chunk
        for hist, span in zip(self.history, net.spans):
            if span > 1:
                hist[:, :span - 1].copy_(hist[:, S:S + span - 1].clone())
