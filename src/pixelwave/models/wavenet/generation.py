"""WaveNet generation: the naive reference, and the fast one (Paine et al. 2016) on one packing of the weights.

`GenerationWeights` is everything a generation step reads, packed once per `generate` call by
`WaveNet.generation_weights`: the PyTorch queue loop here (`generate_torch`) and the fused C++ step
(`pixelwave.fast.wavenet_step.run`) both consume it, so the weights are laid out in one place. Its tensors keep
PyTorch's (out, in) orientation of every 1x1 conv and the dilated convs' own (2G, R, k) layout; each consumer
takes the views it needs. `format` is the precision the fused step multiplies in: "float32" (the model's own
dtype: float32 or float64), "bf16" (bfloat16 copies made by the kernel from these float32 tensors), "fp16"
(IEEE half-float copies, likewise) or "int8" (int8 copies with a scale per output channel, also made by the
kernel: see `pixelwave.fast.wavenet_step.run`).
An output that needs other tensors adds them as optional fields here, set only for it: the "lpc_mixture"
output's are in `PredictionWeights`, the pitch-lag input's in `LagWeights`.

All randomness comes from `u` (one uniform per sample, drawn up front) and every sample is drawn by inverse CDF,
so every backend draws the same codes from the same seed (see the model's docstring on float32 vs float64).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pixelwave.fast.wavenet_step import FORMATS

_COND_CHUNK = 1024  # the queue loop projects local conditioning for this many samples at a time

# The precisions of the fused step's products (`WaveNet.generate(weights=...)`): the kernel's formats.
WEIGHT_FORMATS = tuple(FORMATS)


@dataclass
class PredictionWeights:
    """What the "lpc_mixture" output (PredictiveMixtureOutput) adds to a step, for B rows, F mel frames, p taps:
    the prediction p_t = -sum_k a_k s_(t-k) from the decoded past s (0 before t = 0) and the coefficients of
    sample t's frame, min(F - 1, (t + hop // 2) // hop) as `lpc.per_sample` picks it; the network's input
    embedding[a_(t-1)] + (prediction_embedding[mu_law(p_t)] + excitation_embedding[mu_law(e_(t-1))]) with
    e_(t-1) = s_(t-1) - p_(t-1) (0 before the start); and the draw of code c from the mixture's mass on
    [compand(edges[c] - p_t), compand(edges[c + 1] - p_t)], the first and last codes taking the open tails.
    The torch and naive loops compute the same step by step in `_LinearPrediction` (model.py)."""

    prediction_embedding: torch.Tensor  # (levels, R)
    excitation_embedding: torch.Tensor  # (levels, R)
    coefficients: torch.Tensor  # (B, F, p) float64: every frame's a_1 .. a_p
    hop_length: int
    edges: torch.Tensor  # (levels + 1,) float64: the codes' bins in the signal (linear)
    centres: torch.Tensor  # (levels,) float64: each code's decoded value s

    @property
    def order(self) -> int:
        return self.coefficients.shape[-1]


@dataclass
class LagWeights:
    """What the pitch-lag input (`WaveNetConfig.pitch_lag`) adds to a step, for B rows and T steps: to the
    network's input embedding[a_(t-1)], voicing[b, t] * embedding[mu_law((1 - frac) s_(t-n) + frac s_(t-n-1))]
    with n = n[b, t], frac = frac[b, t], s the decoded past (values[code]; `silence` before t = 0). The torch
    and naive loops compute the same step by step in `_PitchLag` (model.py)."""

    embedding: torch.Tensor  # (levels, R)
    n: torch.Tensor  # (B, T) int64 >= 1
    frac: torch.Tensor  # (B, T) float64 in [0, 1)
    voicing: torch.Tensor  # (B, T) float64
    values: torch.Tensor  # (levels,) float64: every code's decoded value
    silence: float  # the decoded value before t = 0


@dataclass
class GenerationWeights:
    """A WaveNet's weights for generating one batch, in the model's dtype. L layers, R residual, G gate (each
    half), S skip, C_out output channels, k taps, B the batch; the dilated conv of layer i reads the input
    (k - 1 - j) * dilations[i] steps back with tap j."""

    format: str  # one of WEIGHT_FORMATS: the precision of the fused step's products
    dilations: tuple[int, ...]
    kernel_size: int
    levels: int
    mixtures: int | None  # 0: categorical, K: K logistics (with `prediction`: "lpc_mixture"), None: not fused
    initial_code: int  # the code before t = 0: silence
    embedding: torch.Tensor  # (levels, R): the previous code's embedding
    conv_w: torch.Tensor  # (L, 2G, R, k): the dilated convs
    static_bias: torch.Tensor  # (B, L, 2G): conv bias + the speaker's V h, the same at every step
    init_states: torch.Tensor  # (B, L, R): every layer's input after endless silence, the queues' start
    res_w: torch.Tensor | None  # (L - 1, R, G): the 1x1 residual convs (the last layer has none); None if L = 1
    res_b: torch.Tensor | None  # (L - 1, R)
    skip_w: torch.Tensor  # (L, S, G)
    skip_b: torch.Tensor  # (S,): every layer's skip bias, summed
    h1_w: torch.Tensor  # (S, S): the head's first 1x1 conv
    h1_b: torch.Tensor  # (S,)
    h2_w: torch.Tensor  # (C_out, S): the head's output conv
    h2_b: torch.Tensor  # (C_out,)
    cond_w: torch.Tensor | None  # (L * 2G, C_mel): every layer's mel projection, stacked; None without mels
    cond_b: torch.Tensor | None  # (L * 2G,)
    prediction: PredictionWeights | None = None  # the "lpc_mixture" output's; None for the others
    lag: LagWeights | None = None  # the pitch lag's; None without it

    @property
    def layers(self) -> int:
        return self.conv_w.shape[0]

    @property
    def batch(self) -> int:
        return self.static_bias.shape[0]

    @property
    def residual_channels(self) -> int:
        return self.conv_w.shape[2]

    @property
    def gate_channels(self) -> int:
        return self.conv_w.shape[1] // 2

    @property
    def skip_channels(self) -> int:
        return self.skip_w.shape[1]

    @property
    def out_channels(self) -> int:
        return self.h2_w.shape[0]


def _at(temperature: float | torch.Tensor, t: int) -> float | torch.Tensor:
    """Step t's temperature: a number for every step, or (B,) from a temperature per draw (B, steps)."""
    return temperature[:, t] if isinstance(temperature, torch.Tensor) else temperature


