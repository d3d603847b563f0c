"""`pixelwave train`'s settings from four places, merged as plain dicts: the defaults < a --preset < a --config
file < the flags typed on the command line. One table (`TRAIN_OPTIONS`) declares every flag once; argparse is
built from it and the config file is read through it, so both check values the same way."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelwave.cli.common import flag, image_size, positive, trim_db
from pixelwave.errors import UserError
from pixelwave.models import MODELS
from pixelwave.models.gated_pixelcnn import GatedPixelCNNConfig
from pixelwave.models.wavenet import WaveNetConfig
from pixelwave.training import TrainConfig


@dataclass(frozen=True)
class Option:
    dest: str
    help: str
    type: Any = None  # a str -> value converter; None for on/off flags (store_true)
    choices: tuple | None = None
    group: str = "training"

    @property
    def switch(self) -> bool:
        return self.type is None


_D = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _opts(group: str, *rows) -> list[Option]:
    return [Option(dest, help, type, choices, group) for dest, type, choices, help in rows]


TRAIN_OPTIONS = {o.dest: o for o in [
    *_opts("model (defaults: the constructor's)",
           ("model", str, tuple(MODELS), "model family"),
           ("hidden", positive(), None, "image models: hidden channels"),
           ("layers", positive(), None, "number of layers (WaveNet: dilated layers in all stacks)"),
           ("kernel_size", positive(), None, "kernel size"),
           ("mixtures", positive(), None,
            "pixelcnn_pp / wavenet --output logistic_mixture: logistic components (default 5 / 10)"),
           ("output", str, ("categorical", "logistic_mixture", "lpc_mixture"),
            "wavenet: softmax over the mu-law levels (default), a discretized logistic mixture, or with --mel "
            "lpc_mixture: a logistic mixture around the linear prediction from the mel frames (LPCNet-style)"),
           ("dropout", float, None, "pixelcnn_pp / pixelsnail: dropout in the gated ResNet blocks (default 0.5 / 0)"),
           ("input_noise", float, None, "wavenet: std in mu-law codes of noise on the past the network and the "
                                        "LPC prediction see, in training only (default 0)"),
           ("prediction_inputs", None, None, "wavenet --output lpc_mixture: the network also sees the prediction "
                                             "p_t and the last excitation (LPCNet's inputs)"),
           ("cond_hidden", int, None, "wavenet --mel: channels of a nonlinear frame-rate branch of the "
                                      "conditioning (two 3-frame convs with tanh, as LPCNet's frame-rate "
                                      "network; e.g. 128); 0 = none (default)"),
           ("latent_channels", positive(), None, "pixelvae: channels of the latent map z (default 4)"),
           ("latent_stride", positive(), None, "pixelvae: image pixels per latent position: 1, 2 or 4"),
           ("stacks", positive(), None, "wavenet: stacks of dilations 1, 2, 4, ... (default 2)"),
           ("residual_channels", positive(), None, "wavenet: residual channels (default 64)"),
           ("gate_channels", positive(), None, "wavenet: channels of each gate half (default 128)"),
           ("skip_channels", positive(), None, "wavenet: skip channels (default 256)"),
           ("mel", None, None, "wavenet: condition on log-mel frames of the audio (a vocoder; see resynthesize)"),
           ("pitch", None, None, "wavenet --mel: the frames also carry f0 and voicing, and the gates see a sine "
                                 "source at the pitch (a neural source-filter input)"),
           ("source_harmonics", positive(), None, "wavenet --pitch: harmonics of the sine source, each silent "
                                                  "where it would pass half the sample rate (default 4)"),
           ("pitch_lag", None, None, "wavenet --pitch: the input also carries the signal one pitch period "
                                     "back (a long-term predictor's tap), times the voicing"),
           ("unconditional", None, None, "ignore class labels / speakers even if the data has them")),
    *_opts("data",
           ("data", str, None, "data set: mnist-sample, mnist-sample-binary, mnist:DIR, cifar10:DIR, images:DIR "
                               "(images); speech-sample, flite-sample, wav:DIR, vctk:DIR (audio)"),
           ("image_size", image_size, None, "images:DIR only: the size images have (HxW)"),
           ("channels", int, (1, 3), "images:DIR only: 1 (gray) or 3 (RGB)"),
           ("levels", int, None, "images: requantise pixels to this many levels (2..256); audio: mu-law levels "
                                 "(default 256)")),
    *_opts("audio data (wavenet)",
           ("crop", positive(), None, "samples per training example (default 8000)"),
           ("sample_rate", positive(), None, "resample all audio to this rate (default 16000)"),
           ("n_mels", positive(), None, "with --mel: mel bands (default 80)"),
           ("hop_length", positive(), None, "with --mel: samples per mel frame (default 200)"),
           ("n_fft", positive(), None, "with --mel: STFT window (default 800)"),
           ("trim_db", trim_db, None, "cut leading/trailing audio this many dB below the loudest (default 40), "
                                      "or 'off'"),
           ("pre_emphasis", float, None, "model x_t - ALPHA x_(t-1) instead of the audio (e.g. 0.85, as LPCNet): "
                                         "the model's errors come out shaped like speech, quiet at high "
                                         "frequencies; generation undoes it (default 0 = off)"),
           ("cond_context", int, None, "with --mel: frames of the utterance on each side of a training crop "
                                       "for its conditioning to read; 2 (3 with --cond-hidden) condition it "
                                       "exactly as inside the whole utterance (default 0: the crop's own "
                                       "frames, zero-padded at its ends)")),
    *_opts("training",
           ("steps", int, None, f"optimizer steps in total (default {_D['steps']})"),
           ("time_limit", float, None, "also stop once this many seconds of training (evaluations excluded) have "
                                       "passed; the learning rate then decays with the time, reaching --min-lr as "
                                       "it runs out; 0 = off"),
           ("batch_size", int, None, f"global batch; each of N torchrun processes trains on batch/N (default "
                                     f"{_D['batch_size']})"),
           ("out", str, None, "run directory (default runs/MODEL)"),
           ("seed", int, None, "seeds weights, data order, per-step randomness and samples"),
           ("resume", None, None, "continue the run in --out from its last checkpoint"),
           ("overwrite", None, None, "delete the run in --out and start afresh"),
           ("device", str, ("auto", "cpu", "cuda"), "auto takes a GPU when there is one")),
    *_opts("optimizer",
           ("optimizer", str, ("adam", "adamw"), "adam (default) or adamw"),
           ("lr", float, None, f"peak learning rate (default {_D['lr']:g})"),
           ("weight_decay", float, None, "on weights of >= 2 dims only (default 0)"),
           ("warmup_steps", int, None, f"linear warm-up to --lr (default {_D['warmup_steps']})"),
           ("min_lr", float, None, "the cosine decay from --lr reaches this at --steps, or when --time-limit runs "
                                   "out if that comes first (default lr/10)"),
           ("grad_clip", float, None, "clip the global gradient norm; 0 = off (default 1)"),
           ("ema", float, None, "also keep an exponential moving average of the weights (e.g. 0.999), saved as "
                                "ema.safetensors; 0 = off"),
           ("bf16", None, None, "bfloat16 autocast for the forward pass: about 2x faster training on CPUs with "
                                "AVX512-BF16 or AMX (docs/benchmarks.md); weights, optimiser and loss stay float32"),
           ("compile", None, None, "torch.compile the model")),
    *_opts("checkpoints and logging",
           ("checkpoint_every", int, None, "steps between checkpoints; 0 = only at the end (default 500)"),
           ("keep_checkpoints", int, None, "keep the last K (default 3)"),
           ("eval_every", int, None, "steps between held-out evaluations over the whole test split; 0 = only at "
                                     "the end (default 500)"),
           ("eval_batches", int, None, "cap the periodic evaluations at this many batches (the final one is "
                                       "always whole)"),
           ("sample_every", int, None, "steps between TensorBoard sample grids (images) or clips (audio); 0 = only "
                                       "at the end"),
           ("samples", int, None, "images per sample grid; audio: 0 = no clips, else one clip per speaker "
                                  "(default 16)"),
           ("sample_seconds", float, None, "audio models: length of each TensorBoard clip (default 0.5 s; "
                                           "generation is sequential)"),
           ("log_every", int, None, "steps between log lines and scalars (default 50)"),
           ("no_progress", None, None, "no progress bar")),
]}
DEFAULTS = {dest: _D.get(dest, False if o.switch else None) for dest, o in TRAIN_OPTIONS.items()}

# Model size flags (= constructor argument names) of each kind of model, and the flags only one kind takes.
MODEL_SIZES = {"image": ("hidden", "layers", "kernel_size", "mixtures", "dropout", "latent_channels",
                         "latent_stride"),
               "audio": ("layers", "stacks", "residual_channels", "gate_channels", "skip_channels", "kernel_size",
                         "output", "mixtures", "input_noise", "prediction_inputs", "cond_hidden",
                         "source_harmonics", "pitch_lag")}
AUDIO_DATA = ("crop", "sample_rate", "n_mels", "hop_length", "n_fft", "trim_db", "pre_emphasis", "cond_context")
ONLY_FOR = {"image": ("hidden", "image_size", "channels", "dropout", "latent_channels", "latent_stride"),
            "audio": ("stacks", "residual_channels", "gate_channels", "skip_channels", "mel", "pitch", "output",
                      "input_noise", "prediction_inputs", "cond_hidden", "source_harmonics", "pitch_lag",
                      *AUDIO_DATA)}

# Presets fill in settings; a config file and typed flags override them. An "image" / "audio" entry holds the
# settings for that kind of model only (so `--preset tiny` works for every model).
PRESETS = {
    "demo": dict(model="gated_pixelcnn", data="mnist-sample-binary", steps=600, batch_size=32, lr=3e-3,
                 warmup_steps=50, eval_every=300, checkpoint_every=300, image=GatedPixelCNNConfig.SIZES["demo"]),
    # A small speaker-conditioned WaveNet for CPU (receptive field 1,024 samples = 64 ms at 16 kHz), a few minutes
    # on 2 CPU cores. With --mel it is a small vocoder.
    "wavenet": dict(model="wavenet", data="speech-sample", steps=600, batch_size=8, lr=3e-3, warmup_steps=50,
                    eval_every=0, checkpoint_every=300, sample_seconds=0.25,
                    audio=dict(WaveNetConfig.SIZES["demo"], crop=2000)),
    # Every image config's "tiny" size is hidden 8, 2 layers (kernel 3 where it has one).
    "tiny": dict(steps=2, batch_size=4, image=GatedPixelCNNConfig.SIZES["tiny"],
                 audio=dict(WaveNetConfig.SIZES["tiny"], crop=400, sample_seconds=0.01)),
}


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The flags of every option, with no defaults: what was not typed is absent from the namespace."""
    groups = {}
    for o in TRAIN_OPTIONS.values():
        g = groups.get(o.group) or groups.setdefault(o.group, p.add_argument_group(o.group))
        if o.switch:
            g.add_argument(flag(o.dest), dest=o.dest, action="store_true", default=argparse.SUPPRESS, help=o.help)
        else:
            g.add_argument(flag(o.dest), dest=o.dest, type=o.type, choices=o.choices, default=argparse.SUPPRESS,
                           help=o.help)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named set of settings (flags override)")
    p.add_argument("--config", help="JSON or TOML file of flag values (flags on the command line override)")


