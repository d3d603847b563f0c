"""A PixelVAE-style model (Gulrajani et al. 2016): a convolutional encoder to a small latent map z, and a Gated
PixelCNN decoder that conditions on z, upsampled to the image size, through V·h inside every gate.

Global structure (shapes, strokes) can live in z; the autoregressive decoder models the local detail. The model is
trained on the evidence lower bound, so `log_prob` returns a single-sample ELBO estimate -- a BOUND on log p(x),
not the exact likelihood of the other models (`is_bound = True`; `pixelwave eval` says so).
`importance_log_prob` gives the tighter importance-weighted estimate (Burda et al. 2016) for a chosen K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from pixelwave.models.base import ImageAutoregressive, ModelConfig, require
from pixelwave.models.gated_pixelcnn import GatedPixelCNN, GatedPixelCNNConfig
from pixelwave.runtime import full_float32

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(logvar)) summed over all but the batch dim: (B, ...) -> (B,)."""
    return (-0.5 * (LOG_2PI + logvar + (z - mean) ** 2 / logvar.exp())).flatten(1).sum(1)


@dataclass
class PixelVAEConfig(ModelConfig):
    channels: int = 1
    levels: int = 256
    hidden: int = 64  # decoder (Gated PixelCNN) channels
    layers: int = 6  # decoder layers
    kernel_size: int = 5
    latent_channels: int = 4
    latent_stride: int = 4  # z has (H / stride) x (W / stride) positions; 1, 2 or 4
    encoder_channels: int = 32
    num_classes: int | None = None

    SIZES: ClassVar[dict] = {"tiny": dict(hidden=8, layers=2, kernel_size=3)}

    def __post_init__(self):
        self.decoder()  # the decoder's config checks the image fields
        require(self.latent_stride in (1, 2, 4), f"latent_stride must be 1, 2 or 4, not {self.latent_stride}")
        require(self.latent_channels >= 1 and self.encoder_channels >= 1,
                "latent_channels and encoder_channels must be >= 1")

    def decoder(self) -> GatedPixelCNNConfig:
        """The Gated PixelCNN decoder's config: it conditions on the upsampled latent, encoder_channels wide."""
        return GatedPixelCNNConfig(self.channels, self.levels, self.hidden, self.layers, self.kernel_size,
                                   self.num_classes, cond_channels=self.encoder_channels)


class PixelVAE(ImageAutoregressive):
    """`PixelVAE(PixelVAEConfig(...))`, or the config's fields: `PixelVAE(channels=1, latent_stride=4)`."""

    model_name = "pixelvae"
    config_class = PixelVAEConfig
    is_bound = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        e, downs = cfg.encoder_channels, int(math.log2(cfg.latent_stride))
        enc = [nn.Conv2d(cfg.channels, e, 3, padding=1), nn.ELU()]
        for _ in range(downs):
            enc += [nn.Conv2d(e, e, 4, stride=2, padding=1), nn.ELU()]  # halves H and W
        enc += [nn.Conv2d(e, 2 * cfg.latent_channels, 3, padding=1)]  # mean and log-variance of q(z | x)
        self.encoder = nn.Sequential(*enc)
        up = [nn.Conv2d(cfg.latent_channels, e, 3, padding=1), nn.ELU()]
        for _ in range(downs):
            up += [nn.ConvTranspose2d(e, e, 4, stride=2, padding=1), nn.ELU()]  # doubles H and W
        self.upsampler = nn.Sequential(*up)
        self.decoder = GatedPixelCNN(cfg.decoder())

    def latent_size(self, size: tuple[int, int]) -> tuple[int, int]:
        s = self.config.latent_stride
        if size[0] % s or size[1] % s:
            raise ValueError(f"image size {tuple(size)} must be divisible by latent_stride={s}")
        return size[0] // s, size[1] // s

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels (B, C, H, W) -> mean, logvar of q(z | x), each (B, latent, H / stride, W / stride)."""
        self.latent_size(x.shape[2:])
        mean, logvar = self.encoder(self.scale(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 8.0)  # keeps exp(logvar) finite in both directions

    def decoder_log_prob(self, x, z, y=None, reduce=True):
        """log p(x | z): the exact autoregressive likelihood of the decoder given the latent map."""
        return self.decoder.log_prob(x, y, reduce=reduce, cond=self.upsampler(z))

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, reduce: bool = True,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """A single-sample ELBO estimate E_q[log p(x | z)] - KL(q(z | x) || N(0, I)), in nats: (B,).

        With reduce=False the per-sub-pixel reconstruction terms (B, C, H, W) are returned with the KL spread
        evenly over them, so they still sum to the ELBO.
        """
        if cond is not None:
            raise ValueError("PixelVAE conditions on its own latent map; cond must be None")
        self.check_inputs(x, y, None)
        mean, logvar = self.encode(x)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)  # reparameterised sample of q(z | x)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)  # (B,) analytic KL to N(0, I)
        rec = self.decoder_log_prob(x, z, y, reduce=reduce)
        if reduce:
            return rec - kl
        return rec - (kl / rec[0].numel())[:, None, None, None]

    @torch.no_grad()
    @full_float32()
    def importance_log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, samples: int = 64,
                            generator: torch.Generator | None = None) -> torch.Tensor:
        """log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q: a lower bound on log p(x) that tightens with K. (B,)"""
        self.check_inputs(x, y, None)
        mean, logvar = self.encode(x)
        terms = []
        for _ in range(samples):
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            z = mean + (0.5 * logvar).exp() * eps
            log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
            terms.append(self.decoder_log_prob(x, z, y) + log_pz - gaussian_log_density(z, mean, logvar))
        return torch.logsumexp(torch.stack(terms), 0) - math.log(samples)

    @torch.no_grad()
    @full_float32()
    def sample(self, n: int, size: tuple[int, int] | None = None, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None, cached: bool = True, x: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, cond: torch.Tensor | None = None,
               temperature: float = 1.0, z: torch.Tensor | None = None) -> torch.Tensor:
        """Draw z from the prior N(0, I) (or use the given z), then sample the decoder given z."""
        if cond is not None:
            raise ValueError("PixelVAE conditions on its own latent map; pass z= instead of cond=")
        if size is None and x is not None:
            size = tuple(x.shape[2:])
        if size is None:
            raise ValueError("pass size=(H, W) (or x= for completion)")
        lh, lw = self.latent_size(size)
        param = next(self.parameters())
        if z is None:
            z = torch.randn(n, self.config.latent_channels, lh, lw, generator=generator, dtype=param.dtype)
        z = z.to(param.device, param.dtype)
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        return self.decoder.sample(n, size, y=y, generator=generator, cached=cached, x=x, mask=mask,
                                   cond=self.upsampler(z), temperature=temperature)

    @torch.no_grad()
    @full_float32()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None, generator: torch.Generator | None = None,
                    cached: bool = True) -> torch.Tensor:
        """Encode x to the mean of q(z | x) and sample the decoder given it: (B, C, H, W)."""
        self.check_inputs(x, y, None)
        mean, _ = self.encode(x)
        return self.sample(x.shape[0], tuple(x.shape[2:]), y=y, generator=generator, cached=cached, z=mean)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None, cond: torch.Tensor | None = None):
        """Decoder logits given the posterior mean of z for the (scaled) image x: (B, C, L, H, W).

        Note the encoder sees all of x: causality holds for p(x | z), not for this function as a whole.
        """
        levels_x = ((x + 1) * (self.levels - 1) / 2).round().long()
        mean, _ = self.encode(levels_x)
        return self.decoder.logits(x, y, cond=self.upsampler(mean))
