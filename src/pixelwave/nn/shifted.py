"""Shifted convolutions (PixelCNN++, Salimans et al. 2017): causality by padding instead of masks.

A down-shifted conv pads only above (and both sides), so output row i never reads a row below i; a
down-right-shifted conv pads only above and to the left, so output (i, j) never reads a pixel below or to its
right. `down_shift` / `right_shift` then move a stream one row / column further so a pixel never sees itself.
The transposed forms up-sample x2 with the same guarantee.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Row i takes row i - 1; row 0 is zeros. (B, C, H, W) -> (B, C, H, W)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Column j takes column j - 1; column 0 is zeros. (B, C, H, W) -> (B, C, H, W)."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


class DownShiftedConv2d(nn.Conv2d):
    """Output (i, j) sees input rows i-kh+1..i, columns j-(kw-1)/2..j+(kw-1)/2: never a row below."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 3), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride)
        kh, kw = kernel_size
        self.shift_pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.shift_pad))  # (B, out, ceil(H / stride), ceil(W / stride))


class DownRightShiftedConv2d(nn.Conv2d):
    """Output (i, j) sees input rows i-kh+1..i, columns j-kw+1..j: never below, never to the right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(2, 2), stride: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride)
        kh, kw = kernel_size
        self.shift_pad = (kw - 1, 0, kh - 1, 0)  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.shift_pad))  # (B, out, ceil(H / stride), ceil(W / stride))


class DownShiftedConvTranspose2d(nn.ConvTranspose2d):
    """x2 up-sampling for the u stream: output row r comes from input row r // 2 only, cropped to `size`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, (2, 3), stride=2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        out = super().forward(x)  # (B, out, 2H', 2W' + 1)
        return out[:, :, :size[0], 1:1 + size[1]]  # (B, out, H, W): column j centred on input column j // 2


class DownRightShiftedConvTranspose2d(nn.ConvTranspose2d):
    """x2 up-sampling for the ul stream: output (r, c) comes from input (r // 2, c // 2) only, cropped to `size`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, (2, 2), stride=2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return super().forward(x)[:, :, :size[0], :size[1]]  # (B, out, 2H', 2W') -> (B, out, H, W)

