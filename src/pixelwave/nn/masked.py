"""Masked convolutions with the R -> G -> B sub-pixel order.

Every feature map in an image model is split into `groups` contiguous channel blocks, one per colour (groups =
number of image channels). A block "belongs" to colour g: its value at pixel (i, j) may depend on pixels before
(i, j) in raster order, and at (i, j) itself only on colours < g (mask A, the first layer) or <= g (mask B, all
later layers). With groups = 1 mask A hides the centre and mask B shows it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_groups(n: int, groups: int) -> torch.Tensor:
    """Colour group of each of `n` channels: contiguous blocks, so C*L logits reshape to (C, L) by colour."""
    return torch.arange(n) * groups // n  # (n,)


def pixel_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, kernel_size: tuple[int, int],
               centre: tuple[int, int], mask_type: str) -> torch.Tensor:
    """Mask (out, in, kh, kw): 1 above the centre row, 1 left of the centre in its row, group rule at the centre."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', not {mask_type!r}")
    kh, kw = kernel_size
    cy, cx = centre
    mask = torch.ones(len(out_groups), len(in_groups), kh, kw)
    mask[:, :, cy + 1:, :] = 0  # rows below the centre: the future
    mask[:, :, cy, cx + 1:] = 0  # right of the centre in its row: the future
    og, ig = out_groups[:, None], in_groups[None, :]
    mask[:, :, cy, cx] = (ig < og) if mask_type == "A" else (ig <= og)
    return mask


class MaskedConv2d(nn.Conv2d):
    """A conv whose weight is multiplied by a causal mask; padding is explicit so the centre can sit anywhere.

    `padding` is (left, right, top, bottom) as in F.pad. `out_groups` / `in_groups` override the default
    contiguous colour blocks (used for the two halves of a gate, which share one group layout).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], mask_type: str,
                 groups: int, centre: tuple[int, int] | None = None,
                 padding: tuple[int, int, int, int] | None = None,
                 out_groups: torch.Tensor | None = None, in_groups: torch.Tensor | None = None):
        kh, kw = kernel_size
        super().__init__(in_channels, out_channels, (kh, kw), padding=0)
        centre = centre if centre is not None else (kh // 2, kw // 2)
        self.pad = padding if padding is not None else (kw // 2, kw // 2, kh // 2, kh // 2)
        og = out_groups if out_groups is not None else channel_groups(out_channels, groups)
        ig = in_groups if in_groups is not None else channel_groups(in_channels, groups)
        self.register_buffer("mask", pixel_mask(og, ig, (kh, kw), centre, mask_type), persistent=False)
        self.mask_type = mask_type
        with torch.no_grad():
            self.weight.mul_(self.mask)
        # The rows below the centre are masked out entirely: the conv runs on the kernel's top `rows` rows with
        # that much less bottom padding (negative: input rows dropped), the same output for fewer FLOPs (3 x 3: 2/3,
        # 7 x 7: 4/7). The weight keeps its full shape, so checkpoints do not depend on it.
        self.rows = centre[0] + 1
        left, right, top, bottom = self.pad
        self.cropped_pad = (left, right, top, bottom - (kh - self.rows))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.cropped_pad
        x = F.pad(x, (left, right, top, max(bottom, 0)))
        if bottom < 0:  # the skipped rows would have reached below the input: drop as many input rows
            x = x[:, :, :bottom]  # (B, C, H + top + bottom - (kh - rows), W + left + right)
        rows = self.rows
        return F.conv2d(x, self.weight[:, :, :rows] * self.mask[:, :, :rows], self.bias)

    def matrix(self) -> torch.Tensor:
        """The masked weight as one matrix (out, in * kh * kw): the conv at a single position is
        F.linear(window.flatten(1), conv.matrix(), conv.bias), what the cached samplers run."""
        return (self.weight * self.mask).flatten(1)


def gate(x: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for x = [a, b] split on channels: (B, 2C, ...) -> (B, C, ...)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class Dropout(nn.Dropout):
    """nn.Dropout (inverted: zero with probability p, scale the rest by 1 / (1 - p)) drawn as float32 uniforms
    compared with p. On the CPU, torch's dropout draws through bernoulli_, ~4x slower than torch.rand: for
    PixelCNN++ that was a fifth of the training step. Same distribution, another random stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        keep = torch.rand(x.shape, device=x.device).ge_(self.p).mul_(1.0 / (1.0 - self.p))  # float32 {0, 1/(1-p)}
        return x * keep.to(x.dtype)
