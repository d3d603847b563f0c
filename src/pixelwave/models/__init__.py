"""One file per model family. `MODELS` maps the CLI / checkpoint name to the class."""

from pixelwave.models.gated_pixelcnn import GatedPixelCNN
from pixelwave.models.pixelcnn import PixelCNN
from pixelwave.models.pixelcnn_pp import PixelCNNPP
from pixelwave.models.pixelrnn import DiagonalBiLSTMPixelRNN, RowLSTMPixelRNN
from pixelwave.models.pixelsnail import PixelSNAIL
from pixelwave.models.pixelvae import PixelVAE
from pixelwave.models.wavenet import WaveNet

MODELS = {
    PixelCNN.model_name: PixelCNN,
    GatedPixelCNN.model_name: GatedPixelCNN,
    PixelCNNPP.model_name: PixelCNNPP,
    WaveNet.model_name: WaveNet,
    PixelVAE.model_name: PixelVAE,
    RowLSTMPixelRNN.model_name: RowLSTMPixelRNN,
    DiagonalBiLSTMPixelRNN.model_name: DiagonalBiLSTMPixelRNN,
    PixelSNAIL.model_name: PixelSNAIL,
}

__all__ = ["MODELS", "DiagonalBiLSTMPixelRNN", "GatedPixelCNN", "PixelCNN", "PixelCNNPP", "PixelSNAIL", "PixelVAE",
           "RowLSTMPixelRNN", "WaveNet"]
