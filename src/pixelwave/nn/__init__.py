"""Building blocks shared by the image models: masked and shifted convolutions, gates."""

from pixelwave.nn.masked import MaskedConv2d, channel_groups, gate, pixel_mask

__all__ = ["MaskedConv2d", "channel_groups", "gate", "pixel_mask"]
