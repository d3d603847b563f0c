"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio") with fast generation
(Paine et al. 2016, "Fast Wavenet Generation Algorithm").

    a[:t] -> shift by one -> embedding -> layers x [dilated causal conv -> tanh * sigmoid gate (+ V h)]
                                                    |- 1x1 residual conv, added to the layer's input
                                                    '- 1x1 skip conv -> sum -> ReLU -> 1x1 -> ReLU -> 1x1
                                                                             -> categorical over levels

Input: the previous mu-law code through a learned embedding (= a one-hot times a 1x1 conv), so the input layer
adds nothing to the receptive field: output t sees a[t - R .. t - 1] with R = (k - 1) * sum(dilations) + 1,
the `receptive_field` (2,047 for 20 layers of kernel 2 in 2 stacks of dilations 1 .. 512).

Before t = 0 the input is silence (the mu-law code of 0.0). Each dilated conv is padded on the left not with
zeros but with the layer's activation after an endless silence (`_silence_states`, computed with the speaker's
embedding but no local conditioning), so log p(a) is exactly the likelihood of `a` following silence; the
cached generator starts its queues from the same states.

Channel counts: `gate_channels` is the width of each half of the gate (the dilated conv emits 2 * gate_channels:
tanh and sigmoid halves). Some implementations count both halves: r9y9's wavenet_vocoder `gate_channels=256`
is this model's `gate_channels=128`, and its `gate_channels=128` is `gate_channels=64` here.