def generate_naive(network: Callable, silence: int, field: int, steps: int, spk: torch.Tensor | None,
                   up: torch.Tensor | None, u: torch.Tensor, temperature: float | torch.Tensor,
                   sample: Callable, inputs: Callable | None = None) -> torch.Tensor:
    """The reference: for every sample, the parallel pass `network(inputs, spk, up, extra)` over the window of
    inputs it can see (the last `field` = receptive field). temperature: a number, or one per draw (B, steps)
    like u. inputs(), if given, is called before step t's pass and returns the step's extra inputs (B, R), kept
    for the later windows. Codes (B, steps)."""
    batch = u.shape[0]
    # seq[t + 1] = a[t]; seq[0] is the silence before the start
    seq = torch.full((batch, steps + 1), silence, dtype=torch.long, device=u.device)
    extra = []  # extra[t]: step t's extra inputs (B, R)
    for t in range(steps):
        lo = max(0, t + 1 - field)  # outside the window nothing can reach the output at t
        window_up = None if up is None else up[..., lo: t + 1]
        window_extra = None
        if inputs is not None:
            extra.append(inputs())
            window_extra = torch.stack(extra[lo: t + 1], dim=1)  # (B, window, R)
        params = network(seq[:, lo: t + 1], spk, window_up, window_extra)[:, :, -1]  # (B, C_out)
        seq[:, t + 1] = sample(params, u[:, t], _at(temperature, t))
    return seq[:, 1:]


