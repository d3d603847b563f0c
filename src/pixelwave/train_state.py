"""Moved to `pixelwave.training.rundir` (the run directory and its checkpoints); this name stays for a release."""

from pixelwave.training.rundir import *  # noqa: F403
from pixelwave.training.rundir import CHECKPOINTS, EMA, OPTIMIZER, STATE, latest_checkpoint  # noqa: F401
