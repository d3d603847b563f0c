"""pixelwave train: build the model and the data from the merged settings, then run the one training loop."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from pixelwave import checkpoint, runtime
from pixelwave.cli.common import add_command, audio_options, flag, read_data_info
from pixelwave.cli.options import MODEL_SIZES, ONLY_FOR, add_train_options, merge, train_config
from pixelwave.errors import UserError
from pixelwave.models import MODELS


def add_parser(sub) -> None:
    p = add_command(sub, "train", "train a model (one loop for every model)",
                    "pixelwave train --preset demo --out runs/demo")
    add_train_options(p)
    p.set_defaults(func=cmd_train)


def kind_of(model_name: str) -> str:
    return MODELS[model_name].data_kind


def cmd_train(args: argparse.Namespace, parser) -> int:
    from pixelwave import data
    from pixelwave.training import rundir, train

    typed = {k: v for k, v in vars(args).items() if k not in ("command", "func", "preset", "config")}
    values = merge(typed, args.preset, args.config, kind_of)
    config = train_config(values)  # checks every training setting before anything is read or written
    if values["model"] is None or values["data"] is None:
        raise UserError("train needs --model and --data (or a --preset / --config that sets them)")
    kind = kind_of(values["model"])
    other = "audio" if kind == "image" else "image"
    wrong = [flag(k) for k in ONLY_FOR[other] if values[k] not in (None, False)]
    if wrong:
        raise UserError(f"{', '.join(wrong)}: not a flag for --model {values['model']} ({kind} data)")
    if kind == "audio" and not values["mel"]:
        mel_flags = [flag(k) for k in ("n_mels", "hop_length", "n_fft", "pitch", "cond_context")
                     if values[k] not in (None, False)]
        if mel_flags:
            raise UserError(f"{', '.join(mel_flags)} set(s) up mel features: add --mel to condition on them")
    if values["cond_context"] is not None and values["cond_context"] < 0:
        raise UserError(f"--cond-context must be >= 0 (mel frames on each side of a crop), got "
                        f"{values['cond_context']}")
    data_kind = data.data_kind(values["data"])
    if data_kind != kind:
        raise UserError(f"--model {values['model']} models {kind} data but --data {values['data']} is {data_kind} "
                        f"data")

    run_info = None
    if config.resume and config.out and (Path(config.out) / "data.json").is_file():
        # Resume with the run's data options (audio crop, rate, mel): they need not be repeated either.
        _, run_info = read_data_info(config.out)
    if kind == "audio":
        keys = ("levels", "crop", "sample_rate", "n_mels", "hop_length", "n_fft", "trim_db", "pre_emphasis", "mel",
                "pitch")
        given = {k: values[k] for k in keys if run_info is None or k in typed}
        options = audio_options(run_info, None, given)
    else:
        options = {key: values[dest] for dest, key in (("image_size", "size"), ("channels", "channels"),
                                                        ("levels", "levels")) if values[dest] is not None}
    train_set, test_set = (data.load(values["data"], split=split, **options) for split in ("train", "test"))

    torch.manual_seed(config.seed)  # weight initialisation is part of the run's seed
    model = build_model(values, typed, train_set)
    meta = rundir.saved_config(config.out) if config.resume and config.out else None
    if meta is not None:
        # Resume the model that was saved: the sizes need not be repeated on the command line.
        asked = {k: typed[k] for k in MODEL_SIZES[kind] if k in typed}
        clash = {k: v for k, v in asked.items() if meta["config"].get(k, v) != v}
        if clash or meta["model"] != values["model"]:
            raise UserError(f"--resume: {config.out} holds a {meta['model']} with {meta['config']}; the flags ask "
                            f"for {values['model']} with {asked}")
        model = checkpoint.build(meta)
    context = values["cond_context"]
    if run_info is None and context:
        # The crops carry the frames around them that their conditioning reads (model.cond_context of them
        # make it the whole utterance's, not the convs' zero padding at the crop's ends). Saved in data.json.
        train_set.context = test_set.context = context
    elif run_info is not None and context is not None and context != run_info.get("cond_context", 0):
        raise UserError(f"--resume: {config.out} was trained with --cond-context {run_info.get('cond_context', 0)}")
    runtime.reuse_freed_memory()  # this process trains: reuse activations' memory instead of re-faulting it
    train(config, model, train_set, test_set)
    return 0


def build_model(values: dict, typed: dict, train_set):
    """The model the settings ask for, sized to the data (channels, levels, classes, speakers, mel bands)."""
    name = values["model"]
    cls = MODELS[name]
    kwargs = {k: values[k] for k in MODEL_SIZES[cls.data_kind] if values[k] is not None}
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    for k in list(kwargs):
        if k not in fields:
            if k in typed:
                raise UserError(f"{flag(k)} does not apply to --model {name}")
            del kwargs[k]  # a preset's size for another model of this kind
    if train_set.kind == "image":
        kwargs.update(channels=train_set.channels, levels=train_set.levels)
        if train_set.num_classes and not values["unconditional"]:
            kwargs["num_classes"] = train_set.num_classes
    else:
        kwargs["levels"] = train_set.levels
        if train_set.speakers and not values["unconditional"]:
            kwargs["num_speakers"] = len(train_set.speakers)  # the table itself is in the run's data.json
        if train_set.n_mels is not None:
            kwargs.update(cond_channels=train_set.cond_channels, hop_length=train_set.hop_length)
            if train_set.pitch:
                kwargs.update(pitch=True, sample_rate=train_set.sample_rate)  # the source's phase runs in Hz
        if train_set.pre_emphasis:  # the model's codes are the emphasised signal's: generation undoes it
            kwargs["pre_emphasis"] = train_set.pre_emphasis
        if kwargs.get("output") == "lpc_mixture":  # the prediction places the mel bands in Hz
            kwargs["sample_rate"] = train_set.sample_rate
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise UserError(f"--model {name}: {e}") from None