def read_config_file(path: str) -> dict:
    """Settings from a JSON or TOML file whose keys are flag names (dashes or underscores), checked as flags."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {p}: no such file")
    try:
        text = p.read_text()
        cfg = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"--config {p}: cannot parse ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"--config {p}: must hold a table/object of flag values")
    values = {}
    for key, value in cfg.items():
        option = TRAIN_OPTIONS.get(key.replace("-", "_"))
        if option is None:
            raise UserError(f"--config {p}: unknown key {key!r}")
        if option.switch:
            if not isinstance(value, bool):
                raise UserError(f"--config {p}: {key} must be true or false, not {value!r}")
        elif value is not None:
            if isinstance(value, dict | list | bool):
                raise UserError(f"--config {p}: {key} has the wrong type ({type(value).__name__})")
            try:
                value = option.type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as e:
                raise UserError(f"--config {p}: {key}: {e}") from None
            if option.choices is not None and value not in option.choices:
                raise UserError(f"--config {p}: {key} must be one of {', '.join(map(str, option.choices))}")
        values[option.dest] = value
    return values


def merge(typed: dict, preset: str | None, config_file: str | None, kind_of) -> dict:
    """defaults < preset < config file < typed flags. `kind_of(model name)` says which of the preset's
    "image" / "audio" settings apply."""
    chosen = dict(PRESETS.get(preset) or {})
    by_kind = {k: chosen.pop(k) for k in ("image", "audio") if k in chosen}
    from_file = read_config_file(config_file) if config_file else {}
    values = {**DEFAULTS, **chosen, **from_file, **typed}
    if by_kind and values["model"] is not None:
        values = {**DEFAULTS, **chosen, **by_kind.get(kind_of(values["model"]), {}), **from_file, **typed}
    return values


def train_config(values: dict) -> TrainConfig:
    return TrainConfig(**{f.name: values[f.name] for f in dataclasses.fields(TrainConfig)})