Conditioning, inside every gate: a speaker embedding (global: one vector per layer and gate unit, V h for a
one-hot h) and log-mel frames (local: upsampled to the audio rate by `ConditionUpsampler`, then a 1x1
projection per layer). With `pitch`, each frame also carries log f0 and a voicing correlation
and the phase of the fundamental at the frame's centre (`pixelwave.audio.pitch`), and the local features gain
a sine source at the audio rate (`pitch_source`, as in neural source-filter vocoders): cos and sin of the
first harmonics of a phase that turns at f0 and meets each frame's measured phase, scaled by the voicing. It is
a fixed function of the frames, so it is as available in generation as the mel is, and the network only has to
shape a periodic excitation it is shown, in step with the recording's, rather than invent one. With `pitch_lag`
the input also carries the decoded past one pitch period back (`pitch_lags`; a codec's long-term predictor tap),
times the voicing: a function of the codes before t, so the model stays exact and causal.

Generation: all randomness comes from `generator` up front (one uniform per sample) and every sample is drawn
by inverse CDF, so the naive generator (the parallel pass over the last R inputs, per sample) and the cached
one (a queue of past inputs per layer, O(layers) per sample) draw the same codes from the same seed. They
compute the same numbers in a different order; in float32 a draw can flip when u lands within rounding
(~1e-6) of a CDF boundary, so exact equality over long runs is guaranteed in float64 (`model.double()`, as
the tests run it).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave import lpc
from pixelwave.audio import PITCH_REF_HZ as AUDIO_PITCH_REF_HZ
from pixelwave.audio import (
    PITCH_ROWS,
    de_emphasis,
    mu_law_compress,
    mu_law_decode,
    mu_law_encode,
    mu_law_expand,
    silence_code,
)
from pixelwave.distributions import (
    categorical_log_prob,
    categorical_sample,
    check_floor,
    discretized_logistic_mixture_log_prob,
    discretized_logistic_mixture_sample,
    interval_mixture_log_prob,
    interval_mixture_table,
    mixture_param_count,
    shaped_uniforms,
)
from pixelwave.fast import wavenet_step
from pixelwave.models.base import Autoregressive, ModelConfig, check_in_range, require
from pixelwave.models.wavenet.generation import (
    WEIGHT_FORMATS,
    GenerationWeights,
    LagWeights,
    PredictionWeights,
    generate_naive,
    generate_torch,
)
from pixelwave.nn import Head
from pixelwave.runtime import full_float32


def code_values(levels: int) -> torch.Tensor:
    """Every mu-law code's decoded value, (levels,) float64: `mu_law_decode`'s bin centres, kept in float64 for
    the decoded past that the linear prediction and the pitch lag read."""
    mu = levels - 1
    return mu_law_expand(torch.arange(levels, dtype=torch.float64) * (2.0 / mu) - 1.0, mu)


class CategoricalOutput:
    """p(a_t | a_<t) = softmax(logits) over the `levels` mu-law codes: the network emits `levels` channels."""

    needs_prediction = False

    @staticmethod
    def channels(levels: int) -> int:
        return levels

    @staticmethod
    def log_prob(params: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """params (B, levels, T), a (B, T) -> log p (B, T) in nats."""
        return categorical_log_prob(params, a, dim=1)

    @staticmethod
    def sample(params: torch.Tensor, u: torch.Tensor, temperature: float, floor: float = 0.0) -> torch.Tensor:
        """params (B, levels), u (B,) uniforms -> codes (B,); floor: `categorical_sample`'s probability floor."""
        return categorical_sample(params, u, temperature, floor)


class LogisticMixtureOutput:
    """p(a_t | a_<t) = a mixture of `mixtures` logistics on [-1, 1], integrated exactly over the `levels` bins
    (edge bins to +-infinity): the one implementation PixelCNN++ uses (pixelwave.distributions). 3K channels."""

    needs_prediction = False

    def __init__(self, levels: int, mixtures: int):
        self.levels, self.mixtures = levels, mixtures

    def channels(self, levels: int) -> int:
        return mixture_param_count(1, self.mixtures)

    def log_prob(self, params: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """params (B, 3K, T), a (B, T) -> log p (B, T) in nats."""
        return discretized_logistic_mixture_log_prob(params, a[:, None], self.levels)[:, 0]

    def sample(self, params: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
        """params (B, 3K), u (B,) uniforms -> codes (B,): inverse CDF of the exact bin probabilities."""
        return discretized_logistic_mixture_sample(params, u[:, None], self.levels, temperature)[:, 0]


class PredictiveMixtureOutput:
    """p(a_t | a_<t, mel) from a linear prediction: p_t = -sum_k a_k s_(t-k) predicts the sample from the decoded
    past s and the frame's LPC coefficients (pixelwave.lpc, computed from the mel frames), and a mixture of
    `mixtures` logistics describes the excitation s_t - p_t after mu-law companding (as LPCNet models its
    excitation in mu-law: the companding gives quiet and loud excitation the same resolution). Code c of the
    data is the interval of its mu-law bin in the signal, [lo_c, hi_c]; the excitation then lies in
    [lo_c - p_t, hi_c - p_t], whose companded image (a monotone map, not clipped) is the interval the mixture
    integrates over. So the network models the excitation, the spectral envelope comes from the mel as a filter,
    and the likelihood stays exact over the same `levels` codes. 3K channels."""

    needs_prediction = True

    def __init__(self, levels: int, mixtures: int):
        self.levels, self.mixtures = levels, mixtures
        self.mu = mu = levels - 1
        y = (torch.arange(levels + 1, dtype=torch.float64) - 0.5) * (2.0 / mu) - 1.0  # bin edges, companded
        self.edges = mu_law_expand(y, mu)  # (levels + 1,) linear
        self.centres = code_values(levels)

    def channels(self, levels: int) -> int:
        return mixture_param_count(1, self.mixtures)

    def _intervals(self, lo: torch.Tensor, hi: torch.Tensor, shift: torch.Tensor):
        return mu_law_compress(lo - shift, self.mu), mu_law_compress(hi - shift, self.mu)

    def log_prob(self, params: torch.Tensor, a: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """params (B, 3K, T), a (B, T), the prediction shift (B, T) -> log p (B, T) in nats."""
        edges = self.edges.to(a.device)
        lo, hi = self._intervals(edges[a], edges[a + 1], shift.double())  # (B, T) each
        return interval_mixture_log_prob(params, lo, hi, a == 0, a == self.levels - 1)

    def sample(self, params: torch.Tensor, u: torch.Tensor, temperature: float,
               shift: torch.Tensor) -> torch.Tensor:
        """params (B, 3K), u (B,) uniforms, shift (B,) -> codes (B,): inverse CDF of the exact code masses."""
        edges = self.edges.to(params.device)
        lo, hi = self._intervals(edges[None, :-1], edges[None, 1:], shift.double()[:, None])  # (B, L) each
        return categorical_sample(interval_mixture_table(params, lo, hi), u, temperature)


# Output distributions by config name: (levels, mixtures) -> an object with channels / log_prob / sample.
OUTPUTS = {"categorical": lambda levels, mixtures: CategoricalOutput,
           "logistic_mixture": LogisticMixtureOutput,
           "lpc_mixture": PredictiveMixtureOutput}


class _LinearPrediction:
    """Generation with a predictive output ("lpc_mixture"), one sample at a time: the decoded past s, this
    step's prediction p_t = -sum_k a_k s_(t-k) and the last excitation e_(t-1), as `WaveNet._output_params`
    computes them for a whole sequence (the naive and torch loops; the fused step keeps the same state in C++,
    from `GenerationWeights.prediction`)."""

    def __init__(self, model: WaveNet, coeffs: torch.Tensor, batch: int):
        self.model, self.coeffs, self.t = model, coeffs, 0  # coeffs (B, steps, p) float64
        self.centres = model.output.centres.to(coeffs.device)
        self.history = torch.zeros(batch, coeffs.shape[-1], dtype=torch.float64, device=coeffs.device)  # s_(t-1)..
        self.shift = torch.zeros(batch, dtype=torch.float64, device=coeffs.device)  # p_t
        self.excitation = torch.zeros_like(self.shift)  # e_(t-1): none before the start

    def inputs(self) -> torch.Tensor:
        """Step t's extra network inputs (B, R), from the past only (a model with `prediction_inputs`)."""
        return self.model._prediction_inputs(self.shift, self.excitation)

    def sample(self, params: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
        """params (B, C_out), u (B,) -> a[t] (B,), drawn around p_t; then on to step t + 1."""
        code = self.model.output.sample(params, u, temperature, self.shift)
        s = self.centres[code]
        self.excitation = s - self.shift
        self.history = torch.cat([s[:, None], self.history[:, :-1]], dim=1)
        self.t += 1
        if self.t < self.coeffs.shape[1]:
            self.shift = -(self.coeffs[:, self.t] * self.history).sum(-1)  # p_(t+1), from the past only
        return code


class _PitchLag:
    """Generation with the pitch-lag input (`pitch_lag`), one sample at a time: the decoded past s, and step t's
    input from s at t - n_t and t - n_t - 1 (`pitch_lags`; silence before the start), as `WaveNet._output_params`
    computes it for a whole sequence. Wraps the output's own draw."""

    def __init__(self, model: WaveNet, cond: torch.Tensor, steps: int, batch: int, sample):
        self.model, self.draw, self.t = model, sample, 0
        self.n, self.frac, self.voicing = model._lag_frames(cond, steps)  # (B, steps) each
        self.values = model._code_values.to(cond.device)
        self.history = torch.zeros(batch, steps, dtype=torch.float64, device=cond.device)  # s_0 .. s_(t-1)
        self.rows = torch.arange(batch, device=cond.device)

    def _past(self, at: torch.Tensor) -> torch.Tensor:
        return torch.where(at >= 0, self.history[self.rows, at.clamp(min=0)], self.values[self.model.silence])

    def inputs(self) -> torch.Tensor:
        """Step t's extra network input (B, R), from the past only."""
        t, frac = self.t, self.frac[:, self.t]
        at = t - self.n[:, t]
        value = (1 - frac) * self._past(at) + frac * self._past(at - 1)
        return self.model._lag_inputs(value, self.voicing[:, t])

    def sample(self, params: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
        code = self.draw(params, u, temperature)
        self.history[:, self.t] = self.values[code]
        self.t += 1
        return code


class ConditionUpsampler(nn.Module):
    """Mel frames (B, C, F) -> features at the audio rate (B, C, F * hop); frame f centred on sample f * hop.

    A 3-frame conv mixes neighbouring frames, then a depthwise transposed conv with a 2*hop kernel (stride
    hop) spreads every frame over the samples between its neighbours' centres; its kernel starts as a
    triangle, i.e. linear interpolation, and is learned. The path is linear: the gates add the nonlinearity.
    hidden > 0 adds a nonlinear frame-rate branch beside the linear conv, as LPCNet's frame-rate network: two
    3-frame convs through `hidden` tanh channels (5 frames of context), its output conv starting at zero, so
    that an untrained model conditions exactly as without it. It runs at the frame rate: nothing per sample.

    `context` frames on each side of the ones that are upsampled (a training crop's neighbours in its utterance)
    are read by the convs and the interpolation but give no samples: with `context >= self.context` a crop is
    conditioned exactly as the same samples of the whole utterance are, instead of on zero padding at its ends.
    """

    def __init__(self, channels: int, hop_length: int, hidden: int = 0):
        super().__init__()
        self.hop_length = hop_length
        self.frame_conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.frame_net = None
        if hidden:
            self.frame_net = nn.Sequential(nn.Conv1d(channels, hidden, kernel_size=3, padding=1), nn.Tanh(),
                                           nn.Conv1d(hidden, channels, kernel_size=3, padding=1))
            with torch.no_grad():  # log-mel rows are about -5 +- 2: at the default scale half the tanh saturates
                self.frame_net[0].weight.mul_(0.25)
            nn.init.zeros_(self.frame_net[-1].weight)
            nn.init.zeros_(self.frame_net[-1].bias)
        self.interpolate = nn.ConvTranspose1d(channels, channels, kernel_size=2 * hop_length,
                                              stride=hop_length, groups=channels, bias=False)
        with torch.no_grad():
            j = torch.arange(2 * hop_length, dtype=torch.float32)
            triangle = 1.0 - (j - hop_length).abs() / hop_length  # 0 at the edges, 1 at the frame centre
            self.interpolate.weight.copy_(triangle.expand_as(self.interpolate.weight))

    @property
    def context(self) -> int:
        """Frames beyond either end of a crop that its samples' conditioning reads: the samples after the last
        frame's centre interpolate towards the next frame, whose convs read 1 (+ 2 with the frame net) more."""
        return 3 if self.frame_net is not None else 2

    def forward(self, cond: torch.Tensor, context: int = 0) -> torch.Tensor:
        frames, hop = cond.shape[-1] - 2 * context, self.hop_length
        frames_out = self.frame_conv(cond)
        if self.frame_net is not None:
            frames_out = frames_out + self.frame_net(cond)
        up = self.interpolate(frames_out)  # (B, C, (F + 2 context + 1) * hop)
        first = (1 + context) * hop  # frame `context`'s centre
        return up[..., first: first + frames * hop]  # (B, C, F * hop): from the first upsampled frame's centre on


SOURCE_HARMONICS = 4  # default: sin and cos of harmonics 1..4 of the pitch phase, 8 local channels
VOICED = (0.5, 0.8)  # voicing correlation where the source starts, and where it is at full strength


def source_voicing(rows: torch.Tensor, steps: int, hop: int) -> torch.Tensor:
    """How voiced each sample is, 0 .. 1 (B, steps) float64, from pitch rows (B, PITCH_ROWS, F): the voicing
    interpolated linearly between frame centres (frame f centred on sample f * hop, held after the last), then a
    ramp from 0 at VOICED[0] to 1 at VOICED[1]. The factor that scales `pitch_source`, and that
    `WaveNet.generate`'s voiced_temperature follows."""
    rows = rows.double()
    t = torch.arange(steps, device=rows.device)
    f = torch.div(t, hop, rounding_mode="floor").clamp(max=rows.shape[-1] - 1)
    nxt = (f + 1).clamp(max=rows.shape[-1] - 1)
    frac = ((t - f * hop).double() / hop).clamp(max=1.0) * (f != nxt)
    voicing = rows[:, 1, f] * (1.0 - frac) + rows[:, 1, nxt] * frac
    return ((voicing - VOICED[0]) / (VOICED[1] - VOICED[0])).clamp(0.0, 1.0)


def _frame_f0(rows: torch.Tensor, steps: int, hop: int):
    """Where every sample is among the frames of float64 pitch rows (B, PITCH_ROWS, F), frame f centred on
    sample f * hop: (f (steps,) the frame centre at or before each sample, j (steps,) float64 samples since it,
    f0 (B, F) each frame's f0 in Hz, slope (B, F) its change per sample up to the next centre, 0 after the last).
    The f0 at sample t is f0[:, f] + slope[:, f] * j."""
    frames = rows.shape[-1]
    t = torch.arange(steps, device=rows.device)
    f = torch.div(t, hop, rounding_mode="floor").clamp(max=frames - 1)
    j = (t - f * hop).double()
    f0 = AUDIO_PITCH_REF_HZ * rows[:, 0].exp()  # (B, F)
    slope = torch.cat([(f0[:, 1:] - f0[:, :-1]) / hop, torch.zeros_like(f0[:, :1])], 1)  # (B, F): Hz per sample
    return f, j, f0, slope


def pitch_lags(rows: torch.Tensor, steps: int, hop: int, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One pitch period back from every sample, from pitch rows (B, PITCH_ROWS, F): (n (B, steps) long >= 1,
    frac (B, steps) float64 in [0, 1)) with n + frac = sample_rate / f0_t, the f0 at t as `pitch_source` follows
    it (linear between frame centres). Sample t's lag input reads the past at t - n and t - n - 1 (`--pitch-lag`)."""
    f, j, f0, slope = _frame_f0(rows.double(), steps, hop)
    period = (sample_rate / (f0[:, f] + slope[:, f] * j)).clamp(min=1.0)  # (B, steps) samples
    n = period.floor()
    return n.long(), period - n


def pitch_source(rows: torch.Tensor, steps: int, hop: int, sample_rate: int,
                 harmonics: int = SOURCE_HARMONICS) -> torch.Tensor:
    """The sine source of pitch rows (B, PITCH_ROWS, F) (log(f0 / 100 Hz), voicing, cos and sin of the
    fundamental's phase at each frame centre; `audio.pitch`): (B, 2 * harmonics, steps), channel 2(k-1)
    cos(k phi_t) * v_t and 2(k-1)+1 sin(k phi_t) * v_t; zero where harmonic k of the f0 at t (linear between
    centres) is at or above half the sample rate, which it cannot be without aliasing.

    Frame f is centred on sample f * hop. Between centres f and f + 1 the phase starts at frame f's, turns at f0
    rising linearly from f0_f to f0_(f+1), plus the smallest constant correction (within +-pi over the hop) that
    lands on frame f + 1's phase: so the source keeps the recording's fundamental in step with the recording
    (teacher forcing can then rely on it), not only at its frequency. After the last centre it runs on at the
    last f0. The voicing is interpolated linearly and v_t ramps from 0 at voicing 0.5 to 1 at 0.8. A function
    of the frames only, computed whole before any sample: the audio's causality is untouched.
    """
    rows = rows.double()
    f, j, f0, slope = _frame_f0(rows, steps, hop)
    theta = torch.atan2(rows[:, 3], rows[:, 2])  # (B, F)
    advance = 2 * math.pi / sample_rate * (f0[:, :-1] * hop + slope[:, :-1] * hop * hop / 2)  # turned over the hop
    correction = torch.remainder(theta[:, 1:] - theta[:, :-1] - advance + math.pi, 2 * math.pi) - math.pi
    correction = torch.cat([correction, torch.zeros_like(f0[:, :1])], 1)  # none after the last
    phase = theta[:, f] + 2 * math.pi / sample_rate * (f0[:, f] * j + slope[:, f] * j * j / 2) \
        + correction[:, f] * j / hop  # (B, steps)
    v = source_voicing(rows, steps, hop)  # (B, steps)
    k = torch.arange(1, harmonics + 1, dtype=torch.float64, device=rows.device)[None, :, None]
    kp = k * phase[:, None]  # (B, H, steps)
    below = k * (f0[:, f] + slope[:, f] * j)[:, None] < sample_rate / 2  # (B, H, steps): no alias
    source = torch.stack([torch.cos(kp), torch.sin(kp)], dim=2) * (v[:, None] * below)[:, :, None]  # (B, H, 2, T)
    return source.flatten(1, 2)


class ResidualBlock(nn.Module):
    """One dilated layer: causal conv (R -> 2G, kernel k, dilation d), gate, 1x1 residual (G -> R), skip."""

    def __init__(self, residual_channels: int, gate_channels: int, skip_channels: int, kernel_size: int,
                 dilation: int, cond_channels: int | None, last: bool):
        super().__init__()
        self.dilation = dilation
        self.padding = (kernel_size - 1) * dilation  # all on the left: causal
        self.gate_channels = gate_channels
        self.conv = nn.Conv1d(residual_channels, 2 * gate_channels, kernel_size, dilation=dilation)
        self.cond_proj = nn.Conv1d(cond_channels, 2 * gate_channels, 1) if cond_channels else None
        # The last layer's residual output would feed nothing (and leave DDP with unused parameters).
        self.residual = None if last else nn.Conv1d(gate_channels, residual_channels, 1)
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)

    def gate(self, h: torch.Tensor) -> torch.Tensor:
        """(..., 2G) pre-activations -> tanh(filter) * sigmoid(gate), (..., G)."""
        g = self.gate_channels
        return torch.tanh(h[..., :g]) * torch.sigmoid(h[..., g:])

    def forward(self, x: torch.Tensor, state: torch.Tensor, speaker: torch.Tensor | None,
                up: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Time-major: x (B, T, R); state (1|B, R): this layer's input after endless silence, the left padding;
        up (B, T, C) upsampled conditioning or None.

        Returns (next layer's input (B, T, R), the gate's output z (B, T, G), which the network sends through
        this layer's 1x1 skip conv `self.skip` into the skip sum). The convs run as matrix products on the
        time-major layout (tap j of the dilated conv reads x shifted by (k - 1 - j) * d). On a 2-core CPU a
        training step of the standard model is then ~1.25x faster than Conv1d on (B, C, T) under bf16 autocast
        and 0.85-1x its speed in float32, where both are bound by the matrix-product rate (docs/benchmarks.md).
        """
        batch, steps, r = x.shape
        k, d, g = self.conv.kernel_size[0], self.dilation, self.gate_channels
        state = state.to(x.dtype)[:, None, :]  # (1|B, 1, R)
        # All k taps side by side, (B, T, k R): tap j reads x[t - s], s = (k - 1 - j) d, and the silence state
        # before t = 0. One product per gate half then covers every tap (fewer, larger temporaries than a
        # product per tap), and filter and gate are separate products: slicing one (B, T, 2G) result would
        # cost a zero-filled copy per half in the backward pass.
        taps = []
        for j in range(k - 1):
            s = (k - 1 - j) * d
            if s >= steps:
                taps.append(state.expand(batch, steps, r))
            else:
                taps.append(torch.cat([state.expand(batch, s, r), x[:, :steps - s]], dim=1))  # (B, T, R)
        # The products run on (B T, channels) matrices, so that their results are tensors of their own: an
        # in-place op on the (B, T, .) view that F.linear returns for a 3-d input would make autograd copy the
        # whole tensor three times over in the backward pass (CopySlices).
        window = torch.cat([*taps, x], dim=2).view(batch * steps, k * r)  # (B T, k R)
        w = self.conv.weight.permute(0, 2, 1).reshape(2 * g, k * r)  # (2G, k R), tap-major like `window`
        h_f = F.linear(window, w[:g], self.conv.bias[:g])  # (B T, G)
        h_g = F.linear(window, w[g:], self.conv.bias[g:])
        if speaker is not None:  # (B, 2G): the same V h at every time step
            h_f = (h_f.view(batch, steps, g) + speaker[:, None, :g]).view(batch * steps, g)
            h_g = (h_g.view(batch, steps, g) + speaker[:, None, g:]).view(batch * steps, g)
        if up is not None:  # (B, T, C) -> (B T, G) each
            cw, cb, up = self.cond_proj.weight[:, :, 0], self.cond_proj.bias, up.reshape(batch * steps, -1)
            h_f, h_g = h_f + F.linear(up, cw[:g], cb[:g]), h_g + F.linear(up, cw[g:], cb[g:])
        z = h_f.tanh_() * h_g.sigmoid_()  # (B T, G); in place: both backward passes need only the results
        if self.residual is None:
            return x, z.view(batch, steps, g)
        res = F.linear(z, self.residual.weight[:, :, 0], self.residual.bias)  # (B T, R)
        # In place where the dtypes agree (one temporary fewer); under bf16 autocast x stays float32 instead.
        flat = x.reshape(batch * steps, r)
        res = res.add_(flat) if res.dtype == x.dtype else flat + res
        return res.view(batch, steps, r), z.view(batch, steps, g)


def _positive(name: str, v) -> None:
    require(not isinstance(v, bool) and isinstance(v, int) and v >= 1, f"{name} must be a positive integer, not {v!r}")


@dataclass
class WaveNetConfig(ModelConfig):
    layers: int = 20
    stacks: int = 2
    residual_channels: int = 64
    gate_channels: int = 128  # tanh and sigmoid halves each have this many channels: the conv emits 2 * gate
    skip_channels: int = 256
    kernel_size: int = 2
    levels: int = 256
    num_speakers: int | None = None
    cond_channels: int | None = None  # mel bands of the local conditioning
    hop_length: int | None = None  # audio samples per conditioning frame
    output: str = "categorical"  # or "logistic_mixture", or "lpc_mixture" (mel-conditioned: LPC + excitation)
    mixtures: int = 10  # logistic components of the "logistic_mixture" and "lpc_mixture" outputs
    lpc_order: int = 16  # "lpc_mixture": the order of the linear prediction from the mel frames
    sample_rate: int | None = None  # "lpc_mixture": the audio's rate, where the mel bands lie in Hz
    input_noise: float = 0.0  # training only: std, in mu-law codes, of noise on the past the network sees
    prediction_inputs: bool = False  # "lpc_mixture": the network also sees p_t and e_(t-1) (LPCNet's inputs)
    pitch: bool = False  # the last PITCH_ROWS of cond_channels are pitch rows; the gates also see a sine source
    pre_emphasis: float = 0.0  # the codes are of x_t - pre_emphasis * x_(t-1) (pixelwave.audio.pre_emphasis)
    cond_hidden: int = 0  # mel-conditioned: channels of a nonlinear frame-rate branch of the conditioning; 0 = none
    source_harmonics: int = SOURCE_HARMONICS  # pitch: harmonics of the sine source (2 local channels each)
    pitch_lag: bool = False  # pitch: the input also carries the signal one pitch period back (`pitch_lags`)

    SIZES: ClassVar[dict] = {
        # the paper-sized model (receptive field 2,047) that the benchmarks time
        "standard": dict(layers=20, stacks=2, residual_channels=64, gate_channels=128, skip_channels=256,
                         kernel_size=2),
        # the CLI's `--preset wavenet`: receptive field 1,024 samples, minutes on 2 CPU cores
        "demo": dict(layers=10, stacks=1, residual_channels=32, gate_channels=32, skip_channels=64, kernel_size=2),
        "tiny": dict(layers=2, stacks=1, residual_channels=8, gate_channels=8, skip_channels=8, kernel_size=2),
    }

    @classmethod
    def standard(cls, **overrides):
        return cls.named("standard", **overrides)

    @classmethod
    def demo(cls, **overrides):
        return cls.named("demo", **overrides)

    def __post_init__(self):
        for name in ("layers", "stacks", "residual_channels", "gate_channels", "skip_channels"):
            _positive(name, getattr(self, name))
        require(self.layers % self.stacks == 0, f"layers ({self.layers}) must split into {self.stacks} equal stacks")
        require(not isinstance(self.kernel_size, bool) and isinstance(self.kernel_size, int) and self.kernel_size >= 2,
                f"kernel_size must be an integer >= 2, not {self.kernel_size!r}")
        require(not isinstance(self.levels, bool) and isinstance(self.levels, int) and self.levels >= 2,
                f"levels must be an integer >= 2, not {self.levels!r}")
        if self.num_speakers is not None:
            _positive("num_speakers", self.num_speakers)
        require((self.cond_channels is None) == (self.hop_length is None),
                "cond_channels and hop_length go together: set both (mel conditioning) or neither")
        if self.cond_channels is not None:
            _positive("cond_channels", self.cond_channels)
            _positive("hop_length", self.hop_length)
        require(self.output in OUTPUTS, f"output must be one of {', '.join(OUTPUTS)}, not {self.output!r}")
        _positive("mixtures", self.mixtures)
        _positive("lpc_order", self.lpc_order)
        if self.output == "lpc_mixture":
            require(self.cond_channels is not None, "output 'lpc_mixture' predicts from the mel frames: it needs "
                                                    "cond_channels and hop_length")
            require(self.sample_rate is not None, "output 'lpc_mixture' needs the audio's sample_rate")
        if self.sample_rate is not None:
            _positive("sample_rate", self.sample_rate)
        require(isinstance(self.prediction_inputs, bool), f"prediction_inputs must be true or false, not "
                                                          f"{self.prediction_inputs!r}")
        require(not self.prediction_inputs or self.output == "lpc_mixture",
                "prediction_inputs are the linear prediction's: they need output 'lpc_mixture'")
        require(isinstance(self.pitch, bool), f"pitch must be true or false, not {self.pitch!r}")
        if self.pitch:
            require(self.cond_channels is not None and self.cond_channels > PITCH_ROWS and self.sample_rate,
                    f"pitch conditioning rides on the mel frames: it needs cond_channels (mel bands + "
                    f"{PITCH_ROWS}), hop_length and sample_rate")
        require(not isinstance(self.pre_emphasis, bool) and isinstance(self.pre_emphasis, int | float)
                and 0 <= self.pre_emphasis < 1, f"pre_emphasis must be in [0, 1), not {self.pre_emphasis!r}")
        require(not self.pre_emphasis or self.output != "lpc_mixture",
                "output 'lpc_mixture' predicts the recording from its mel frames, not an emphasised signal: "
                "pre_emphasis needs another output")
        require(not isinstance(self.cond_hidden, bool) and isinstance(self.cond_hidden, int) and self.cond_hidden >= 0,
                f"cond_hidden must be an integer >= 0, not {self.cond_hidden!r}")
        require(not isinstance(self.source_harmonics, bool) and isinstance(self.source_harmonics, int)
                and self.source_harmonics >= 1, f"source_harmonics must be an integer >= 1, not "
                                                f"{self.source_harmonics!r}")
        require(self.pitch or self.source_harmonics == SOURCE_HARMONICS,
                "source_harmonics are the pitch source's: they need pitch")
        require(isinstance(self.pitch_lag, bool), f"pitch_lag must be true or false, not {self.pitch_lag!r}")
        require(not self.pitch_lag or self.pitch, "pitch_lag reads the past one period of the f0 back: it needs pitch")
        require(not self.pitch_lag or self.output != "lpc_mixture",
                "pitch_lag is an input beside the code's embedding; output 'lpc_mixture' has its own prediction "
                "inputs: use another output")
        require(not self.cond_hidden or self.cond_channels is not None,
                "cond_hidden is a network on the mel frames: it needs cond_channels and hop_length")
        require(isinstance(self.input_noise, int | float) and math.isfinite(self.input_noise)
                and self.input_noise >= 0, f"input_noise must be >= 0, not {self.input_noise!r}")

    @property
    def mel_bands(self) -> int | None:
        """The mel rows of a cond frame (the rest are pitch rows)."""
        if self.cond_channels is None:
            return None
        return self.cond_channels - PITCH_ROWS * self.pitch

    @property
    def local_channels(self) -> int | None:
        """What every layer's 1x1 conditioning projection reads per sample: the upsampled frames and the source."""
        if self.cond_channels is None:
            return None
        return self.cond_channels + 2 * self.source_harmonics * self.pitch


class WaveNet(Autoregressive):
    """`WaveNet(WaveNetConfig.standard())`, or the config's fields: `WaveNet(layers=20, stacks=2, ...)`."""

    model_name = "wavenet"
    config_class = WaveNetConfig
    data_kind = "audio"
    condition_attributes = {"speaker": "num_speakers", "cond": "cond_channels"}
    data_key = "a"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        layers, levels = cfg.layers, cfg.levels
        self.output = OUTPUTS[cfg.output](levels, cfg.mixtures)
        self.silence = silence_code(levels)
        per_stack = layers // cfg.stacks
        self.dilations = [2 ** (i % per_stack) for i in range(layers)]  # 1, 2, 4, ... restarting every stack

        self.embedding = nn.Embedding(levels, cfg.residual_channels)  # the previous code, one-hot -> 1x1 conv
        self.prediction_embedding = self.excitation_embedding = None
        if cfg.prediction_inputs:  # LPCNet's inputs: also the prediction p_t and the excitation e_(t-1)
            self.prediction_embedding = nn.Embedding(levels, cfg.residual_channels)
            self.excitation_embedding = nn.Embedding(levels, cfg.residual_channels)
        self.lag_embedding = None
        if cfg.pitch_lag:  # the past one pitch period back, as its mu-law code, times the voicing
            # N(0, 1) as the code's own embedding: a zero start trained slower (docs/results.md, seventh round)
            self.lag_embedding = nn.Embedding(levels, cfg.residual_channels)
            self._code_values = code_values(levels)
        self.speaker_embedding = None
        if cfg.num_speakers:
            # V h for every layer at once: (speaker) -> (layers * 2G); small, not to swamp an untrained model.
            self.speaker_embedding = nn.Embedding(cfg.num_speakers, layers * 2 * cfg.gate_channels)
            nn.init.normal_(self.speaker_embedding.weight, std=0.1)
        self.upsampler = None
        if cfg.cond_channels:
            self.upsampler = ConditionUpsampler(cfg.cond_channels, cfg.hop_length, cfg.cond_hidden)
        self.blocks = nn.ModuleList(
            ResidualBlock(cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.kernel_size, d,
                          cfg.local_channels, last=i == layers - 1)
            for i, d in enumerate(self.dilations))
        self.head = Head(nn.Conv1d(cfg.skip_channels, cfg.skip_channels, 1),
                         nn.Conv1d(cfg.skip_channels, self.output.channels(levels), 1))

    # The config's fields that callers read off the model.
    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def num_speakers(self) -> int | None:
        return self.config.num_speakers

    @property
    def cond_channels(self) -> int | None:
        return self.config.cond_channels

    @property
    def hop_length(self) -> int | None:
        return self.config.hop_length

    @property
    def cond_context(self) -> int:
        """Mel frames beyond either end of a crop that its conditioning reads (0 without mel conditioning): a
        training crop given that many of its utterance's frames on each side (log_prob's `context`) is scored as
        the same samples would be inside the whole utterance, as far as the frames are concerned."""
        return 0 if self.upsampler is None else self.upsampler.context

    def waveform(self, codes: torch.Tensor) -> torch.Tensor:
        """Generated codes (..., T) as a float32 waveform on the CPU: each code's mu-law value, then
        `de_emphasis` if the model was trained on emphasised audio (`pre_emphasis`)."""
        wave = mu_law_decode(codes.cpu(), self.levels)
        if not self.config.pre_emphasis:
            return wave
        return de_emphasis(wave, self.config.pre_emphasis).float()

    @property
    def receptive_field(self) -> int:
        """Samples of the past that the output at t depends on: a[t - R .. t - 1]."""
        return (self.config.kernel_size - 1) * sum(self.dilations) + 1

    # ---------------------------------------------------------------------------------------- checks
    def _check_codes(self, a: torch.Tensor) -> None:
        if not isinstance(a, torch.Tensor) or a.dim() != 2:
            raise ValueError(f"a must be a LongTensor (B, T) of mu-law codes, got {_shape(a)}")
        if a.dtype.is_floating_point or a.dtype == torch.bool:
            raise ValueError(f"a must hold integer mu-law codes, not {a.dtype} (use pw.audio.mu_law_encode)")
        if a.shape[1] == 0:
            raise ValueError("a must have at least one time step")
        check_in_range(a, self.levels, "a values")

    def _check_conditions(self, batch: int, steps: int, speaker, cond, context: int = 0) -> tuple:
        """Validate speaker (B,) / cond (B, C, ceil(T / hop) + 2 context); an int speaker is broadcast to the
        batch."""
        if self.num_speakers is None:
            if speaker is not None:
                raise ValueError("this WaveNet was built without num_speakers; speaker must be None")
        else:
            if speaker is None:
                raise ValueError(f"this WaveNet is speaker-conditional (num_speakers={self.num_speakers}); "
                                 f"pass speaker")
            if isinstance(speaker, int) and not isinstance(speaker, bool):
                speaker = torch.full((batch,), speaker, dtype=torch.long)
            if (not isinstance(speaker, torch.Tensor) or speaker.shape != (batch,)
                    or speaker.dtype.is_floating_point):
                raise ValueError(f"speaker must be an int or a LongTensor ({batch},), got {_shape(speaker)}")
            check_in_range(speaker, self.num_speakers, "speaker ids")
        if self.cond_channels is None:
            if cond is not None:
                raise ValueError("this WaveNet was built without cond_channels; cond must be None")
        else:
            if isinstance(context, bool) or not isinstance(context, int) or context < 0:
                raise ValueError(f"context must be an int >= 0 (mel frames on each side), got {context!r}")
            frames = -(-steps // self.hop_length) + 2 * context
            if cond is None:
                raise ValueError(f"this WaveNet is conditioned on mel frames "
                                 f"(cond_channels={self.cond_channels}); pass cond")
            if (not isinstance(cond, torch.Tensor) or not cond.dtype.is_floating_point
                    or cond.shape != (batch, self.cond_channels, frames)):
                extra = " + 2 context" if context else ""
                raise ValueError(f"cond must be a float tensor (B, cond_channels, ceil(T / hop_length){extra}) = "
                                 f"({batch}, {self.cond_channels}, {frames}), got {_shape(cond)}")
        return speaker, cond

    # ---------------------------------------------------------------------------------------- parallel pass
    def _speaker_bias(self, speaker: torch.Tensor | None) -> torch.Tensor | None:
        """V h for every layer: (B, layers, 2G), or None."""
        if speaker is None:
            return None
        return self.speaker_embedding(speaker).view(speaker.shape[0], len(self.blocks), -1)  # (B, L, 2G)

    def _silence_states(self, spk: torch.Tensor | None) -> list[torch.Tensor]:
        """Every layer's input after endless silence: [(1|B, R)] * layers. The left padding of each layer.

        A constant input makes every dilated conv constant too, so one step with the taps summed is exact.
        """
        x = self.embedding.weight[self.silence][None]  # (1, R)
        if self.prediction_embedding is not None:  # silence predicts 0 and leaves no excitation
            zero = torch.zeros(1, dtype=torch.float64, device=x.device)
            x = x + self._prediction_inputs(zero, zero)
        states = []
        for i, block in enumerate(self.blocks):
            states.append(x)
            h = F.linear(x, block.conv.weight.sum(-1), block.conv.bias)  # (1|B, 2G)
            if spk is not None:
                h = h + spk[:, i]  # (B, 2G)
            if block.residual is not None:
                z = block.gate(h)  # (1|B, G)
                x = x + F.linear(z, block.residual.weight[:, :, 0], block.residual.bias)  # (1|B, R)
        return states

    def _prediction_inputs(self, prediction: torch.Tensor, excitation: torch.Tensor) -> torch.Tensor:
        """LPCNet's extra inputs at step t, known before a[t] is drawn: the prediction p_t and the previous
        excitation e_(t-1) = s_(t-1) - p_(t-1), each as its mu-law code through an embedding. (...) -> (..., R)."""
        levels = self.levels
        return (self.prediction_embedding(mu_law_encode(prediction, levels).to(prediction.device))
                + self.excitation_embedding(mu_law_encode(excitation, levels).to(excitation.device)))

    def _lag_frames(self, cond: torch.Tensor, steps: int):
        """(n, frac, voicing) of every sample from the frames (B, C, F): `pitch_lags` and `source_voicing`."""
        rows = cond[:, -PITCH_ROWS:]
        n, frac = pitch_lags(rows, steps, self.hop_length, self.config.sample_rate)
        return n, frac, source_voicing(rows, steps, self.hop_length)

    def _lag_inputs(self, value: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """The pitch-lag input of a step: the past one period back, (...) float64 (`_PitchLag`), as its mu-law
        code through `lag_embedding`, times the step's voicing (...): (..., R)."""
        code = mu_law_encode(value, self.levels).to(value.device)
        return self.lag_embedding(code) * voicing[..., None].to(self.lag_embedding.weight.dtype)

    def _network(self, inp: torch.Tensor, spk: torch.Tensor | None, up: torch.Tensor | None,
                 extra: torch.Tensor | None = None) -> torch.Tensor:
        """Shifted input codes (B, T) (inp[t] = a[t - 1]) -> output parameters (B, C_out, T). extra (B, T, R):
        more inputs at each step, added to the code's embedding (the "lpc_mixture" output's prediction inputs).

        Runs time-major ((B, T, channels): every 1x1 conv is one matrix product) and returns a transposed view.
        """
        x = self.embedding(inp)  # (B, T, R)
        if extra is not None:
            x = x + extra.to(x.dtype)
        up = None if up is None else up.transpose(1, 2).contiguous()  # (B, T, C)
        states = self._silence_states(spk)
        skip = None  # (B T, S): the skip sum, accumulated in place, one matrix product per layer
        for i, block in enumerate(self.blocks):
            x, z = block(x, states[i], None if spk is None else spk[:, i], up)
            z = z.reshape(-1, z.shape[-1])  # (B T, G)
            w = block.skip.weight[:, :, 0]  # (S, G)
            if skip is None:  # every layer's skip bias, added once
                skip = F.linear(z, w, sum(b.skip.bias for b in self.blocks))
            else:  # in skip's dtype: under bf16 autocast a float32 term (the speaker's bias) makes a z float32
                skip = skip.addmm_(z.to(skip.dtype), w.t().to(skip.dtype))
        skip = skip.view(*x.shape[:2], -1)  # (B, T, S)
        head1, head2 = self.head.hidden_conv, self.head.output_conv
        h = F.relu(F.linear(F.relu(skip), head1.weight[:, :, 0], head1.bias))  # (B, T, S)
        return F.linear(h, head2.weight[:, :, 0], head2.bias).transpose(1, 2)  # (B, C_out, T)

    def logits(self, a: torch.Tensor, speaker: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """The output distribution's parameters for every step: (B, levels, T) logits of p(a[t] | a[<t])."""
        self._check_codes(a)
        speaker, cond = self._check_conditions(a.shape[0], a.shape[1], speaker, cond)
        return self._output_params(a, speaker, cond)[0]

    def _output_params(self, past: torch.Tensor, speaker: torch.Tensor | None, cond: torch.Tensor | None,
                       context: int = 0):
        """(the output parameters (B, C_out, T), the LPC prediction of every sample (B, T) or None) given the
        codes `past` (B, T), checked: step t sees past[:t] only."""
        silence = torch.full_like(past[:, :1], self.silence)
        inp = torch.cat([silence, past[:, :-1]], dim=1)  # (B, T): predict a[t] from a[:t]
        up = None if cond is None else self._local(cond, past.shape[1], context)  # (B, C_local, T)
        shift = extra = None
        if self.output.needs_prediction:  # the LPC prediction of every sample from the decoded codes before it
            signal = self.output.centres.to(past.device)[past]  # (B, T) float64
            coeffs = self._prediction_coefficients(cond[..., context:], past.shape[1])  # from the crop's frames on
            shift = lpc.predict(signal, coeffs)  # (B, T)
            if self.prediction_embedding is not None:
                excitation = F.pad(signal - shift, (1, 0))[:, :-1]  # e_(t-1); none before the start
                extra = self._prediction_inputs(shift, excitation)  # (B, T, R)
        if self.lag_embedding is not None:  # the decoded past one pitch period back, from past[:t] only
            steps = past.shape[1]
            n, frac, voicing = self._lag_frames(cond[..., context:], steps)
            values = self._code_values.to(past.device)
            signal = values[past]  # (B, T) float64
            pad = int(n.max()) + 1  # silence before the start, as the network's input has
            signal = torch.cat([values[self.silence].expand(past.shape[0], pad), signal], dim=1)
            at = torch.arange(steps, device=past.device) + pad - n  # index of t - n in the padded signal
            value = (1 - frac) * signal.gather(1, at) + frac * signal.gather(1, at - 1)
            extra = self._lag_inputs(value, voicing)  # (B, T, R)
        return self._network(inp, self._speaker_bias(speaker), up, extra), shift

    def log_prob(self, a: torch.Tensor, speaker: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                 reduce: bool = True, context: int = 0) -> torch.Tensor:
        """log p(a | speaker, cond) in nats: (B,) summed over time, or (B, T) per sample with reduce=False.
        context: cond also holds this many frames before and after a's own (a crop's neighbours in its utterance,
        `cond_context` of them make its conditioning that of the whole utterance); 0: cond is a's frames only."""
        self._check_codes(a)
        speaker, cond = self._check_conditions(a.shape[0], a.shape[1], speaker, cond, context)
        past = a
        if self.training and self.config.input_noise > 0:
            # Teacher forcing shows the network the true past, generation its own draws: trained on a noisy past
            # (the network's inputs and the prediction both), it learns to correct its errors instead of
            # compounding them (LPCNet's noise injection). Evaluation (model.eval()) scores the exact likelihood.
            noise = torch.randn(a.shape, device=a.device) * self.config.input_noise
            past = (a + noise.round().long()).clamp(0, self.levels - 1)
        params, shift = self._output_params(past, speaker, cond, context)  # (B, C_out, T): step t sees past[:t]
        logp = self.output.log_prob(params, a) if shift is None else self.output.log_prob(params, a, shift)
        return logp.sum(1) if reduce else logp

    def _local(self, cond: torch.Tensor, steps: int, context: int = 0) -> torch.Tensor:
        """The local conditioning of every sample from the frames (B, C, F + 2 context): (B, local_channels,
        steps)."""
        up = self.upsampler(cond, context)[..., :steps]
        if not self.config.pitch:
            return up
        # the source reads the frames from the first sample's on (the one after the last too, where there is one)
        return torch.cat([up, pitch_source(cond[:, -PITCH_ROWS:, context:], steps, self.hop_length,
                                           self.config.sample_rate, self.config.source_harmonics).to(up.dtype)],
                         dim=1)

    def _frame_coefficients(self, cond: torch.Tensor) -> torch.Tensor:
        """The LPC coefficients of every mel frame (B, C, F): (B, F, lpc_order) float64."""
        return lpc.coefficients(cond[:, : self.config.mel_bands], self.config.sample_rate, self.config.lpc_order)

    def _prediction_coefficients(self, cond: torch.Tensor, steps: int) -> torch.Tensor:
        """The LPC coefficients of every sample from the mel frames (B, C, F): (B, steps, lpc_order) float64."""
        return lpc.per_sample(self._frame_coefficients(cond), steps, self.config.hop_length)

    def _sampler(self, cond: torch.Tensor | None, steps: int, batch: int, floor: float = 0.0):
        """(sample, inputs): what draws a code from one step's output parameters, and what gives the step's extra
        inputs (B, R) before the network runs (None: no extra inputs). The output's own sample (with the
        categorical output's probability `floor`, if any), or for a predictive output a `_LinearPrediction` that
        keeps the decoded past. The generators call inputs() then sample() once per step, in order."""
        if not self.output.needs_prediction:
            sample = functools.partial(self.output.sample, floor=floor) if floor else self.output.sample
            if self.lag_embedding is None:
                return sample, None
            state = _PitchLag(self, cond, steps, batch, sample)
            return state.sample, state.inputs
        state = _LinearPrediction(self, self._prediction_coefficients(cond, steps), batch)
        return state.sample, (state.inputs if self.prediction_embedding is not None else None)

    def forward(self, a: torch.Tensor, speaker: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, context: int = 0) -> torch.Tensor:
        """The training pass: log p(a | speaker, cond), (B,) nats."""
        return self.log_prob(a, speaker, cond, reduce=True, context=context)


    # ---------------------------------------------------------------------------------------- generation
    BACKENDS: ClassVar[tuple[str, ...]] = ("auto", "fused", "torch", "naive")

    @torch.no_grad()
    @full_float32()
    def generate(self, steps: int, batch: int = 1, speaker: torch.Tensor | int | None = None,
                 cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 cached: bool | None = None, temperature: float = 1.0, fast: bool | None = None,
                 bf16: bool | None = None, *, backend: str = "auto", weights: str = "float32",
                 voiced_temperature: float | None = None, probability_floor: float = 0.0,
                 draw_shaping: int = 0) -> torch.Tensor:
        """Draw `batch` waveforms of `steps` mu-law codes: LongTensor (batch, steps).

        speaker: an int or (batch,) ids; cond: (batch, cond_channels, ceil(steps / hop_length)) mel frames.
        backend: "fused" the whole step in C++ (`pixelwave.fast.wavenet_step`; CPU, float32/float64, a C++
        compiler at first use, $PIXELWAVE_NO_FAST unset: `fused_unsupported` says why not), "torch" the PyTorch
        queue loop (O(layers) per sample), "naive" the parallel pass over the last `receptive_field` inputs per
        sample (the reference), "auto" fused where it can run, else torch. All consume the same uniforms from
        `generator` and draw the same codes (exactly so in float64).
        weights: the fused step's weights: "float32" (the model's dtype), "bf16" (bfloat16), "fp16" (IEEE half
        floats, where the CPU converts them: x86 F16C, ARM NEON) or "int8" (a scale per output channel), widened
        to float32 in registers; inputs, products and sums float32; fewer bytes per
        sample, so faster at batch 1; the codes then follow the model to the weights' precision
        (`pixelwave.fast.wavenet_step.run`). All but "float32" need the fused step and a float32 model.
        temperature: every draw is from softmax(logits / temperature) (or the mixture's code masses so tempered).
        voiced_temperature: a model with pitch rows (`--pitch`) only: the temperature in voiced samples, from the
        frames' voicing as the sine source follows it (`source_voicing`: `temperature` where unvoiced, this where
        fully voiced, linear between), as LPCNet samples voiced speech sharper than noise.
        probability_floor: the categorical output only: every code's probability (after the temperature) less this,
        negatives to zero, renormalised, as LPCNet draws (`categorical_sample`); in [0, 1 / levels), 0 = off.
        draw_shaping: 0 (default) independent draws; 1 or 2: the draws' uniforms are anticorrelated from step to
        step so that each draw's distance from the middle of its distribution is high-passed once or twice
        (`pixelwave.distributions.shaped_uniforms`: noise shaping; each draw is still from its step's
        distribution, the steps no longer independently). Any output; every backend draws the same codes.
        cached: True (default) is backend="auto", False the naive reference (DESIGN.md's spelling).
        fast, bf16: the 0.1.0 spellings, deprecated: fast=True is backend="fused", fast=False "torch", bf16=True
        weights="bf16".
        """
        backend, weights = self._generation_choice(backend, weights, cached, fast, bf16)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, not {steps!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, not {batch!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        speaker, cond = self._check_conditions(batch, steps, speaker, cond)
        if voiced_temperature is not None:
            if not voiced_temperature > 0:
                raise ValueError(f"voiced_temperature must be > 0, not {voiced_temperature}")
            if not self.config.pitch:
                raise ValueError("voiced_temperature follows the frames' voicing: the model has no pitch rows "
                                 "(train with --pitch)")
        if probability_floor:
            if self.output is not CategoricalOutput:
                raise ValueError(f"probability_floor is the categorical output's draw; this model's output is "
                                 f"{self.config.output!r}")
            check_floor(probability_floor, self.levels)
        if weights != "float32":
            why = self.fused_unsupported(weights)
            if why:
                raise ValueError(f"{weights} generation cannot run: {why}")
        param = next(self.parameters())
        u = shaped_uniforms(batch, steps, draw_shaping, generator).to(param.device)  # all the randomness, up front
        if voiced_temperature is not None:  # a temperature per draw (B, steps), like u
            v = source_voicing(cond[:, -PITCH_ROWS:], steps, self.hop_length).to(u.device)
            temperature = (temperature + (voiced_temperature - temperature) * v).to(u.dtype)
        spk = self._speaker_bias(None if speaker is None else speaker.to(param.device))
        up = None
        if cond is not None:
            up = self._local(cond.to(param.device, param.dtype), steps)  # (B, C_local, steps), once
        was_training = self.training
        self.eval()
        try:
            cond = None if cond is None else cond.to(param.device)
            if backend == "naive":
                return self._generate_naive(steps, spk, up, u, temperature,
                                            *self._sampler(cond, steps, batch, probability_floor))
            if backend in ("auto", "fused"):
                codes = self._generate_fused(steps, spk, up, u, temperature, weights, cond, probability_floor)
                if codes is not None:
                    return codes
                if backend == "fused" or weights != "float32":
                    why = self.fused_unsupported(weights) or "the kernel failed to start"
                    raise RuntimeError(f"backend='fused', but the fused WaveNet step cannot run here: {why}")
            sample, inputs = self._sampler(cond, steps, batch, probability_floor)
            return self._generate_cached(steps, spk, up, u, temperature, sample, inputs, cond)
        finally:
            self.train(was_training)

    def _generation_choice(self, backend, weights, cached, fast, bf16) -> tuple[str, str]:
        """(backend, weights) from generate's keywords, the deprecated ones included."""
        # cached= is DESIGN.md's spelling and stays (cached=False is the naive reference); fast= and bf16= warn.
        old = {k: v for k, v in (("fast", fast), ("bf16", bf16)) if v is not None}
        if old:
            warnings.warn(f"WaveNet.generate({', '.join(f'{k}={v!r}' for k, v in old.items())}) is deprecated; use "
                          f"backend='auto'|'fused'|'torch'|'naive' and weights='float32'|'bf16'", DeprecationWarning,
                          stacklevel=4)
        if old or cached is not None:
            if backend != "auto" or weights != "float32":
                raise ValueError("pass backend= and weights=, or cached= and the deprecated fast=, bf16=, not both")
            if bf16 and (cached is False or fast is False):
                raise ValueError("bf16 generation cannot run: bf16 runs in the fused step: cached=True and fast "
                                 "not False")
            weights = "bf16" if bf16 else "float32"
            backend = "naive" if cached is False else {True: "fused", False: "torch", None: "auto"}[fast]
        if backend not in self.BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(self.BACKENDS)}, not {backend!r}")
        if weights not in WEIGHT_FORMATS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, not {weights!r}")
        if weights != "float32" and backend not in ("auto", "fused"):
            raise ValueError(f"weights={weights!r} is the fused step's precision: backend 'auto' or 'fused', "
                             f"not {backend!r}")
        return backend, weights

    def fused_unsupported(self, weights: str = "float32", dtype: torch.dtype | None = None,
                          device: torch.device | None = None) -> str | None:
        """Why the fused step cannot generate from this model here with `weights` (None if it can); dtype and
        device default to the model's."""
        param = next(self.parameters())
        dtype = param.dtype if dtype is None else dtype
        device = param.device if device is None else device
        if self._fused_output() is None:
            return (f"the fast path draws from the categorical, logistic-mixture and lpc-mixture outputs, "
                    f"not {self.output!r}")
        cfg = self.config
        return wavenet_step.cannot_run(dtype, device, weights, (cfg.residual_channels, cfg.gate_channels,
                                                               cfg.skip_channels))

    def _fused_output(self) -> int | None:
        """The fused step's code for this output: 0 categorical, K a K-logistic mixture (over the codes' bins, or
        around the linear prediction: `GenerationWeights.prediction` says which), None another output."""
        if self.output is CategoricalOutput:
            return 0
        if type(self.output) in (LogisticMixtureOutput, PredictiveMixtureOutput):
            return self.output.mixtures
        return None

    def _embedding_or_zeros(self, table: nn.Embedding | None) -> torch.Tensor:
        return self.embedding.weight.new_zeros(self.embedding.weight.shape) if table is None else table.weight

    def generation_weights(self, spk: torch.Tensor | None, batch: int, weights: str = "float32",
                           cond: torch.Tensor | None = None, steps: int | None = None) -> GenerationWeights:
        """This model's weights packed for generating `batch` sequences with speaker biases `spk` (B, L, 2G) or
        None: what every fast backend reads (generation.py). cond (B, C, F): the mel frames, which the
        "lpc_mixture" output needs for its prediction coefficients (`GenerationWeights.prediction`), and the
        pitch lag (`GenerationWeights.lag`) for `steps` samples."""
        lag = None
        if self.lag_embedding is not None:
            if cond is None or cond.shape[0] != batch or steps is None:
                raise ValueError(f"the pitch lag follows the frames' f0: pass cond ({batch}, {self.cond_channels}, "
                                 f"F) and steps, got {_shape(cond)} and {steps!r}")
            n, frac, voicing = self._lag_frames(cond, steps)
            values = self._code_values
            lag = LagWeights(embedding=self.lag_embedding.weight, n=n, frac=frac, voicing=voicing, values=values,
                             silence=float(values[self.silence]))
        prediction = None
        if self.output.needs_prediction:
            if cond is None or cond.shape[0] != batch:
                raise ValueError(f"the lpc_mixture output predicts from the mel frames: pass cond ({batch}, "
                                 f"{self.cond_channels}, F), got {_shape(cond)}")
            prediction = PredictionWeights(
                # without prediction_inputs the fused step adds zero rows: x + 0 is x exactly
                prediction_embedding=self._embedding_or_zeros(self.prediction_embedding),
                excitation_embedding=self._embedding_or_zeros(self.excitation_embedding),
                coefficients=self._frame_coefficients(cond), hop_length=self.hop_length,
                edges=self.output.edges, centres=self.output.centres)
        blocks = self.blocks
        static = torch.stack([b.conv.bias for b in blocks])[None].expand(batch, -1, -1)  # (B, L, 2G)
        if spk is not None:
            static = static + spk
        states = self._silence_states(spk)  # [(1|B, R)] * L
        mel = self.upsampler is not None
        return GenerationWeights(
            format=weights, dilations=tuple(self.dilations), kernel_size=self.config.kernel_size,
            levels=self.levels, mixtures=self._fused_output(), initial_code=self.silence,
            embedding=self.embedding.weight,
            conv_w=torch.stack([b.conv.weight for b in blocks]),
            static_bias=static.contiguous(),
            init_states=torch.stack([s.expand(batch, -1) for s in states], dim=1),
            res_w=torch.stack([b.residual.weight[:, :, 0] for b in blocks[:-1]]) if len(blocks) > 1 else None,
            res_b=torch.stack([b.residual.bias for b in blocks[:-1]]) if len(blocks) > 1 else None,
            skip_w=torch.stack([b.skip.weight[:, :, 0] for b in blocks]),
            skip_b=torch.stack([b.skip.bias for b in blocks]).sum(0),
            h1_w=self.head.hidden_conv.weight[:, :, 0], h1_b=self.head.hidden_conv.bias,
            h2_w=self.head.output_conv.weight[:, :, 0], h2_b=self.head.output_conv.bias,
            cond_w=torch.cat([b.cond_proj.weight[:, :, 0] for b in blocks]) if mel else None,
            cond_b=torch.cat([b.cond_proj.bias for b in blocks]) if mel else None,
            prediction=prediction, lag=lag,
        )

    # The backends, on what `generate` prepared: speaker biases spk (B, L, 2G) or None, upsampled mel features
    # up (B, C, steps) or None, uniforms u (B, steps).
    # sample, inputs: from `_sampler`; cond (B, C, F): the mel frames, for the "lpc_mixture" output.
    def _generate_naive(self, steps, spk, up, u, temperature, sample=None, inputs=None) -> torch.Tensor:
        return generate_naive(self._network, self.silence, self.receptive_field, steps, spk, up, u, temperature,
                              sample or self.output.sample, inputs)

    def _generate_cached(self, steps, spk, up, u, temperature, sample=None, inputs=None, cond=None) -> torch.Tensor:
        # The queue loop takes the prediction from `inputs` and `sample` (_LinearPrediction), not the weights'.
        return generate_torch(self.generation_weights(spk, u.shape[0], cond=cond, steps=steps), steps, up, u,
                              temperature, sample or self.output.sample, inputs)

    def _generate_fused(self, steps, spk, up, u, temperature, weights="float32", cond=None,
                        floor=0.0) -> torch.Tensor | None:
        if self.fused_unsupported(weights) is not None:
            return None
        w = self.generation_weights(spk, u.shape[0], weights, cond, steps)
        codes = wavenet_step.run(w, steps, up, u, temperature, floor=floor)
        return None if codes is None else codes.to(u.device)


def _shape(v) -> str:
    return f"{v.dtype} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else repr(type(v).__name__)
