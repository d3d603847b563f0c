"""Moved to `pixelwave.training` (`train(TrainConfig, model, train_set, test_set)`); these names stay for a
release: `run(args, ...)` takes the argparse Namespace of the old API and warns."""

from __future__ import annotations

import argparse
import dataclasses
import warnings

from pixelwave.runtime import reuse_freed_memory
from pixelwave.training import NonFiniteLoss, TrainConfig, evaluate, learning_rate, model_inputs, train

__all__ = ["NonFiniteLoss", "add_train_arguments", "evaluate", "learning_rate", "model_inputs",
           "reuse_freed_memory", "run"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The training flags of `pixelwave train`, with TrainConfig's defaults (for `run`'s Namespace)."""
    from pixelwave.cli.options import TRAIN_OPTIONS  # noqa: F401

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for dest, option in TRAIN_OPTIONS.items():
        if dest not in fields:
            continue
        flag = "--" + dest.replace("_", "-")
        if option.switch:
            parser.add_argument(flag, dest=dest, action="store_true", help=option.help)
        else:
            parser.add_argument(flag, dest=dest, type=option.type, choices=option.choices, default=fields[dest],
                                help=option.help)


def run(args: argparse.Namespace, model, train_set, test_set=None) -> dict:
    """Deprecated: `pixelwave.training.train(TrainConfig(...), model, train_set, test_set)`."""
    warnings.warn("pixelwave.train.run(Namespace, ...) is deprecated: use pixelwave.training.train(TrainConfig(...), "
                  "...)", DeprecationWarning, stacklevel=2)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return train(TrainConfig(**{k: v for k, v in vars(args).items() if k in names}), model, train_set, test_set)
