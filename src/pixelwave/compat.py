"""check_compatible: whether a data set is data a model can score, asked of both (one check, used by the
training loop, every CLI command that reads data, and `compare`)."""

from __future__ import annotations

from pixelwave.errors import UserError


def check_compatible(model, dataset, trained_on: dict | None = None) -> None:
    """UserError (one line) unless `dataset` fits `model`: the same kind of data, channels and levels, labels or
    speakers for each condition the model takes, and mel frames as its upsampler was built for.

    `trained_on` is the description of the data the model was trained on (a run's data.json, `dataset.info()`
    then): a speaker-conditional model also needs the same speaker table, or ids would name other speakers.
    A model may take fewer conditions than the data has (p(x) from labelled data): the loop drops the rest.
    """
    name = dataset.name
    if model.data_kind != dataset.kind:
        raise UserError(f"{model.model_name} models {model.data_kind} data, but the data {name!r} is "
                        f"{dataset.kind} data")
    if dataset.levels != model.levels:
        raise UserError(f"the data {name!r} has {dataset.levels} levels but the model was built with "
                        f"levels={model.levels}")
    conditions = model.conditions
    if dataset.kind == "image":
        if dataset.channels != model.channels:
            raise UserError(f"the data {name!r} has {dataset.channels} channel(s) but the model expects "
                            f"{model.channels}")
        if "y" in conditions:
            if dataset.y is None:
                raise UserError(f"{model.model_name} is conditional (num_classes={model.num_classes}) but the "
                                f"data {name!r} has no labels for it")
            if dataset.num_classes and dataset.num_classes > model.num_classes:
                raise UserError(f"the data {name!r} has num_classes={dataset.num_classes} but the model was "
                                f"built with num_classes={model.num_classes}")
        return
    if "speaker" in conditions:
        if dataset.speakers is None:
            raise UserError(f"{model.model_name} is conditional (num_speakers={model.num_speakers}) but the "
                            f"data {name!r} has no speakers for it")
        known = (trained_on or {}).get("speakers")
        if known is not None and dataset.speakers != known:
            raise UserError(f"{name} has speakers {', '.join(dataset.speakers)} but the model was trained with "
                            f"{', '.join(known)} (speaker ids would not match)")
        if len(dataset.speakers) > model.num_speakers:
            raise UserError(f"the data {name!r} has num_speakers={len(dataset.speakers)} but the model was "
                            f"built with num_speakers={model.num_speakers}")
    if "cond" in conditions:
        if dataset.n_mels is None:
            raise UserError(f"{model.model_name} is conditioned on mel frames (cond_channels="
                            f"{model.cond_channels}) but the data {name!r} has no mel features")
        if dataset.cond_channels != model.cond_channels or dataset.pitch != model.config.pitch:
            def rows(pitch):
                return " and pitch rows" if pitch else ""
            raise UserError(f"the data has {dataset.n_mels} mel bands{rows(dataset.pitch)} per frame but the model "
                            f"was built with cond_channels={model.cond_channels}{rows(model.config.pitch)}")
        if dataset.hop_length != model.hop_length:
            raise UserError(f"the data has mel frames every {dataset.hop_length} samples but the model was "
                            f"built with hop_length={model.hop_length}")
