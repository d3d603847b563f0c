"""Building blocks shared by the image models: masked and shifted convolutions, gates, a fast dropout."""

from pixelwave.nn.masked import Dropout, MaskedConv2d, channel_groups, gate, pixel_mask

__all__ = ["Dropout", "MaskedConv2d", "channel_groups", "gate", "pixel_mask"]
