"""PixelCNN (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", section 3.5).

A 7x7 mask-A convolution, then `layers` residual blocks of mask-B convolutions, then a 1x1 head to a categorical
over `levels` per sub-pixel. Masks only: stacked masked convs leave a blind spot up and to the right of every
pixel, which `pixelwave receptive-field --model pixelcnn` shows and tests/test_causality.py measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.distributions import categorical_sample
from pixelwave.models.base import ImageAutoregressive
from pixelwave.nn import MaskedConv2d


def check_image_config(channels: int, levels: int, hidden: int, layers: int, kernel_size: int,
                       num_classes: int | None) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be in 2..256, not {levels}")
    if hidden < 2 * channels:
        raise ValueError(f"hidden must be at least {2 * channels} for {channels} channel(s), not {hidden}")
    if layers < 0:
        raise ValueError(f"layers must be >= 0, not {layers}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, not {kernel_size}")
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 or None, not {num_classes}")


class ResidualBlock(nn.Module):
    """ReLU -> 1x1 (h -> h/2) -> ReLU -> kxk mask B -> ReLU -> 1x1 (h/2 -> h), plus the input (paper, fig. 5)."""

    def __init__(self, hidden: int, kernel_size: int, groups: int):
        super().__init__()
        half = hidden // 2
        self.reduce = MaskedConv2d(hidden, half, (1, 1), "B", groups)
        self.conv = MaskedConv2d(half, half, (kernel_size, kernel_size), "B", groups)
        self.expand = MaskedConv2d(half, hidden, (1, 1), "B", groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(F.relu(x))
        h = self.conv(F.relu(h))
        return x + self.expand(F.relu(h))


@dataclass
class PixelCNNConfig:
    channels: int = 1
    levels: int = 256
    hidden: int = 64
    layers: int = 8
    kernel_size: int = 3  # the mask-B kernels of the residual blocks; the first layer is always 7x7 mask A
    num_classes: int | None = None


class PixelCNN(ImageAutoregressive):
    model_name = "pixelcnn"
    config_class = PixelCNNConfig

    def __init__(self, channels: int = 1, levels: int = 256, hidden: int = 64, layers: int = 8,
                 kernel_size: int = 3, num_classes: int | None = None):
        super().__init__()
        check_image_config(channels, levels, hidden, layers, kernel_size, num_classes)
        self.config = PixelCNNConfig(channels, levels, hidden, layers, kernel_size, num_classes)
        self.channels, self.levels, self.num_classes = channels, levels, num_classes
        groups = channels
        self.input_conv = MaskedConv2d(channels, hidden, (7, 7), "A", groups)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, kernel_size, groups) for _ in range(layers))
        # Class conditioning: a learned bias per class, added to every block's input (h is the same at all pixels).
        self.class_bias = nn.Embedding(num_classes, hidden * (layers + 1)) if num_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)
        self.head = nn.Sequential(nn.ReLU(), MaskedConv2d(hidden, hidden, (1, 1), "B", groups), nn.ReLU(),
                                  MaskedConv2d(hidden, channels * levels, (1, 1), "B", groups))

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled image (B, C, H, W) -> logits (B, C, levels, H, W)."""
        b, c, h, w = x.shape
        out = self.input_conv(x)  # (B, hidden, H, W)
        biases = [None] * (len(self.blocks) + 1)
        if self.class_bias is not None:
            biases = self.class_bias(y).view(b, len(self.blocks) + 1, -1, 1, 1).unbind(1)  # each (B, hidden, 1, 1)
        if biases[0] is not None:
            out = out + biases[0]
        for block, bias in zip(self.blocks, biases[1:], strict=True):
            out = block(out if bias is None else out + bias)
        return self.head(out).view(b, c, self.levels, h, w)  # (B, C, L, H, W): channel index = c * L + level

    # ---- fast generation (Ramachandran et al. 2017) ----
    @torch.no_grad()
    def _sample_cached(self, out, keep, y, cond, u, temperature):
        """Same samples as the naive sampler, computing each layer only at the sub-pixel being drawn.

        Each spatial conv keeps its (zero-padded) input map; the conv at (i, j) reads one window of it. Rows
        below and pixels to the right are still zeros there, which is harmless: the mask hides them.
        """
        n, channels, height, width = out.shape
        k, p = self.config.kernel_size, self.config.kernel_size // 2
        x = self.scale(out)
        dtype, device = x.dtype, x.device

        def matrix(conv):  # masked conv weights as (out, in * kh * kw)
            return (conv.weight * conv.mask).flatten(1)

        x_map = torch.zeros(n, channels, height + 6, width + 6, dtype=dtype, device=device)  # 7x7 input conv
        x_map[:, :, 3:3 + height, 3:3 + width] = x
        w_in = matrix(self.input_conv)
        blocks = [dict(block=b, w_red=matrix(b.reduce), w_conv=matrix(b.conv), w_exp=matrix(b.expand),
                       # the k x k conv's input, relu(reduce(.)), zero-padded
                       cache=torch.zeros(n, b.conv.in_channels, height + 2 * p, width + 2 * p, dtype=dtype,
                                         device=device))
                  for b in self.blocks]
        biases = [None] * (len(self.blocks) + 1)
        if self.class_bias is not None:
            biases = self.class_bias(y).view(n, len(self.blocks) + 1, -1).unbind(1)  # each (n, hidden)
        head1, head2 = self.head[1], self.head[3]
        w1, w2 = head1.weight.flatten(1) * head1.mask.flatten(1), head2.weight.flatten(1) * head2.mask.flatten(1)

        for i in range(height):
            for j in range(width):
                todo = [c for c in range(channels) if not bool(keep[:, c, i, j].all())]
                # The last pass leaves the caches final: hidden units at (i, j) never see the last colour.
                passes = todo if todo and todo[-1] == channels - 1 else todo + [channels - 1]
                for c in passes:
                    window = x_map[:, :, i:i + 7, j:j + 7].flatten(1)  # (n, C * 49)
                    a = F.linear(window, w_in, self.input_conv.bias)  # (n, hidden)
                    if biases[0] is not None:
                        a = a + biases[0]
                    for d, bias in zip(blocks, biases[1:], strict=True):
                        b = d["block"]
                        if bias is not None:
                            a = a + bias
                        d["cache"][:, :, i + p, j + p] = F.relu(F.linear(F.relu(a), d["w_red"], b.reduce.bias))
                        window = d["cache"][:, :, i:i + k, j:j + k].flatten(1)  # (n, half * k * k)
                        h = F.linear(window, d["w_conv"], b.conv.bias)
                        a = a + F.linear(F.relu(h), d["w_exp"], b.expand.bias)
                    if c not in todo:
                        continue
                    hidden = F.relu(F.linear(F.relu(a), w1, head1.bias))
                    logits = F.linear(hidden, w2, head2.bias).view(n, channels, self.levels)
                    s = categorical_sample(logits[:, c], u[:, c, i, j], temperature)  # (n,)
                    out[:, c, i, j] = torch.where(keep[:, c, i, j], out[:, c, i, j], s)
                    x_map[:, c, i + 3, j + 3] = self.scale(out[:, :, i, j][:, :, None, None])[:, c, 0, 0]
        return out
