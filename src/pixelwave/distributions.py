"""Output distributions: a categorical over `levels` values, and the discretized logistic mixture of PixelCNN++.

Both give exact likelihoods over the `levels` values (no dequantisation needed) and sample from given uniforms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bits_per_dim(log_prob: torch.Tensor, dims: int) -> torch.Tensor:
    """-log p / (dims * ln 2), averaged over the batch. `log_prob` is (B,) in nats, summed over `dims` values."""
    return -log_prob.mean() / (dims * math.log(2.0))


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) are normalised in float32; float64 stays float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """log softmax(logits)[x] along `dim`; `x` has the shape of `logits` without `dim`."""
    logp = F.log_softmax(upcast(logits), dim=dim)
    return logp.gather(dim, x.unsqueeze(dim)).squeeze(dim)


def check_floor(floor: float, levels: int) -> None:
    """ValueError unless `floor` is a probability floor for `levels` values: 0 <= floor < 1 / levels."""
    if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 <= floor < 1 / levels:
        raise ValueError(f"the probability floor must be in [0, 1/{levels}) for {levels} values (so that the most "
                         f"likely keeps some mass), not {floor!r}")


def categorical_probs(logits: torch.Tensor, temperature: float | torch.Tensor = 1.0,
                      floor: float = 0.0) -> torch.Tensor:
    """The distribution `categorical_sample` draws from, over the last dim: softmax(logits / T), and with a
    floor in [0, 1 / L) for L values every probability less `floor`, negatives to zero, renormalised (LPCNet's
    sampling: the many unlikely values, whose mass is a noise floor, are never drawn; the most likely value
    always keeps some mass). T: a number, or a tensor of logits[..., 0]'s shape (a temperature per draw)."""
    if floor:
        check_floor(floor, logits.shape[-1])
    if isinstance(temperature, torch.Tensor):
        if not bool((temperature > 0).all()):
            raise ValueError("temperature must be > 0 everywhere")
        temperature = temperature.unsqueeze(-1)
    elif temperature <= 0:
        raise ValueError(f"temperature must be > 0, not {temperature}")
    probs = F.softmax(upcast(logits) / temperature, dim=-1)
    if floor:
        probs = (probs - floor).clamp_(min=0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def categorical_sample(logits: torch.Tensor, u: torch.Tensor,
                       temperature: float | torch.Tensor = 1.0, floor: float = 0.0) -> torch.Tensor:
    """Inverse-CDF sample from `categorical_probs(logits, temperature, floor)` over the last dim, given uniforms
    `u` of shape logits[..., 0]; T a number or a tensor of u's shape (a temperature per draw).

    The randomness is an input, so every sampler (naive, cached, fused) that sees the same logits and the same
    `u` draws the same value.
    """
    cdf = categorical_probs(logits, temperature, floor).cumsum(-1)  # (..., L)
    idx = (cdf < u.unsqueeze(-1)).sum(-1)  # first index whose CDF reaches u
    return idx.clamp_(max=logits.shape[-1] - 1)


DRAW_SHAPINGS = (0, 1, 2)


def high_passed(g: torch.Tensor, order: int) -> torch.Tensor:
    """Unit-variance white noise g (..., T + order) -> (..., T): differenced `order` times along the last dim (the
    filter (1 - z^-1)^order) and divided by sqrt(C(2 order, order)), so that it has unit variance again."""
    return torch.diff(g, n=order, dim=-1) / math.sqrt(math.comb(2 * order, order)) if order else g


def shaped_uniforms(batch: int, steps: int, order: int = 0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The uniforms of `batch` rows of `steps` inverse-CDF draws, (batch, steps) float32 in [0, 1), whose draws'
    errors are high-passed `order` times (noise shaping; `draw_shaping` on `WaveNet.generate`).

    order 0: `torch.rand(batch, steps, generator=generator)` itself, independent draws. order n = 1 or 2: Gaussians
    (batch, steps + n) from `generator`, differenced n times along the steps (the filter (1 - z^-1)^n), divided by
    sqrt(C(2n, n)) to unit variance again, through the normal CDF. Each value is then exactly uniform by itself
    (each draw is still from its own step's distribution) and neighbours are anticorrelated (their Gaussians' lag-1
    correlation -1/2 for n = 1, -2/3 for n = 2), so the quantile each step draws at, and with it how far the draw
    lands from the middle of its distribution, has a spectrum rising as |2 sin(w / 2)|^(2n): the draw's error is
    moved out of the low frequencies, as a sigma-delta converter moves its quantisation error. The steps are then
    no longer drawn independently: the codes are not a sample of the model's joint distribution (as with a
    temperature), which the exact likelihoods never depend on.
    """
    if isinstance(order, bool) or not isinstance(order, int) or order not in DRAW_SHAPINGS:
        raise ValueError(f"draw shaping must be one of {', '.join(map(str, DRAW_SHAPINGS))}, not {order!r}")
    if not order:
        return torch.rand(batch, steps, generator=generator)
    g = high_passed(torch.randn(batch, steps + order, generator=generator, dtype=torch.float64), order)
    below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0))  # float32 rounding must not reach 1
    return torch.special.ndtr(g).float().clamp_(max=below_one)


# ---- discretized logistic mixture (Salimans et al. 2017, PixelCNN++; also WaveNet's optional output) ----
#
# `levels` integer values sit at the centres of equal bins on [-1, 1]: value v <-> 2v/(levels-1) - 1, bin width
# 2/(levels-1). A logistic(mean, scale) gives bin v the mass CDF(centre + w/2) - CDF(centre - w/2), except that the
# first bin reaches down to -inf and the last up to +inf, so the masses over the `levels` bins sum to exactly 1.
# Parameters come as (B, P, *S) with P = K * (1 + 2C + C(C-1)/2) for K components and C channels, laid out as
# [weights K | means K*C | log-scales K*C | coefficients K*C(C-1)/2] (component-major inside each block). One
# component is shared by all channels of a position; channel c's mean is shifted by tanh(coefficient) times each
# earlier channel's value, so G depends on R and B on R and G (for C=3 the coefficients are alpha, beta, gamma).

LOG_SCALE_MIN = -7.0
LOG_FLOOR = 1e-12


def mixture_param_count(channels: int, mixtures: int) -> int:
    """P, the number of parameters per position for K mixtures over C channels."""
    return mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def split_mixture_params(params: torch.Tensor, channels: int):
    """(B, P, *S) -> weights (B, K, *S), means, log-scales (B, K, C, *S), coefficients (B, K, C(C-1)/2, *S)."""
    per = 1 + 2 * channels + channels * (channels - 1) // 2
    if params.shape[1] % per:
        raise ValueError(f"{params.shape[1]} mixture parameters do not split into components of {per} "
                         f"for {channels} channel(s)")
    k = params.shape[1] // per
    b, rest = params.shape[0], params.shape[2:]
    params = upcast(params)
    n_coef = channels * (channels - 1) // 2
    weights, means, log_scales, coeffs = params.split([k, k * channels, k * channels, k * n_coef], dim=1)
    means = means.reshape(b, k, channels, *rest)  # (B, K, C, *S)
    log_scales = log_scales.reshape(b, k, channels, *rest).clamp(min=LOG_SCALE_MIN)  # (B, K, C, *S)
    coeffs = torch.tanh(coeffs.reshape(b, k, n_coef, *rest))  # (B, K, C(C-1)/2, *S)
    return weights, means, log_scales, coeffs


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                  levels: int) -> torch.Tensor:
    """log P(bin x) under logistic(mean, exp(log_scale)) for integer x in [0, levels); all arguments broadcast.

    Exact in log space: an interior bin's mass is sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^(b-a)), whose
    log never cancels, however far the bin is in a tail. The edge bins are log sigma(a) and log(1 - sigma(b)) (the
    softplus forms). Only when the bin is so narrow against the scale that 1 - e^(b-a) underflows below 1e-12
    does it fall back to the density at the bin centre times the bin width (exact to O((b-a)^2) there).
    """
    log_scale = log_scale.clamp(min=LOG_SCALE_MIN)
    inv_scale = torch.exp(-log_scale)
    half = 1.0 / (levels - 1)  # half a bin
    centre = x.to(mean.dtype) * (2.0 * half) - 1.0
    a = (centre + half - mean) * inv_scale  # upper edge, standardised
    b = (centre - half - mean) * inv_scale  # lower edge
    log_cdf_upper = -F.softplus(-a)  # log sigma(a): the first bin reaches down to -inf
    log_sf_lower = -F.softplus(b)  # log(1 - sigma(b)): the last bin reaches up to +inf
    width = -torch.expm1(b - a)  # 1 - e^(b-a), in (0, 1]
    # The floor keeps the unused branch of torch.where finite, so its gradient is 0, not NaN.
    log_interior = log_cdf_upper + log_sf_lower + torch.log(width.clamp(min=LOG_FLOOR))
    z = (centre - mean) * inv_scale
    log_density_centre = z - 2.0 * F.softplus(z) - log_scale + math.log(2.0 * half)
    log_interior = torch.where(width > LOG_FLOOR, log_interior, log_density_centre)
    return torch.where(x == 0, log_cdf_upper, torch.where(x == levels - 1, log_sf_lower, log_interior))


def _channel_means(means: torch.Tensor, coeffs: torch.Tensor, values: torch.Tensor, c: int) -> torch.Tensor:
    """Mean of channel c, (B, K, *S): its own mean plus tanh'd coefficients times the earlier channels' values."""
    mean = means[:, :, c]
    first = c * (c - 1) // 2  # coefficients of channel c start here: (1,0), (2,0), (2,1), ...
    for prev in range(c):
        mean = mean + coeffs[:, :, first + prev] * values[:, prev].unsqueeze(1)
    return mean


def discretized_logistic_mixture_log_prob(params: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """log p(x_c | x_<c) for every channel: params (B, P, *S), x (B, C, *S) integer levels -> (B, C, *S).

    The component is shared across channels, so channel c's weights are the posterior over components given the
    earlier channels; the C terms sum to the joint log p(x) = logsumexp_k(log pi_k + sum_c log p_k(x_c | x_<c)).
    """
    channels = x.shape[1]
    weights, means, log_scales, coeffs = split_mixture_params(params, channels)
    values = x.to(means.dtype) * (2.0 / (levels - 1)) - 1.0  # (B, C, *S) in [-1, 1]
    joint = F.log_softmax(weights, dim=1)  # (B, K, *S): log pi_k, then + log p_k of each channel in turn
    before = torch.logsumexp(joint, dim=1)  # (B, *S), 0 up to rounding
    out = []
    for c in range(channels):
        mean = _channel_means(means, coeffs, values, c)  # (B, K, *S)
        joint = joint + discretized_logistic_log_prob(x[:, c].unsqueeze(1), mean, log_scales[:, :, c], levels)
        after = torch.logsumexp(joint, dim=1)  # (B, *S): log p(x_<=c)
        out.append(after - before)
        before = after
    return torch.stack(out, dim=1)  # (B, C, *S)


def discretized_logistic_mixture_table(params: torch.Tensor, x: torch.Tensor, levels: int,
                                       channel: int | None = None) -> torch.Tensor:
    """The exact categorical over all `levels` bins of each channel given the earlier channels of x.

    params (B, P, *S), x (B, C, *S) -> log-probabilities (B, C, levels, *S), or (B, levels, *S) for one `channel`.
    Row c depends on x only through channels < c. Sampling this table by inverse CDF (`categorical_sample`) draws
    from exactly the distribution that `discretized_logistic_mixture_log_prob` scores.
    """
    channels = x.shape[1]
    weights, means, log_scales, coeffs = split_mixture_params(params, channels)
    values = x.to(means.dtype) * (2.0 / (levels - 1)) - 1.0  # (B, C, *S)
    spatial = x.dim() - 2
    bins = torch.arange(levels, device=x.device).view(1, 1, levels, *([1] * spatial))  # (1, 1, L, 1...)
    log_w = F.log_softmax(weights, dim=1)  # (B, K, *S): posterior over components given channels < c
    out = []
    for c in range(channels if channel is None else channel + 1):
        mean = _channel_means(means, coeffs, values, c)  # (B, K, *S)
        if channel is None or c == channel:
            table = discretized_logistic_log_prob(bins, mean.unsqueeze(2), log_scales[:, :, c].unsqueeze(2),
                                                  levels)  # (B, K, L, *S)
            out.append(torch.logsumexp(log_w.unsqueeze(2) + table, dim=1))  # (B, L, *S)
        if c < channels - 1:
            seen = discretized_logistic_log_prob(x[:, c].unsqueeze(1), mean, log_scales[:, :, c], levels)
            log_w = F.log_softmax(log_w + seen, dim=1)  # (B, K, *S)
    return out[-1] if channel is not None else torch.stack(out, dim=1)  # (B, C, L, *S) or (B, L, *S)


def discretized_logistic_mixture_sample(params: torch.Tensor, u: torch.Tensor, levels: int,
                                        temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Exact sample, a deterministic function of uniforms u (B, C, *S): channel by channel, each from its exact
    categorical over the bins given the channels already drawn (inverse CDF). params (B, P, *S) -> (B, C, *S) long.
    """
    x = torch.zeros(u.shape, dtype=torch.long, device=u.device)
    for c in range(u.shape[1]):
        table = discretized_logistic_mixture_table(params, x, levels, channel=c)  # (B, L, *S)
        x[:, c] = categorical_sample(table.movedim(1, -1), u[:, c], temperature)
    return x


# ---- a logistic mixture over intervals (WaveNet's "lpc_mixture" output) ----
#
# The data are `levels` codes, each an interval (lo, hi] of some real variable z; the first reaches down to -inf
# and the last up to +inf, so the masses sum to exactly 1. A mixture of K logistics on z gives each its exact mass.
# Parameters (B, 3K, ...): [weights K | means K | log-scales K]. The intervals may differ per position (B, ..., L):
# the caller maps each code's bin into the variable the mixture describes (for "lpc_mixture": the mu-law companded
# difference between the sample and its linear prediction).


def logistic_interval_log_prob(lo: torch.Tensor, hi: torch.Tensor, first: torch.Tensor, last: torch.Tensor,
                               mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(lo < X <= hi) under logistic(mean, exp(log_scale)); where `first` the interval is (-inf, hi], where
    `last` (lo, +inf). All broadcast. Exact in log space as `discretized_logistic_log_prob` (whose comments say
    why); the edges of the infinite sides are never used, so every gradient stays finite."""
    log_scale = log_scale.clamp(min=LOG_SCALE_MIN)
    inv_scale = torch.exp(-log_scale)
    a = (hi - mean) * inv_scale  # upper edge, standardised
    b = (lo - mean) * inv_scale  # lower edge
    log_cdf_upper = -F.softplus(-a)
    log_sf_lower = -F.softplus(b)
    width = -torch.expm1(b - a)
    log_interior = log_cdf_upper + log_sf_lower + torch.log(width.clamp(min=LOG_FLOOR))
    z = (0.5 * (lo + hi) - mean) * inv_scale
    log_density_centre = z - 2.0 * F.softplus(z) - log_scale + torch.log((hi - lo).clamp(min=LOG_FLOOR))
    log_interior = torch.where(width > LOG_FLOOR, log_interior, log_density_centre)
    return torch.where(first, log_cdf_upper, torch.where(last, log_sf_lower, log_interior))


def interval_mixture_log_prob(params: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, first: torch.Tensor,
                              last: torch.Tensor) -> torch.Tensor:
    """params (B, 3K, T); the observed codes' intervals lo, hi, first, last (B, T) -> log P (B, T) in nats."""
    weights, means, log_scales, _ = split_mixture_params(params, 1)  # (B, K, T), (B, K, 1, T) x 2
    log_p = logistic_interval_log_prob(lo[:, None].to(means.dtype), hi[:, None].to(means.dtype), first[:, None],
                                       last[:, None], means[:, :, 0], log_scales[:, :, 0])  # (B, K, T)
    return torch.logsumexp(F.log_softmax(weights, dim=1) + log_p, dim=1)  # (B, T)


def interval_mixture_table(params: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """params (B, 3K) and every code's interval lo, hi (B, L) -> the exact log-probabilities of all L codes,
    (B, L): sampling it by inverse CDF draws from what `interval_mixture_log_prob` scores."""
    weights, means, log_scales, _ = split_mixture_params(params, 1)  # (B, K), (B, K, 1) x 2
    codes = torch.arange(lo.shape[-1], device=params.device)
    first, last = codes == 0, codes == lo.shape[-1] - 1  # (L,)
    log_p = logistic_interval_log_prob(lo[:, None].to(means.dtype), hi[:, None].to(means.dtype), first, last,
                                       means, log_scales)  # (B, K, L)
    return torch.logsumexp(F.log_softmax(weights, dim=1)[..., None] + log_p, dim=1)  # (B, L)
