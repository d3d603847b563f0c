"""Building blocks shared by the models: masked and shifted convolutions, gates, the output head, a fast dropout."""

from pixelwave.nn.head import Head
from pixelwave.nn.masked import Dropout, MaskedConv2d, channel_groups, gate, pixel_mask
from pixelwave.nn.shifted import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    down_shift,
    right_shift,
)

__all__ = ["DownRightShiftedConv2d", "DownRightShiftedConvTranspose2d", "DownShiftedConv2d",
           "DownShiftedConvTranspose2d", "Dropout", "Head", "MaskedConv2d", "channel_groups", "down_shift", "gate",
           "pixel_mask", "right_shift"]
