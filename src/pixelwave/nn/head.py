"""The output head every model here ends with: ReLU -> 1x1 conv -> ReLU -> 1x1 conv (PixelCNN paper fig. 5,
WaveNet fig. 4)."""

from __future__ import annotations

from torch import nn


class Head(nn.Sequential):
    """ReLU, `hidden_conv`, ReLU, `output_conv`. An nn.Sequential so that the weights keep the keys that every
    saved checkpoint has (head.1.*, head.3.*); the names are accessors for the samplers that run the two convs
    as matrix products."""

    def __init__(self, hidden_conv: nn.Module, output_conv: nn.Module):
        super().__init__(nn.ReLU(), hidden_conv, nn.ReLU(), output_conv)

    @property
    def hidden_conv(self) -> nn.Module:
        return self[1]

    @property
    def output_conv(self) -> nn.Module:
        return self[3]
