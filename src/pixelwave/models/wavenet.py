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
projection per layer).

Generation: all randomness comes from `generator` up front (one uniform per sample) and every sample is drawn
by inverse CDF, so the naive generator (the parallel pass over the last R inputs, per sample) and the cached
one (a queue of past inputs per layer, O(layers) per sample) draw the same codes from the same seed. They
compute the same numbers in a different order; in float32 a draw can flip when u lands within rounding
(~1e-6) of a CDF boundary, so exact equality over long runs is guaranteed in float64 (`model.double()`, as
the tests run it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.audio import silence_code
from pixelwave.distributions import (
    categorical_log_prob,
    categorical_sample,
    discretized_logistic_mixture_log_prob,
    discretized_logistic_mixture_sample,
    mixture_param_count,
)
from pixelwave.models.base import Autoregressive, check_in_range

_COND_CHUNK = 1024  # the cached generator projects local conditioning for this many samples at a time


class CategoricalOutput:
    """p(a_t | a_<t) = softmax(logits) over the `levels` mu-law codes: the network emits `levels` channels."""

    @staticmethod
    def channels(levels: int) -> int:
        return levels

    @staticmethod
    def log_prob(params: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """params (B, levels, T), a (B, T) -> log p (B, T) in nats."""
        return categorical_log_prob(params, a, dim=1)

    @staticmethod
    def sample(params: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
        """params (B, levels), u (B,) uniforms -> codes (B,)."""
        return categorical_sample(params, u, temperature)


class LogisticMixtureOutput:
    """p(a_t | a_<t) = a mixture of `mixtures` logistics on [-1, 1], integrated exactly over the `levels` bins
    (edge bins to +-infinity): the one implementation PixelCNN++ uses (pixelwave.distributions). 3K channels."""

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


# Output distributions by config name: (levels, mixtures) -> an object with channels / log_prob / sample.
OUTPUTS = {"categorical": lambda levels, mixtures: CategoricalOutput,
           "logistic_mixture": LogisticMixtureOutput}


class ConditionUpsampler(nn.Module):
    """Mel frames (B, C, F) -> features at the audio rate (B, C, F * hop); frame f centred on sample f * hop.

    A 3-frame conv mixes neighbouring frames, then a depthwise transposed conv with a 2*hop kernel (stride
    hop) spreads every frame over the samples between its neighbours' centres; its kernel starts as a
    triangle, i.e. linear interpolation, and is learned. The path is linear: the gates add the nonlinearity.
    """

    def __init__(self, channels: int, hop_length: int):
        super().__init__()
        self.hop_length = hop_length
        self.frame_conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.interpolate = nn.ConvTranspose1d(channels, channels, kernel_size=2 * hop_length,
                                              stride=hop_length, groups=channels, bias=False)
        with torch.no_grad():
            j = torch.arange(2 * hop_length, dtype=torch.float32)
            triangle = 1.0 - (j - hop_length).abs() / hop_length  # 0 at the edges, 1 at the frame centre
            self.interpolate.weight.copy_(triangle.expand_as(self.interpolate.weight))

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        frames, hop = cond.shape[-1], self.hop_length
        up = self.interpolate(self.frame_conv(cond))  # (B, C, (F + 1) * hop)
        return up[..., hop: hop + frames * hop]  # (B, C, F * hop): from frame 0's centre on


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


@dataclass
class WaveNetConfig:
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
    output: str = "categorical"  # or "logistic_mixture"
    mixtures: int = 10  # logistic components of the "logistic_mixture" output


class WaveNet(Autoregressive):
    model_name = "wavenet"
    config_class = WaveNetConfig
    data_kind = "audio"
    data_key = "a"

    def __init__(self, layers: int = 20, stacks: int = 2, residual_channels: int = 64,
                 gate_channels: int = 128, skip_channels: int = 256, kernel_size: int = 2, levels: int = 256,
                 num_speakers: int | None = None, cond_channels: int | None = None,
                 hop_length: int | None = None, output: str = "categorical", mixtures: int = 10):
        super().__init__()
        _check_config(layers, stacks, residual_channels, gate_channels, skip_channels, kernel_size, levels,
                      num_speakers, cond_channels, hop_length, output)
        self.config = WaveNetConfig(layers, stacks, residual_channels, gate_channels, skip_channels,
                                    kernel_size, levels, num_speakers, cond_channels, hop_length, output, mixtures)
        if not (isinstance(mixtures, int) and mixtures >= 1):
            raise ValueError(f"mixtures must be a positive integer, not {mixtures!r}")
        self.levels, self.num_speakers = levels, num_speakers
        self.cond_channels, self.hop_length = cond_channels, hop_length
        self.output = OUTPUTS[output](levels, mixtures)
        self.silence = silence_code(levels)
        per_stack = layers // stacks
        self.dilations = [2 ** (i % per_stack) for i in range(layers)]  # 1, 2, 4, ... restarting every stack

        self.embedding = nn.Embedding(levels, residual_channels)  # the previous code, one-hot -> 1x1 conv
        self.speaker_embedding = None
        if num_speakers:
            # V h for every layer at once: (speaker) -> (layers * 2G); small, not to swamp an untrained model.
            self.speaker_embedding = nn.Embedding(num_speakers, layers * 2 * gate_channels)
            nn.init.normal_(self.speaker_embedding.weight, std=0.1)
        self.upsampler = ConditionUpsampler(cond_channels, hop_length) if cond_channels else None
        self.blocks = nn.ModuleList(
            ResidualBlock(residual_channels, gate_channels, skip_channels, kernel_size, d, cond_channels,
                          last=i == layers - 1)
            for i, d in enumerate(self.dilations))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(skip_channels, self.output.channels(levels), 1))

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

    def _check_conditions(self, batch: int, steps: int, speaker, cond) -> tuple:
        """Validate speaker (B,) / cond (B, C, ceil(T / hop)); an int speaker is broadcast to the batch."""
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
            frames = -(-steps // self.hop_length)
            if cond is None:
                raise ValueError(f"this WaveNet is conditioned on mel frames "
                                 f"(cond_channels={self.cond_channels}); pass cond")
            if (not isinstance(cond, torch.Tensor) or not cond.dtype.is_floating_point
                    or cond.shape != (batch, self.cond_channels, frames)):
                raise ValueError(f"cond must be a float tensor (B, cond_channels, ceil(T / hop_length)) = "
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

    def _network(self, inp: torch.Tensor, spk: torch.Tensor | None, up: torch.Tensor | None) -> torch.Tensor:
        """Shifted input codes (B, T) (inp[t] = a[t - 1]) -> output parameters (B, C_out, T).

        Runs time-major ((B, T, channels): every 1x1 conv is one matrix product) and returns a transposed view.
        """
        x = self.embedding(inp)  # (B, T, R)
        up = None if up is None else up.transpose(1, 2).contiguous()  # (B, T, C)
        states = self._silence_states(spk)
        skip = None  # (B T, S): the skip sum, accumulated in place, one matrix product per layer
        for i, block in enumerate(self.blocks):
            x, z = block(x, states[i], None if spk is None else spk[:, i], up)
            z = z.reshape(-1, z.shape[-1])  # (B T, G)
            w = block.skip.weight[:, :, 0]  # (S, G)
            if skip is None:  # every layer's skip bias, added once
                skip = F.linear(z, w, sum(b.skip.bias for b in self.blocks))
            else:
                skip = skip.addmm_(z, w.t().to(z.dtype))
        skip = skip.view(*x.shape[:2], -1)  # (B, T, S)
        head1, head2 = self.head[1], self.head[3]
        h = F.relu(F.linear(F.relu(skip), head1.weight[:, :, 0], head1.bias))  # (B, T, S)
        return F.linear(h, head2.weight[:, :, 0], head2.bias).transpose(1, 2)  # (B, C_out, T)

    def logits(self, a: torch.Tensor, speaker: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """The output distribution's parameters for every step: (B, levels, T) logits of p(a[t] | a[<t])."""
        self._check_codes(a)
        speaker, cond = self._check_conditions(a.shape[0], a.shape[1], speaker, cond)
        silence = torch.full_like(a[:, :1], self.silence)
        inp = torch.cat([silence, a[:, :-1]], dim=1)  # (B, T): predict a[t] from a[:t]
        up = None if cond is None else self.upsampler(cond)[..., : a.shape[1]]  # (B, C, T)
        return self._network(inp, self._speaker_bias(speaker), up)

    def log_prob(self, a: torch.Tensor, speaker: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                 reduce: bool = True) -> torch.Tensor:
        """log p(a | speaker, cond) in nats: (B,) summed over time, or (B, T) per sample with reduce=False."""
        logp = self.output.log_prob(self.logits(a, speaker, cond), a)  # (B, T)
        return logp.sum(1) if reduce else logp

    def forward(self, a: torch.Tensor, speaker: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """The training pass: log p(a | speaker, cond), (B,) nats."""
        return self.log_prob(a, speaker, cond, reduce=True)

    # ---------------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, steps: int, batch: int = 1, speaker: torch.Tensor | int | None = None,
                 cond: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 cached: bool = True, temperature: float = 1.0, fast: bool | None = None,
                 bf16: bool = False) -> torch.Tensor:
        """Draw `batch` waveforms of `steps` mu-law codes: LongTensor (batch, steps).

        speaker: an int or (batch,) ids; cond: (batch, cond_channels, ceil(steps / hop_length)) mel frames.
        cached=True keeps a queue per layer (O(layers) per sample); cached=False re-runs the parallel pass
        over the last `receptive_field` inputs for every sample. Both consume the same uniforms from
        `generator`. fast (cached=True only): None runs the fused C++ step of `pixelwave.fast.wavenet_step`
        where it can run (CPU, float32/float64, a C++ compiler at first use, and
        $PIXELWAVE_NO_FAST unset), else the PyTorch queue loop `_generate_cached`; False always runs that
        loop; True requires the fused step. All draw the same codes from the same seed.
        bf16=True runs the fused step with bfloat16 weights (float32 sums; `pixelwave.fast.wavenet_step`): on
        CPUs with AVX512-BF16 faster, and the codes then follow the model to bfloat16's precision instead of
        matching the float32 paths. It needs the fused step (cached, fast not False) and a float32 model.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, not {steps!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, not {batch!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        speaker, cond = self._check_conditions(batch, steps, speaker, cond)
        param = next(self.parameters())
        if bf16:
            from pixelwave.fast import wavenet_step

            why = ("bf16 runs in the fused step: cached=True and fast not False" if not cached or fast is False
                   else wavenet_step.bf16_unsupported(self, param.dtype, param.device))
            if why:
                raise ValueError(f"bf16 generation cannot run: {why}")
        u = torch.rand(batch, steps, generator=generator).to(param.device)  # all the randomness, up front
        spk = self._speaker_bias(None if speaker is None else speaker.to(param.device))
        up = None
        if cond is not None:
            up = self.upsampler(cond.to(param.device, param.dtype))[..., :steps]  # (B, C, steps), once
        was_training = self.training
        self.eval()
        try:
            if cached:
                if fast is not False:
                    from pixelwave.fast import wavenet_step

                    codes = wavenet_step.generate(self, steps, spk, up, u, temperature, bf16=bf16)
                    if codes is not None:
                        return codes
                    if fast or bf16:
                        why = wavenet_step.unsupported(self, param.dtype, param.device) or "the kernel failed to start"
                        asked = "bf16=True" if bf16 else "fast=True"
                        raise RuntimeError(f"{asked}, but the fused WaveNet step cannot run here: {why}")
                return self._generate_cached(steps, spk, up, u, temperature)
            return self._generate_naive(steps, spk, up, u, temperature)
        finally:
            self.train(was_training)

    def _generate_naive(self, steps, spk, up, u, temperature) -> torch.Tensor:
        """The reference: for every sample, the parallel pass over the window of inputs it can see."""
        batch, field = u.shape[0], self.receptive_field
        # seq[t + 1] = a[t]; seq[0] is the silence before the start
        seq = torch.full((batch, steps + 1), self.silence, dtype=torch.long, device=u.device)
        for t in range(steps):
            lo = max(0, t + 1 - field)  # outside the window nothing can reach the output at t
            window_up = None if up is None else up[..., lo: t + 1]
            params = self._network(seq[:, lo: t + 1], spk, window_up)[:, :, -1]  # (B, C_out)
            seq[:, t + 1] = self.output.sample(params, u[:, t], temperature)
        return seq[:, 1:]

    def _generate_cached(self, steps, spk, up, u, temperature) -> torch.Tensor:
        """Fast WaveNet: per layer a ring buffer of its last (k-1)*d inputs; a few small matmuls per layer."""
        batch, k = u.shape[0], self.config.kernel_size
        g, r = self.config.gate_channels, self.config.residual_channels
        layers = len(self.blocks)
        states = self._silence_states(spk)
        dtype = states[0].dtype
        # Per-layer weights as matmuls on (B, features) rows. taps: (k*R, 2G), rows j*R .. (j+1)*R - 1 = tap j,
        # the one applied to the input (k-1-j)*d steps back; res_w: (G, R); skip_w: (L*G, S), all skips at once.
        taps = [b.conv.weight.permute(2, 1, 0).reshape(k * r, 2 * g) for b in self.blocks]
        res_w = [None if b.residual is None else b.residual.weight[:, :, 0].t() for b in self.blocks]
        res_b = [None if b.residual is None else b.residual.bias for b in self.blocks]  # (R,)
        skip_w = torch.cat([b.skip.weight[:, :, 0].t() for b in self.blocks])
        skip_b = torch.stack([b.skip.bias for b in self.blocks]).sum(0)  # (S,)
        head1, head2 = self.head[1], self.head[3]
        h1_w, h2_w = head1.weight[:, :, 0].t(), head2.weight[:, :, 0].t()  # (S, S), (S, C_out)
        static = torch.stack([b.conv.bias for b in self.blocks])[None].expand(batch, -1, -1)  # (B, L, 2G)
        if spk is not None:
            static = static + spk
        static_l = [static[:, i].contiguous() for i in range(layers)]  # (B, 2G) per layer
        if up is not None:
            cond_w = torch.cat([b.cond_proj.weight[:, :, 0] for b in self.blocks])  # (L*2G, C)
            cond_b = torch.cat([b.cond_proj.bias for b in self.blocks])  # (L*2G,)
        # Queues start full of the silence state: exactly the parallel pass's left padding.
        spans = [(k - 1) * d for d in self.dilations]
        # (B, span, R) each. repeat() copies: the first state is a view of the embedding weight.
        queues = [states[i].expand(batch, -1)[:, None, :].repeat(1, spans[i], 1) for i in range(layers)]
        z_all = torch.empty(batch, layers * g, dtype=dtype, device=u.device)  # every layer's gate output
        emb = self.embedding.weight  # (levels, R)
        out = torch.empty(batch, steps, dtype=torch.long, device=u.device)
        code = torch.full((batch,), self.silence, dtype=torch.long, device=u.device)
        bias = static_l
        for t in range(steps):
            if up is not None and t % _COND_CHUNK == 0:
                chunk = up[..., t: t + _COND_CHUNK]  # (B, C, n)
                proj = torch.einsum("bcn,kc->nbk", chunk, cond_w) + cond_b  # (n, B, L*2G)
                proj = proj.view(chunk.shape[-1], batch, layers, 2 * g) + static[None]  # (n, B, L, 2G)
                proj = proj.permute(0, 2, 1, 3).contiguous()  # (n, L, B, 2G): a step's biases contiguous
            if up is not None:
                bias = proj[t % _COND_CHUNK]  # (L, B, 2G)
            x = emb[code]  # (B, R): the previous sample
            for i in range(layers):
                q, span = queues[i], spans[i]
                if k == 2:  # the input d steps ago, read before this step overwrites its slot
                    past = q[:, t % span]  # (B, R)
                else:
                    idx = [(t - (k - 1 - j) * self.dilations[i]) % span for j in range(k - 1)]
                    past = q[:, idx].reshape(batch, (k - 1) * r)  # (B, (k-1)*R): taps 0 .. k-2
                h = torch.addmm(bias[i], torch.cat([past, x], dim=1), taps[i])  # (B, 2G)
                q[:, t % span] = x
                zi = z_all[:, i * g: (i + 1) * g]  # (B, G) view
                torch.mul(torch.tanh(h[:, :g]), torch.sigmoid(h[:, g:]), out=zi)
                if res_w[i] is not None:
                    x = torch.addmm(x, zi, res_w[i]).add_(res_b[i])  # (B, R)
            skip = torch.addmm(skip_b, z_all, skip_w).relu_()  # (B, S): the summed skips
            hidden = torch.addmm(head1.bias, skip, h1_w).relu_()  # (B, S)
            params = torch.addmm(head2.bias, hidden, h2_w)  # (B, C_out)
            code = self.output.sample(params, u[:, t], temperature)
            out[:, t] = code
        return out


def _shape(v) -> str:
    return f"{v.dtype} {tuple(v.shape)}" if isinstance(v, torch.Tensor) else repr(type(v).__name__)


def _check_config(layers, stacks, residual_channels, gate_channels, skip_channels, kernel_size, levels,
                  num_speakers, cond_channels, hop_length, output) -> None:
    def positive(name, v):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")

    for name, v in (("layers", layers), ("stacks", stacks), ("residual_channels", residual_channels),
                    ("gate_channels", gate_channels), ("skip_channels", skip_channels)):
        positive(name, v)
    if layers % stacks:
        raise ValueError(f"layers ({layers}) must split into {stacks} equal stacks")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 2:
        raise ValueError(f"kernel_size must be an integer >= 2, not {kernel_size!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, not {levels!r}")
    if num_speakers is not None:
        positive("num_speakers", num_speakers)
    if (cond_channels is None) != (hop_length is None):
        raise ValueError("cond_channels and hop_length go together: set both (mel conditioning) or neither")
    if cond_channels is not None:
        positive("cond_channels", cond_channels)
        positive("hop_length", hop_length)
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
