"""WaveNet: the model and its parallel pass (model.py), generation on one packing of the weights
(generation.py: the naive reference, the PyTorch queue loop; the fused C++ step is pixelwave.fast.wavenet_step)."""

from pixelwave.models.wavenet.generation import WEIGHT_FORMATS, GenerationWeights, PredictionWeights
from pixelwave.models.wavenet.model import (
    OUTPUTS,
    CategoricalOutput,
    ConditionUpsampler,
    LogisticMixtureOutput,
    ResidualBlock,
    WaveNet,
    WaveNetConfig,
)

__all__ = ["OUTPUTS", "WEIGHT_FORMATS", "CategoricalOutput", "ConditionUpsampler", "GenerationWeights",
           "LogisticMixtureOutput", "PredictionWeights", "ResidualBlock", "WaveNet", "WaveNetConfig"]
