"""PixelCNN (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", section 3.5).

A 7x7 mask-A convolution, then `layers` residual blocks of mask-B convolutions, then a 1x1 head to a categorical
over `levels` per sub-pixel. Masks only: stacked masked convs leave a blind spot up and to the right of every
pixel, which `pixelwave receptive-field --model pixelcnn` shows and tests/test_image_models.py measures
(test_pixelcnn_has_the_blind_spot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.models.base import ImageAutoregressive, ModelConfig, PixelSteps, check_image_fields, require
from pixelwave.nn import MaskedConv2d


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
class PixelCNNConfig(ModelConfig):
    channels: int = 1
    levels: int = 256
    hidden: int = 64
    layers: int = 8
    kernel_size: int = 3  # the mask-B kernels of the residual blocks; the first layer is always 7x7 mask A
    num_classes: int | None = None

    SIZES: ClassVar[dict] = {"tiny": dict(hidden=8, layers=2, kernel_size=3),
                             "demo": dict(hidden=32, layers=6, kernel_size=5)}

    def __post_init__(self):
        check_image_fields(self.channels, self.levels, self.num_classes, self.hidden, self.kernel_size)
        require(self.layers >= 0, f"layers must be >= 0, not {self.layers}")


class PixelCNN(ImageAutoregressive):
    """`PixelCNN(PixelCNNConfig(...))`, or the config's fields: `PixelCNN(channels=1, levels=256, hidden=64)`."""

    model_name = "pixelcnn"
    config_class = PixelCNNConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        hidden, layers, groups = cfg.hidden, cfg.layers, cfg.channels
        self.input_conv = MaskedConv2d(cfg.channels, hidden, (7, 7), "A", groups)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, cfg.kernel_size, groups) for _ in range(layers))
        # Class conditioning: a learned bias per class, added to every block's input (h is the same at all pixels).
        self.class_bias = nn.Embedding(cfg.num_classes, hidden * (layers + 1)) if cfg.num_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)
        self.head = self.make_head(hidden, cfg.channels, cfg.levels)

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
    def _pixel_steps(self, out, y, cond) -> PixelSteps:
        """Each spatial conv keeps its (zero-padded) input map; the conv at (i, j) reads one window of it. Rows
        below and pixels to the right are still zeros there, which is harmless: the mask hides them."""
        n, _, height, width = out.shape
        k, p = self.config.kernel_size, self.config.kernel_size // 2
        dtype, device = next(self.parameters()).dtype, out.device
        w_in = self.input_conv.matrix()
        blocks = [dict(block=b, w_red=b.reduce.matrix(), w_conv=b.conv.matrix(), w_exp=b.expand.matrix(),
                       # the k x k conv's input, relu(reduce(.)), zero-padded
                       cache=torch.zeros(n, b.conv.in_channels, height + 2 * p, width + 2 * p, dtype=dtype,
                                         device=device))
                  for b in self.blocks]
        biases = [None] * (len(self.blocks) + 1)
        if self.class_bias is not None:
            biases = self.class_bias(y).view(n, len(self.blocks) + 1, -1).unbind(1)  # each (n, hidden)
        head = self.pixel_head()

        def step(x_map, i, j):
            window = x_map[:, :, i:i + 7, j:j + 7].flatten(1)  # (n, C * 49): the 7x7 input conv's window
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
            return head(a)

        return PixelSteps(step, padding=3)  # the 7x7 input conv's padding
