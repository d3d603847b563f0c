"""pixelwave: deep autoregressive generative models with exact likelihoods and fast sampling."""

import math

import torch

from pixelwave import audio, models
from pixelwave.checkpoint import load, save
from pixelwave.errors import UserError

__version__ = "0.1.0"


def bits_per_dim(log_prob: torch.Tensor, dims: int) -> torch.Tensor:
    """-log p / (dims * ln 2), averaged over the batch. `log_prob` is (B,) in nats, summed over `dims` values."""
    return -log_prob.mean() / (dims * math.log(2.0))


__all__ = ["UserError", "audio", "bits_per_dim", "load", "models", "save"]
