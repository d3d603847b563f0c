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

from pixelwave.distributions import categorical_sample
from pixelwave.models.base import ImageAutoregressive
from pixelwave.models.pixelcnn import check_image_config
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
            GatedLayer(channels if i == 0 else hidden, hidden, kernel_size, groups, i == 0, i == layers - 1,
                       num_classes, cond_channels)
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

    # ---- fast generation (Ramachandran et al. 2017) ----
    @torch.no_grad()
    def _sample_cached(self, out, keep, y, cond, u, temperature):
        """Same samples as the naive sampler, without recomputing the image for every sub-pixel.

        The vertical stack runs once per finished row on a cache of each layer's last k//2+1 input rows; the
        horizontal stack runs once per sub-pixel on a cache of each layer's current-row inputs (the last k//2+1
        positions). Caches start as zeros, exactly the zero padding of the parallel pass.
        """
        n, channels, height, width = out.shape
        half, hidden = self.config.kernel_size // 2, self.config.hidden
        x = self.scale(out)  # (n, C, H, W), updated as sub-pixels are drawn
        dtype, device = x.dtype, x.device

        def matrix(conv):  # a masked 1x1 conv as (out, in)
            w = conv.weight * conv.mask if hasattr(conv, "mask") else conv.weight
            return w.flatten(1)

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
                w_h=(layer.horizontal.weight * layer.horizontal.mask).flatten(1),  # (2h, C_in * (half + 1))
                w_skip=matrix(layer.skip),
                w_out=None if layer.horizontal_out is None else matrix(layer.horizontal_out),
                v_extra=v_extra.expand(n, 2 * hidden, height, width),
                h_extra=h_extra.expand(n, 2 * hidden, height, width),
                # rows i-half..i of this layer's vertical-stack input, zero-padded left and right
                v_rows=torch.zeros(n, layer.vertical.in_channels, half + 1, width + 2 * half, dtype=dtype,
                                   device=device),
                # the shifted vertical pre-activations seen by the current row: zeros before the first row
                v_to_h=layer.vertical_to_horizontal(
                    torch.zeros(n, 2 * hidden, 1, width, dtype=dtype, device=device))[:, :, 0],  # (n, 2h, W)
            ))
        head1, head2 = self.head[1], self.head[3]
        w1, w2 = matrix(head1), matrix(head2)

        for i in range(height):
            # this row's inputs to each layer's horizontal stack, zero-padded on the left
            h_rows = [torch.zeros(n, d["layer"].vertical.in_channels, width + half, dtype=dtype, device=device)
                      for d in layers]
            for j in range(width):
                todo = [c for c in range(channels) if not bool(keep[:, c, i, j].all())]
                # The last pass leaves the caches final: hidden units at (i, j) never see the last colour.
                passes = todo if todo and todo[-1] == channels - 1 else todo + [channels - 1]
                for c in passes:
                    h_rows[0][:, :, j + half] = x[:, :, i, j]
                    skips = 0
                    for l, d in enumerate(layers):
                        layer = d["layer"]
                        window = h_rows[l][:, :, j:j + half + 1].flatten(1)  # (n, C_in * (half + 1))
                        pre = F.linear(window, d["w_h"], layer.horizontal.bias)  # (n, 2h)
                        pre = pre + d["v_to_h"][:, :, j] + d["h_extra"][:, :, i, j]
                        gated = torch.tanh(pre[:, :hidden]) * torch.sigmoid(pre[:, hidden:])  # (n, h)
                        skips = skips + F.linear(gated, d["w_skip"], layer.skip.bias)
                        if layer.horizontal_out is not None:
                            h_out = F.linear(gated, d["w_out"], layer.horizontal_out.bias)
                            if not layer.first:
                                h_out = h_out + h_rows[l][:, :, j + half]
                            h_rows[l + 1][:, :, j + half] = h_out
                    if c not in todo:
                        continue
                    hidden_head = F.relu(F.linear(F.relu(skips), w1, head1.bias))
                    logits = F.linear(hidden_head, w2, head2.bias).view(n, channels, self.levels)
                    s = categorical_sample(logits[:, c], u[:, c, i, j], temperature)  # (n,)
                    out[:, c, i, j] = torch.where(keep[:, c, i, j], out[:, c, i, j], s)
                    x[:, c, i, j] = self.scale(out[:, :, i, j][:, :, None, None])[:, c, 0, 0]
                h_rows[0][:, :, j + half] = x[:, :, i, j]  # the drawn values, for the pixels to the right
            # Row i is final: run the vertical stack on it, giving what row i + 1 sees from above.
            v_in = x[:, :, i, :]  # (n, C, W)
            for d in layers:
                layer = d["layer"]
                d["v_rows"] = torch.roll(d["v_rows"], -1, dims=2)
                d["v_rows"][:, :, -1] = 0
                d["v_rows"][:, :, -1, half:half + width] = v_in
                v_pre = layer.vertical(d["v_rows"])  # (n, 2h, 1, W)
                d["v_to_h"] = layer.vertical_to_horizontal(v_pre)[:, :, 0]  # (n, 2h, W), for row i + 1
                v_in = gate(v_pre + d["v_extra"][:, :, i:i + 1])[:, :, 0]  # (n, h, W): next layer's input row
        return out
