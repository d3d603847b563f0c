"""pixelwave: deep autoregressive generative models with exact likelihoods and fast sampling."""

from pixelwave import audio, data, models, pretrained
from pixelwave.checkpoint import load, save
from pixelwave.distributions import bits_per_dim
from pixelwave.errors import UserError

__version__ = "0.1.0"


__all__ = ["UserError", "audio", "bits_per_dim", "data", "load", "models", "pretrained", "save"]
