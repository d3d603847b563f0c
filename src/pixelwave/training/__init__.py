"""Training: `train(config, model, train_set, test_set)` runs the one loop for every model.

    config.py       TrainConfig (every setting, checked when made) and the learning-rate schedule
    loop.py         the loop, read top to bottom
    rundir.py       the run directory: made or resumed, its checkpoints written and read
    runlock.py      the run lock: one process trains into a run directory at a time
    distributed.py  one process or a torchrun worker, and the device
    evaluation.py   exact held-out bits/dim, and the samples shown in TensorBoard
"""

from pixelwave.training.config import TrainConfig, learning_rate
from pixelwave.training.evaluation import evaluate, model_inputs
from pixelwave.training.loop import NonFiniteLoss, train

__all__ = ["NonFiniteLoss", "TrainConfig", "evaluate", "learning_rate", "model_inputs", "train"]
