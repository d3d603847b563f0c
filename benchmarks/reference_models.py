"""Cost twins of the reference implementations issue 4 compares training speed against, for timing side by side.

Each class reproduces the layer shapes, paddings, crops and loss of a popular open PyTorch implementation, so a
training step costs what it costs there: the same convolutions on the same tensor sizes, in the same order.
They are written here from the published architecture descriptions (no code is taken from those projects) and
are used only by `benchmarks/run.py`: they are not part of pixelwave and are not checked for causality.

    ReferenceGatedPixelCNN  the Gated PixelCNN of the most-used PyTorch library of generative models
                            (pytorch-generative): a kernel-7 causal input layer, then `n_gated` kernel-3 layers
                            of `channels`; the vertical stack factorised as 1xk then (k//2+1)x1 with extra
                            padding cropped away; the horizontal stack padded on both sides and cropped; a
                            ReLU-1x1-ReLU-1x1 head to one Bernoulli logit per pixel; summed BCE loss.
    ReferenceWaveNet        the WaveNet of the open PyTorch vocoders (r9y9/wavenet_vocoder style): one-hot input
                            through a 1x1 conv, dilated convs padded on both sides and cropped on the right,
                            tanh * sigmoid gate, 1x1 residual and skip convs, (x + residual) * sqrt(1/2), and a
                            ReLU-1x1-ReLU-1x1 head; cross-entropy loss.
    PublishedWaveNet        not a twin: the published wavenet_vocoder package itself (r9y9, 0.1.1 on PyPI; the
                            `bench` extra installs it), with its defaults (weight normalisation on every conv,
                            dropout 0.05 before every dilated conv), wrapped to take codes and return log p.
                            Its gate_channels counts both halves of the gate: its 256 is our gate_channels=128.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.nn import gate as _gate  # tanh * sigmoid on channel halves, as the references do


class _RefGatedLayer(nn.Module):
    def __init__(self, c_in: int, c: int, k: int, mask_centre: bool):
        super().__init__()
        p = (k - 1) // 2
        self.mask_centre = mask_centre
        self.v_1xk = nn.Conv2d(c_in, c, (1, k), padding=(0, p))
        self.v_kx1 = nn.Conv2d(c, 2 * c, (k // 2 + 1, 1), padding=(p + 1, 0))
        self.v_1x1 = nn.Conv2d(c_in, 2 * c, 1)
        self.link = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_1xk = nn.Conv2d(c_in, 2 * c, (1, k // 2 + 1), padding=(0, p + int(mask_centre)))
        self.h_res = nn.Conv2d(c, c, 1)
        self.h_skip = nn.Conv2d(c, c, 1)

    def forward(self, v_in, h_in):
        height, width = v_in.shape[2:]
        v = self.v_kx1(self.v_1xk(v_in))[:, :, :height]
        link = self.link(v)
        v = _gate(v + self.v_1x1(v_in))
        h = _gate(link + self.h_1xk(h_in)[:, :, :, :width])
        skip = self.h_skip(h)
        h = self.h_res(h)
        if not self.mask_centre:
            h = h + h_in
        return v, h, skip


class ReferenceGatedPixelCNN(nn.Module):
    def __init__(self, n_gated: int = 10, channels: int = 128, head_channels: int = 32):
        super().__init__()
        self.input = _RefGatedLayer(1, channels, 7, True)
        self.layers = nn.ModuleList(_RefGatedLayer(channels, channels, 3, False) for _ in range(n_gated))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, head_channels, 1), nn.ReLU(),
                                  nn.Conv2d(head_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Binary images (B, 1, H, W) in {0, 1} -> log p per image (B,), so `-model(x=x).mean()` is the loss."""
        x = x.float()
        v, h, skips = self.input(x, x)
        for layer in self.layers:
            v, h, skip = layer(v, h)
            skips = skips + skip
        logits = self.head(skips)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


class _RefResidualBlock(nn.Module):
    def __init__(self, r: int, g: int, s: int, k: int, d: int):
        super().__init__()
        self.pad = (k - 1) * d
        self.conv = nn.Conv1d(r, 2 * g, k, padding=self.pad, dilation=d)
        self.out = nn.Conv1d(g, r, 1)
        self.skip = nn.Conv1d(g, s, 1)

    def forward(self, x):
        h = self.conv(x)[:, :, :x.shape[-1]]  # causal: crop the right-hand padding
        z = _gate(h)
        return (x + self.out(z)) * math.sqrt(0.5), self.skip(z)


class ReferenceWaveNet(nn.Module):
    def __init__(self, layers: int = 20, stacks: int = 2, residual: int = 64, gate: int = 128, skip: int = 256,
                 kernel_size: int = 2, levels: int = 256):
        super().__init__()
        self.levels = levels
        per_stack = layers // stacks
        self.first = nn.Conv1d(levels, residual, 1)
        self.blocks = nn.ModuleList(_RefResidualBlock(residual, gate, skip, kernel_size, 2 ** (i % per_stack))
                                    for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), nn.Conv1d(skip, levels, 1))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """mu-law codes (B, T) -> log p per sequence (B,): the input is the codes shifted right by one."""
        prev = F.pad(a, (1, 0))[:, :-1]
        x = self.first(F.one_hot(prev, self.levels).transpose(1, 2).float())  # (B, R, T)
        skips = 0
        for block in self.blocks:
            x, skip = block(x)
            skips = skips + skip
        logits = self.head(skips)  # (B, levels, T)
        return -F.cross_entropy(logits, a, reduction="none").sum(1)


class PublishedWaveNet(nn.Module):
    """wavenet_vocoder.WaveNet as published (`pip install wavenet_vocoder==0.1.1`, or the `bench` extra), with
    its default weight normalisation and dropout; the one-hot input and the loss as its training script builds
    them. `gate` is pixelwave's gate_channels (one half); the package is given twice that. ImportError if the
    package is not installed."""

    def __init__(self, layers: int = 20, stacks: int = 2, residual: int = 64, gate: int = 128, skip: int = 256,
                 kernel_size: int = 2, levels: int = 256):
        super().__init__()
        import warnings

        import wavenet_vocoder

        self.levels = levels
        # its backward hooks are the old non-full kind, which torch warns about at every backward pass
        warnings.filterwarnings("ignore", message="Using a non-full backward hook", category=FutureWarning)
        with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated, still what the package calls
            warnings.simplefilter("ignore")
            self.net = wavenet_vocoder.WaveNet(out_channels=levels, layers=layers, stacks=stacks,
                                               residual_channels=residual, gate_channels=2 * gate,
                                               skip_out_channels=skip, kernel_size=kernel_size)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """mu-law codes (B, T) -> log p per sequence (B,): the input is the codes shifted right by one."""
        prev = F.pad(a, (1, 0))[:, :-1]
        logits = self.net(F.one_hot(prev, self.levels).transpose(1, 2).float())  # (B, levels, T)
        return -F.cross_entropy(logits, a, reduction="none").sum(1)


def published_wavenet_version() -> str | None:
    """The installed wavenet_vocoder's version, or None if it is not installed."""
    try:
        from importlib.metadata import version

        return version("wavenet_vocoder")
    except Exception:  # noqa: BLE001 -- not installed
        return None