def generate_torch(w: GenerationWeights, steps: int, up: torch.Tensor | None, u: torch.Tensor,
                   temperature: float | torch.Tensor, sample: Callable, inputs: Callable | None = None) -> torch.Tensor:
    """Fast WaveNet in PyTorch: per layer a ring buffer of its last (k-1)*d inputs; a few small matmuls per layer.
    up: (B, C_mel, steps) upsampled mel features or None; u: (B, steps) uniforms; inputs() as in
    `generate_naive`. Codes (B, steps)."""
    batch, k, layers = w.batch, w.kernel_size, w.layers
    g, r = w.gate_channels, w.residual_channels
    # Per-layer weights as matmuls on (B, features) rows. taps: (k*R, 2G), rows j*R .. (j+1)*R - 1 = tap j;
    # res_w: (G, R); skip_w: (L*G, S), all skips at once; the head's (S, S), (S, C_out).
    taps = [w.conv_w[i].permute(2, 1, 0).reshape(k * r, 2 * g) for i in range(layers)]
    res_w = [w.res_w[i].t() for i in range(layers - 1)] + [None]
    res_b = [w.res_b[i] for i in range(layers - 1)] + [None]
    skip_w = w.skip_w.transpose(1, 2).reshape(layers * g, -1)
    h1_w, h2_w = w.h1_w.t(), w.h2_w.t()
    static = w.static_bias  # (B, L, 2G)
    static_l = [static[:, i].contiguous() for i in range(layers)]  # (B, 2G) per layer
    # Queues start full of the silence state: exactly the parallel pass's left padding. (B, span, R) each.
    spans = [(k - 1) * d for d in w.dilations]
    queues = [w.init_states[:, i, None, :].repeat(1, spans[i], 1) for i in range(layers)]
    z_all = torch.empty(batch, layers * g, dtype=w.conv_w.dtype, device=u.device)  # every layer's gate output
    out = torch.empty(batch, steps, dtype=torch.long, device=u.device)
    code = torch.full((batch,), w.initial_code, dtype=torch.long, device=u.device)
    bias = static_l
    for t in range(steps):
        if up is not None and t % _COND_CHUNK == 0:
            chunk = up[..., t: t + _COND_CHUNK]  # (B, C, n)
            proj = torch.einsum("bcn,kc->nbk", chunk, w.cond_w) + w.cond_b  # (n, B, L*2G)
            proj = proj.view(chunk.shape[-1], batch, layers, 2 * g) + static[None]  # (n, B, L, 2G)
            proj = proj.permute(0, 2, 1, 3).contiguous()  # (n, L, B, 2G): a step's biases contiguous
        if up is not None:
            bias = proj[t % _COND_CHUNK]  # (L, B, 2G)
        x = w.embedding[code]  # (B, R): the previous sample
        if inputs is not None:
            x = x + inputs().to(x.dtype)
        for i in range(layers):
            q, span = queues[i], spans[i]
            if k == 2:  # the input d steps ago, read before this step overwrites its slot
                past = q[:, t % span]  # (B, R)
            else:
                idx = [(t - (k - 1 - j) * w.dilations[i]) % span for j in range(k - 1)]
                past = q[:, idx].reshape(batch, (k - 1) * r)  # (B, (k-1)*R): taps 0 .. k-2
            h = torch.addmm(bias[i], torch.cat([past, x], dim=1), taps[i])  # (B, 2G)
            q[:, t % span] = x
            zi = z_all[:, i * g: (i + 1) * g]  # (B, G) view
            torch.mul(torch.tanh(h[:, :g]), torch.sigmoid(h[:, g:]), out=zi)
            if res_w[i] is not None:
                x = torch.addmm(x, zi, res_w[i]).add_(res_b[i])  # (B, R)
        skip = torch.addmm(w.skip_b, z_all, skip_w).relu_()  # (B, S): the summed skips
        hidden = torch.addmm(w.h1_b, skip, h1_w).relu_()  # (B, S)
        params = torch.addmm(w.h2_b, hidden, h2_w)  # (B, C_out)
        code = sample(params, u[:, t], _at(temperature, t))
        out[:, t] = code
    return out
