"""Output distributions. Categorical over `levels` values: exact likelihood, no dequantisation needed."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upcast(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) are normalised in float32; float64 stays float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def categorical_log_prob(logits: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """log softmax(logits)[x] along `dim`; `x` has the shape of `logits` without `dim`."""
    logp = F.log_softmax(upcast(logits), dim=dim)
    return logp.gather(dim, x.unsqueeze(dim)).squeeze(dim)


def categorical_sample(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Inverse-CDF sample from softmax(logits / T) over the last dim, given uniforms `u` of shape logits[..., 0].

    The randomness is an input, so every sampler (naive, cached, fused) that sees the same logits and the same
    `u` draws the same value.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, not {temperature}")
    probs = F.softmax(upcast(logits) / temperature, dim=-1)
    cdf = probs.cumsum(-1)  # (..., L)
    idx = (cdf < u.unsqueeze(-1)).sum(-1)  # first index whose CDF reaches u
    return idx.clamp_(max=logits.shape[-1] - 1)
