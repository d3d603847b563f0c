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
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.models.base import ImageAutoregressive, ModelConfig, PixelSteps, check_image_fields, require
from pixelwave.nn import MaskedConv2d, channel_groups, gate


class GatedLayer(nn.Module):
    def __init__(self, in_channels: int, hidden: int, kernel_size: int, groups: int, first: bool, last: bool,
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
        # The last layer's horizontal output would feed nothing (the head reads the skips): leave it out.
        self.horizontal_out = None if last else MaskedConv2d(hidden, hidden, (1, 1), "B", groups)
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
        if self.horizontal_out is None:
            return v_out, None, skip
        h_out = self.horizontal_out(h_gated)
        if not self.first:  # residual on the horizontal stack (not in the first layer: C_in != hidden)
            h_out = h_out + h
        return v_out, h_out, skip


@dataclass
class GatedPixelCNNConfig(ModelConfig):
    channels: int = 1
    levels: int = 256
    hidden: int = 64
    layers: int = 10
    kernel_size: int = 5
    num_classes: int | None = None
    cond_channels: int | None = None  # a spatial map (B, cond_channels, H, W) added inside every gate

    # demo: the CLI's `--preset demo` (binary MNIST in minutes on a CPU)
    SIZES: ClassVar[dict] = {"tiny": dict(hidden=8, layers=2, kernel_size=3),
                             "demo": dict(hidden=32, layers=6, kernel_size=5)}

    @classmethod
    def demo(cls, **overrides):
        return cls.named("demo", **overrides)

    def __post_init__(self):
        check_image_fields(self.channels, self.levels, self.num_classes, self.hidden, self.kernel_size)
        require(self.layers >= 1, f"layers must be >= 1, not {self.layers}")
        require(self.kernel_size >= 3,
                f"kernel_size must be >= 3 for the vertical stack to grow, not {self.kernel_size}")
        require(self.cond_channels is None or self.cond_channels >= 1,
                f"cond_channels must be >= 1 or None, not {self.cond_channels}")


class GatedPixelCNN(ImageAutoregressive):
    """`GatedPixelCNN(GatedPixelCNNConfig(...))`, or the config's fields: `GatedPixelCNN(channels=1, levels=2)`."""

    model_name = "gated_pixelcnn"
    config_class = GatedPixelCNNConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        groups = cfg.channels
        self.layers = nn.ModuleList(
            GatedLayer(cfg.channels if i == 0 else cfg.hidden, cfg.hidden, cfg.kernel_size, groups, i == 0,
                       i == cfg.layers - 1, cfg.num_classes, cfg.cond_channels)
            for i in range(cfg.layers))
        self.head = self.make_head(cfg.hidden, cfg.channels, cfg.levels)

    @property
    def cond_channels(self) -> int | None:
        return self.config.cond_channels

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled image (B, C, H, W) -> logits (B, C, levels, H, W)."""
        b, c, h, w = x.shape
        v, hz, skips = x, x, 0
        for layer in self.layers:
            v, hz, skip = layer(v, hz, y, cond)
            skips = skips + skip  # (B, hidden, H, W)
        return self.head(skips).view(b, c, self.levels, h, w)  # (B, C, L, H, W)

    # ---- fast generation (Ramachandran et al. 2017) ----
    def _pixel_steps(self, out, y, cond) -> PixelSteps:
        """The vertical stack runs once per finished row on a cache of each layer's last k//2+1 input rows; the
        horizontal stack runs once per sub-pixel on a cache of each layer's current-row inputs (the last k//2+1
        positions). Caches start as zeros, exactly the zero padding of the parallel pass. The first layer's
        inputs are the image itself: `x_map`, padded by k//2."""
        n, _, height, width = out.shape
        half, hidden = self.config.kernel_size // 2, self.config.hidden
        dtype, device = next(self.parameters()).dtype, out.device
        layers = []
        for layer in self.layers:
            extra = torch.zeros(n, 4 * hidden, 1, 1, dtype=dtype, device=device)
            if layer.class_proj is not None:
                extra = extra + layer.class_proj(y)[:, :, None, None]
            if layer.cond_proj is not None:
                extra = extra + layer.cond_proj(cond)  # (n, 4h, H, W)
            v_extra, h_extra = extra.chunk(2, dim=1)
            layers.append(dict(
                layer=layer,
                w_h=layer.horizontal.matrix(),  # (2h, C_in * (half + 1))
                w_skip=layer.skip.matrix(),
                w_out=None if layer.horizontal_out is None else layer.horizontal_out.matrix(),
                v_extra=v_extra.expand(n, 2 * hidden, height, width),
                h_extra=h_extra.expand(n, 2 * hidden, height, width),
                # rows i-half..i of this layer's vertical-stack input, zero-padded left and right
                v_rows=torch.zeros(n, layer.vertical.in_channels, half + 1, width + 2 * half, dtype=dtype,
                                   device=device),
                # the shifted vertical pre-activations seen by the current row: zeros before the first row
                v_to_h=layer.vertical_to_horizontal(
                    torch.zeros(n, 2 * hidden, 1, width, dtype=dtype, device=device))[:, :, 0],  # (n, 2h, W)
                # this row's inputs to the next layer's horizontal stack, zero-padded on the left
                h_row=torch.zeros(n, hidden, width + half, dtype=dtype, device=device),
            ))
        head = self.pixel_head()

        def step(x_map, i, j):
            window = x_map[:, :, i + half, j:j + half + 1].flatten(1)  # (n, C * (half + 1)): columns j-half..j
            skips = 0
            for l, d in enumerate(layers):
                layer = d["layer"]
                pre = F.linear(window, d["w_h"], layer.horizontal.bias)  # (n, 2h)
                pre = pre + d["v_to_h"][:, :, j] + d["h_extra"][:, :, i, j]
                gated = torch.tanh(pre[:, :hidden]) * torch.sigmoid(pre[:, hidden:])  # (n, h)
                skips = skips + F.linear(gated, d["w_skip"], layer.skip.bias)
                if layer.horizontal_out is not None:
                    h_out = F.linear(gated, d["w_out"], layer.horizontal_out.bias)
                    if not layer.first:
                        h_out = h_out + layers[l - 1]["h_row"][:, :, j + half]
                    d["h_row"][:, :, j + half] = h_out
                    window = d["h_row"][:, :, j:j + half + 1].flatten(1)  # (n, h * (half + 1))
            return head(skips)

        def end_row(x_map, i):
            """Row i is final: run the vertical stack on it, giving what row i + 1 sees from above."""
            v_in = x_map[:, :, i + half, half:half + width]  # (n, C, W)
            for d in layers:
                layer = d["layer"]
                d["v_rows"] = torch.roll(d["v_rows"], -1, dims=2)
                d["v_rows"][:, :, -1] = 0
                d["v_rows"][:, :, -1, half:half + width] = v_in
                v_pre = layer.vertical(d["v_rows"])  # (n, 2h, 1, W)
                d["v_to_h"] = layer.vertical_to_horizontal(v_pre)[:, :, 0]  # (n, 2h, W), for row i + 1
                v_in = gate(v_pre + d["v_extra"][:, :, i:i + 1])[:, :, 0]  # (n, h, W): next layer's input row
                d["h_row"].zero_()  # the next row starts from the zero padding again

        return PixelSteps(step, end_row, padding=half)
