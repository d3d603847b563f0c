"""Gated PixelCNN (van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders").

Two stacks remove PixelCNN's blind spot. The vertical stack sees every row above (a (k//2+1) x k conv whose
output at row i covers rows i-k//2..i, no mask); the horizontal stack sees the current row up to the current pixel
(a 1 x (k//2+1) conv, masked only at the centre for the colour order). The vertical stack feeds the horizontal one
after a one-row down-shift, so pixel (i, j) only ever receives rows < i from it. Gates are
tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h), where h is a class (one-hot through an embedding) and/or a
spatial feature map (through a 1x1 conv; a PixelVAE-style decoder conditions on its upsampled latent this way).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.models.base import ImageAutoregressive
from pixelwave.models.pixelcnn import check_image_config
from pixelwave.nn import MaskedConv2d, channel_groups, gate


class GatedLayer(nn.Module):
    def __init__(self, in_channels: int, hidden: int, kernel_size: int, groups: int, first: bool,
                 num_classes: int | None, cond_channels: int | None):
        super().__init__()
        k, half = kernel_size, kernel_size // 2
        self.hidden, self.first = hidden, first
        # Both halves of a gate share the colour layout of the hidden channels.
        gate_groups = channel_groups(hidden, groups).repeat(2)  # (2 * hidden,)
        in_groups = channel_groups(in_channels, groups)
        # Vertical stack: rows i-half..i, all columns j-half..j+half; no mask (it is shifted before use).
        self.vertical = nn.Conv2d(in_channels, 2 * hidden, (half + 1, k))
        # Horizontal stack: columns j-half..j of row i; the centre (last column) is masked A or B by colour.
        self.horizontal = MaskedConv2d(in_channels, 2 * hidden, (1, half + 1), "A" if first else "B", groups,
                                       centre=(0, half), padding=(half, 0, 0, 0),
                                       out_groups=gate_groups, in_groups=in_groups)
        # The shifted vertical pre-activations enter the horizontal gate: they only hold rows above, so no mask.
        self.vertical_to_horizontal = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.horizontal_out = MaskedConv2d(hidden, hidden, (1, 1), "B", groups)
        self.skip = MaskedConv2d(hidden, hidden, (1, 1), "B", groups)
        self.class_proj = nn.Embedding(num_classes, 4 * hidden) if num_classes else None  # V_f, V_g for both stacks
        self.cond_proj = nn.Conv2d(cond_channels, 4 * hidden, 1) if cond_channels else None
        self.pad_vertical = (half, half, half, 0)  # (left, right, top, bottom)

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None, cond: torch.Tensor | None):
        """v, h: (B, C_in, H, W) -> v, h: (B, hidden, H, W), skip: (B, hidden, H, W)."""
        height = v.shape[2]
        v_pre = self.vertical(F.pad(v, self.pad_vertical))  # (B, 2h, H, W): row i sees rows <= i
        # Shift down one row: pixel (i, j) of the horizontal stack may only see rows < i.
        v_shift = F.pad(v_pre, (0, 0, 1, 0))[:, :, :height]  # (B, 2h, H, W)
        h_pre = self.horizontal(h) + self.vertical_to_horizontal(v_shift)  # (B, 2h, H, W)
        if self.class_proj is not None or self.cond_proj is not None:
            extra = 0
            if self.class_proj is not None:
                extra = self.class_proj(y)[:, :, None, None]  # (B, 4h, 1, 1)
            if self.cond_proj is not None:
                extra = extra + self.cond_proj(cond)  # (B, 4h, H, W)
            v_extra, h_extra = extra.chunk(2, dim=1)  # each (B, 2h, ., .)
            v_pre, h_pre = v_pre + v_extra, h_pre + h_extra
        v_out = gate(v_pre)  # (B, h, H, W)
        h_gated = gate(h_pre)  # (B, h, H, W)
        skip = self.skip(h_gated)
        h_out = self.horizontal_out(h_gated)
        if not self.first:  # residual on the horizontal stack (not in the first layer: C_in != hidden)
            h_out = h_out + h
        return v_out, h_out, skip


@dataclass
class GatedPixelCNNConfig:
    channels: int = 1
    levels: int = 256
    hidden: int = 64
    layers: int = 10
    kernel_size: int = 5
    num_classes: int | None = None
    cond_channels: int | None = None  # a spatial map (B, cond_channels, H, W) added inside every gate


class GatedPixelCNN(ImageAutoregressive):
    model_name = "gated_pixelcnn"
    config_class = GatedPixelCNNConfig

    def __init__(self, channels: int = 1, levels: int = 256, hidden: int = 64, layers: int = 10,
                 kernel_size: int = 5, num_classes: int | None = None, cond_channels: int | None = None):
        super().__init__()
        check_image_config(channels, levels, hidden, layers, kernel_size, num_classes)
        if layers < 1:
            raise ValueError(f"layers must be >= 1, not {layers}")
        if kernel_size < 3:
            raise ValueError(f"kernel_size must be >= 3 for the vertical stack to grow, not {kernel_size}")
        if cond_channels is not None and cond_channels < 1:
            raise ValueError(f"cond_channels must be >= 1 or None, not {cond_channels}")
        self.config = GatedPixelCNNConfig(channels, levels, hidden, layers, kernel_size, num_classes, cond_channels)
        self.channels, self.levels = channels, levels
        self.num_classes, self.cond_channels = num_classes, cond_channels
        groups = channels
        self.layers = nn.ModuleList(
            GatedLayer(channels if i == 0 else hidden, hidden, kernel_size, groups, i == 0, num_classes,
                       cond_channels)
            for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), MaskedConv2d(hidden, hidden, (1, 1), "B", groups), nn.ReLU(),
                                  MaskedConv2d(hidden, channels * levels, (1, 1), "B", groups))

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled image (B, C, H, W) -> logits (B, C, levels, H, W)."""
        b, c, h, w = x.shape
        v, hz, skips = x, x, 0
        for layer in self.layers:
            v, hz, skip = layer(v, hz, y, cond)
            skips = skips + skip  # (B, hidden, H, W)
        return self.head(skips).view(b, c, self.levels, h, w)  # (B, C, L, H, W)
