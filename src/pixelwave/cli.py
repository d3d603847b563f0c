"""pixelwave command line: train | eval | sample | complete | generate | resynthesize | receptive-field | data.

Every user mistake becomes one line on stderr and exit code 2 (UserError); nothing already saved is touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import tomllib
from pathlib import Path

import torch

from pixelwave import checkpoint
from pixelwave.errors import UserError

IMAGE_MODELS = ("pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelrnn_row", "pixelrnn_diag", "pixelvae")
AUDIO_MODELS = ("wavenet",)
ALL_MODELS = IMAGE_MODELS + AUDIO_MODELS
# Model size flags (= constructor argument names) of each kind of model, and the flags only one kind takes.
MODEL_SIZES = {"image": ("hidden", "layers", "kernel_size", "mixtures", "dropout", "latent_channels",
                          "latent_stride"),
               "audio": ("layers", "stacks", "residual_channels", "gate_channels", "skip_channels", "kernel_size",
                         "output", "mixtures")}
AUDIO_DATA_FLAGS = ("crop", "sample_rate", "n_mels", "hop_length", "n_fft", "trim_db")
ONLY_FOR = {"image": ("hidden", "image_size", "channels", "dropout", "latent_channels", "latent_stride"),
            "audio": ("stacks", "residual_channels", "gate_channels", "skip_channels", "mel", "output",
                      *AUDIO_DATA_FLAGS)}

# Presets fill in flag defaults; a config file and explicit flags override them. An "image" / "audio" entry
# holds the defaults for that kind of model only (so `--preset tiny` works for every model).
PRESETS = {
    "demo": dict(model="gated_pixelcnn", data="mnist-sample-binary", steps=600, batch_size=32, lr=3e-3,
                 warmup_steps=50, eval_every=300, checkpoint_every=300,
                 image=dict(hidden=32, layers=6, kernel_size=5)),
    # A small speaker-conditioned WaveNet for CPU: 10 layers (receptive field 1,024 samples = 64 ms at 16 kHz),
    # a few minutes on 2 CPU cores. With --mel it is a small vocoder.
    "wavenet": dict(model="wavenet", data="speech-sample", steps=600, batch_size=8, lr=3e-3, warmup_steps=50,
                    eval_every=0, checkpoint_every=300, sample_seconds=0.25,
                    audio=dict(layers=10, stacks=1, residual_channels=32, gate_channels=32, skip_channels=64,
                               kernel_size=2, crop=2000)),
    "tiny": dict(steps=2, batch_size=4,
                 image=dict(hidden=8, layers=2, kernel_size=3),
                 audio=dict(layers=2, stacks=1, residual_channels=8, gate_channels=8, skip_channels=8,
                            kernel_size=2, crop=400, sample_seconds=0.01)),
}


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message by default)
        raise UserError(message)


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def positive(kind=int):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    check.__name__ = f"positive {kind.__name__}"
    return check


def explicit(args, dest: str) -> bool:
    """Whether --DEST was typed on the command line (not filled in by a preset or a config file)."""
    return any(a == flag(dest) or a.startswith(flag(dest) + "=") for a in getattr(args, "argv", ()))


def output_path(path: str, force: bool) -> Path:
    """A new output file (never silently replace one that exists)."""
    p = Path(path)
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{p}: output must be a .png or .jpg file")
    if not p.parent.exists():
        raise UserError(f"{p.parent}: output folder does not exist")
    if p.exists() and not force:
        raise UserError(f"{p} exists: choose another --out or pass --force to replace it")
    return p


# ---------------------------------------------------------------------------------------------------------------
# Loading checkpoints and data


def read_data_info(path: str) -> tuple[Path, dict]:
    """The run's data.json ({} if there is none): size, classes, sample rate, speaker table, mel options."""
    info_path = Path(path) / "data.json"
    if not info_path.is_file():
        return info_path, {}
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{info_path}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise UserError(f"{info_path}: not a data description (a JSON object)")
    return info_path, info


def load_checkpoint(path: str, device: torch.device):
    model = checkpoint.load(path).to(device)
    _, data_info = read_data_info(path)
    return model, data_info


def load_data(name: str, split: str, model_kind: str, data_info: dict | None = None, args=None, model=None):
    from pixelwave import data

    kind = data.data_kind(name)
    if kind != model_kind:
        raise UserError(f"data {name!r} is {kind} data but the model is an {model_kind} model")
    if kind == "audio":
        return data.load(name, split=split, **audio_options(args, data_info, model))
    opts = {}
    if kind == "image" and args is not None:
        if getattr(args, "image_size", None):
            opts["size"] = args.image_size
        if getattr(args, "channels", None):
            opts["channels"] = args.channels
        if getattr(args, "levels", None):
            opts["levels"] = args.levels
    if kind == "image" and data_info and data_info.get("kind") == "image" and name.startswith("images:"):
        opts.setdefault("size", tuple(data_info["size"]))
        opts.setdefault("channels", data_info["channels"])
    return data.load(name, split=split, **opts)


def audio_options(args=None, info: dict | None = None, model=None) -> dict:
    """`load_audio` options: the run's data.json (`info`) where there is one, else what the model says; flags
    typed on the command line override; with no run (a fresh `train`) the flags, preset or config, decide."""
    opts = {}
    if model is not None:
        opts["levels"] = model.levels
        if model.cond_channels is not None:
            opts.update(with_mel=True, n_mels=model.cond_channels, hop_length=model.hop_length)
    if info and info.get("kind") == "audio":
        opts.update(sample_rate=info["sample_rate"], levels=info["levels"], crop=info["crop"],
                    trim_db=info.get("trim_db"), with_mel=bool(info.get("mel")))
        if info.get("mel"):
            opts.update({k: info["mel"][k] for k in ("n_mels", "hop_length", "n_fft")})
    if args is not None:
        def given(dest):
            return getattr(args, dest, None) not in (None, False) and (not info or explicit(args, dest))

        for dest in ("levels", "crop", "sample_rate", "n_mels", "hop_length", "n_fft"):
            if given(dest):
                opts[dest] = getattr(args, dest)
        if given("trim_db"):
            opts["trim_db"] = None if args.trim_db == "off" else args.trim_db
        if given("mel"):
            opts["with_mel"] = True
    return opts


def trim_db(text: str):
    if text.lower() in ("off", "none"):
        return "off"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dB (e.g. 40) or 'off', got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of dB or 'off', got {text!r}")
    return value


def image_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with positive sides, got {text!r}")
    return (parts[0], parts[1])


def check_compatible(model, dataset, info: dict | None = None) -> None:
    """The data set must be what the model was built for (channels, levels, classes, speakers, mel frames)."""
    if getattr(model, "data_kind", "image") != dataset.kind:
        raise UserError(f"the model is an {model.data_kind} model but the data is {dataset.kind} data")
    if dataset.kind == "audio":
        if dataset.levels != model.levels:
            raise UserError(f"data has {dataset.levels} mu-law levels but the model expects {model.levels}")
        if model.num_speakers:
            if dataset.speakers is None:
                raise UserError(f"the model is speaker-conditional but {dataset.name} has no speakers")
            known = (info or {}).get("speakers")
            if known is not None and dataset.speakers != known:
                raise UserError(f"{dataset.name} has speakers {', '.join(dataset.speakers)} but the model was "
                                f"trained with {', '.join(known)} (speaker ids would not match)")
            if len(dataset.speakers) > model.num_speakers:
                raise UserError(f"{dataset.name} has {len(dataset.speakers)} speakers but the model knows "
                                f"{model.num_speakers}")
        if model.cond_channels is not None and (dataset.n_mels, dataset.hop_length) != (model.cond_channels,
                                                                                       model.hop_length):
            raise UserError(f"data has {dataset.n_mels} mel bands every {dataset.hop_length} samples but the "
                            f"model expects {model.cond_channels} every {model.hop_length}")
    if dataset.kind == "image":
        if dataset.channels != model.channels:
            raise UserError(f"data has {dataset.channels} channel(s) but the model expects {model.channels}")
        if dataset.levels != model.levels:
            raise UserError(f"data has {dataset.levels} levels but the model expects {model.levels}")
        if model.num_classes and dataset.y is None:
            raise UserError("the model is class-conditional but the data has no labels")
        if model.num_classes and dataset.num_classes and dataset.num_classes > model.num_classes:
            raise UserError(f"data has {dataset.num_classes} classes but the model knows {model.num_classes}")


# ---------------------------------------------------------------------------------------------------------------
# train


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (defaults: the constructor's)")
    g.add_argument("--model", choices=ALL_MODELS, help="model family")
    g.add_argument("--hidden", type=positive(), help="image models: hidden channels")
    g.add_argument("--layers", type=positive(), help="number of layers (WaveNet: dilated layers in all stacks)")
    g.add_argument("--kernel-size", type=positive(), help="kernel size")
    g.add_argument("--mixtures", type=positive(),
                   help="pixelcnn_pp / wavenet --output logistic_mixture: logistic components (default 5 / 10)")
    g.add_argument("--output", choices=("categorical", "logistic_mixture"),
                   help="wavenet: softmax over the mu-law levels (default) or a discretized logistic mixture")
    g.add_argument("--dropout", type=float, help="pixelcnn_pp: dropout in the gated ResNet blocks (default 0.5)")
    g.add_argument("--latent-channels", type=positive(), help="pixelvae: channels of the latent map z (default 4)")
    g.add_argument("--latent-stride", type=positive(), help="pixelvae: image pixels per latent position: 1, 2 or 4")
    g.add_argument("--stacks", type=positive(), help="wavenet: stacks of dilations 1, 2, 4, ... (default 2)")
    g.add_argument("--residual-channels", type=positive(), help="wavenet: residual channels (default 64)")
    g.add_argument("--gate-channels", type=positive(), help="wavenet: channels of each gate half (default 128)")
    g.add_argument("--skip-channels", type=positive(), help="wavenet: skip channels (default 256)")
    g.add_argument("--mel", action="store_true",
                   help="wavenet: condition on log-mel frames of the audio (a vocoder; see resynthesize)")
    g.add_argument("--unconditional", action="store_true",
                   help="ignore class labels / speakers even if the data has them")


def build_model(args, train_set):
    from pixelwave.models import MODELS

    cls = MODELS[args.model]
    if cls.data_kind != train_set.kind:
        raise UserError(f"--model {args.model} models {cls.data_kind} data but --data {args.data} is "
                        f"{train_set.kind} data")
    kwargs = {k: getattr(args, k) for k in MODEL_SIZES[cls.data_kind] if getattr(args, k) is not None}
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    for k in list(kwargs):
        if k not in fields:
            if explicit(args, k):
                raise UserError(f"{flag(k)} does not apply to --model {args.model}")
            del kwargs[k]  # a preset's size for another model of this kind
    if train_set.kind == "image":
        kwargs.update(channels=train_set.channels, levels=train_set.levels)
        if train_set.num_classes and not args.unconditional:
            kwargs["num_classes"] = train_set.num_classes
    else:
        kwargs["levels"] = train_set.levels
        if train_set.speakers and not args.unconditional:
            kwargs["num_speakers"] = len(train_set.speakers)  # the table itself is in the run's data.json
        if train_set.n_mels is not None:
            kwargs.update(cond_channels=train_set.n_mels, hop_length=train_set.hop_length)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise UserError(f"--model {args.model}: {e}") from None


def apply_config_file(parser: argparse.ArgumentParser, path: str) -> dict:
    """Flag defaults from a JSON or TOML file whose keys are flag names (dashes or underscores)."""
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
    actions = {a.dest: a for a in parser._actions}
    values = {}
    for key, value in cfg.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in ("help", "config", "command"):
            raise UserError(f"--config {p}: unknown key {key!r}")
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if not isinstance(value, bool):
                raise UserError(f"--config {p}: {key} must be true or false, not {value!r}")
        elif action.type is not None and value is not None:
            if isinstance(value, (dict, list, bool)):
                raise UserError(f"--config {p}: {key} has the wrong type ({type(value).__name__})")
            try:
                value = action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as e:
                raise UserError(f"--config {p}: {key}: {e}") from None
        if action.choices is not None and value not in action.choices:
            raise UserError(f"--config {p}: {key} must be one of {', '.join(map(str, action.choices))}")
        values[dest] = value
    parser.set_defaults(**values)
    return values


def cmd_train(args, parser) -> int:
    from pixelwave import train

    if args.model is None or args.data is None:
        raise UserError("train needs --model and --data (or a --preset / --config that sets them)")
    kind = _kind_for(args.model)
    wrong = [flag(k) for k in ONLY_FOR["audio" if kind == "image" else "image"] if getattr(args, k) not in
             (None, False)]
    if wrong:
        raise UserError(f"{', '.join(wrong)}: not a flag for --model {args.model} ({kind} data)")
    if kind == "audio" and not args.mel:
        mel_flags = [flag(k) for k in ("n_mels", "hop_length", "n_fft") if getattr(args, k) is not None]
        if mel_flags:
            raise UserError(f"{', '.join(mel_flags)} set(s) up mel features: add --mel to condition on them")
    run_info = None
    if args.resume and args.out and (Path(args.out) / "data.json").is_file():
        # Resume with the run's data options (audio crop, rate, mel): they need not be repeated either.
        _, run_info = read_data_info(args.out)
    train_set = load_data(args.data, "train", kind, run_info, args=args)
    test_set = load_data(args.data, "test", kind, run_info, args=args)
    torch.manual_seed(args.seed)  # weight initialisation is part of the run's seed
    model = build_model(args, train_set)
    saved = Path(args.out or "") / checkpoint.CONFIG
    if args.resume and args.out and saved.is_file():
        # Resume the model that was saved: the sizes need not be repeated on the command line.
        meta = checkpoint.read_config(args.out)
        given = {k: getattr(args, k) for k in MODEL_SIZES[kind] if explicit(args, k)}
        clash = {k: v for k, v in given.items() if meta["config"].get(k, v) != v}
        if clash or meta["model"] != args.model:
            raise UserError(f"--resume: {args.out} holds a {meta['model']} with {meta['config']}; "
                            f"the flags ask for {args.model} with {given}")
        model = checkpoint.build(meta)
    train.reuse_freed_memory()  # this process trains: reuse activations' memory instead of re-faulting it
    train.run(args, model, train_set, test_set)
    return 0


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _kind_for(model_name: str) -> str:
    from pixelwave.models import MODELS

    return MODELS[model_name].data_kind


# ---------------------------------------------------------------------------------------------------------------
# eval / sample / complete


def cmd_eval(args, parser) -> int:
    from pixelwave.train import evaluate

    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device)
    audio = model.data_kind == "audio"
    # Audio is loaded as the run was: its sample rate, mu-law levels, crop and mel options (data.json).
    dataset = load_data(args.data, args.split, model.data_kind, info, None if audio else args, model=model)
    check_compatible(model, dataset, info)
    if len(dataset) == 0:
        raise UserError(f"the {args.split} split of {args.data} is empty")
    batch_size = args.batch_size or (16 if audio else 100)
    torch.manual_seed(0)  # a stochastic bound (PixelVAE's ELBO) gives the same figure every time
    result = evaluate(model, dataset, batch_size, device)
    result.update(data=args.data, split=args.split, checkpoint=str(args.checkpoint), model=model.model_name,
                  bound=bool(getattr(model, "is_bound", False)))
    if audio:
        seconds = result["examples"] * dataset.crop / dataset.sample_rate
        result.update(bits_per_sample=result["bits_per_dim"], samples_per_example=dataset.crop,
                      sample_rate=dataset.sample_rate, seconds=seconds)
    if args.json:
        print(json.dumps(result))
    elif audio:
        print(f"{args.data} [{args.split}]: {result['bits_per_sample']:.4f} bits/sample, "
              f"{result['nats_per_example']:.1f} nats per clip ({result['examples']} clips of {dataset.crop} "
              f"samples, {seconds:.1f} s at {dataset.sample_rate} Hz)")
    else:
        bound = getattr(model, "is_bound", False)
        print(f"{args.data} [{args.split}]: {'<= ' if bound else ''}{result['bits_per_dim']:.4f} bits/dim, "
              f"{'<= ' if bound else ''}{result['nats_per_example']:.2f} nats per image ({result['examples']} images)"
              + (" -- an upper bound from the ELBO, not the exact likelihood" if bound else ""))
    return 0


def _class_labels(model, n: int, klass: int | None, info: dict):
    if model.num_classes is None:
        if klass is not None:
            raise UserError("--class given but the model is not class-conditional")
        return None, None
    if klass is not None:
        if not 0 <= klass < model.num_classes:
            raise UserError(f"--class {klass} is out of range: the model has classes 0..{model.num_classes - 1}")
        return torch.full((n,), klass, dtype=torch.long), None
    # No class given: one row per class.
    per_class = max(1, math.ceil(n / model.num_classes))
    y = torch.arange(model.num_classes).repeat_interleave(per_class)
    return y, per_class


def _image_size(args, info: dict) -> tuple[int, int]:
    if getattr(args, "size", None):
        return args.size
    if info.get("size"):
        return tuple(info["size"])
    raise UserError("the checkpoint has no data.json: pass --size HxW")


def open_image_checkpoint(args):
    """The output path (checked first, so nothing is computed for nothing), device, image model and data.json."""
    out = output_path(args.out, args.force)
    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device)
    if model.data_kind != "image":
        raise UserError(f"{args.checkpoint} is a {model.model_name} (audio) checkpoint, not an image model: use "
                        f"`pixelwave generate` (or `pixelwave resynthesize` for a mel-conditioned one)")
    return out, device, model, info


def cmd_sample(args, parser) -> int:
    out, device, model, info = open_image_checkpoint(args)
    size = _image_size(args, info)
    y, per_row = _class_labels(model, args.n, args.klass, info)
    n = args.n if y is None else len(y)
    gen = torch.Generator().manual_seed(args.seed)
    x = model.sample(n, size=size, y=y, generator=gen, cached=not args.naive, temperature=args.temperature)
    from pixelwave.viz import image_grid, save_image

    save_image(image_grid(x, model.levels, nrow=per_row, scale=args.scale), out)
    what = f"{n} samples" + (f", one row per class ({per_row} each)" if per_row else "")
    print(f"wrote {out} ({what})")
    return 0


def read_image(path: str, channels: int, size: tuple[int, int], levels: int, what: str) -> torch.Tensor:
    """A PNG/JPEG as levels (C, H, W); must already have the model's size (no silent resizing)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {p}: no such file")
    try:
        with Image.open(p) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"{what} {p}: not a readable image ({e})") from None
    if (img.height, img.width) != tuple(size):
        raise UserError(f"{what} {p} is {img.height}x{img.width} but the model works on {size[0]}x{size[1]}")
    import numpy as np

    arr = torch.from_numpy(np.array(img, dtype=np.int64))  # (H, W) or (H, W, 3)
    arr = arr[None] if channels == 1 else arr.permute(2, 0, 1)  # (C, H, W)
    return arr * levels // 256


def cmd_complete(args, parser) -> int:
    out, device, model, info = open_image_checkpoint(args)
    size = _image_size(args, info)
    known = read_image(args.image, model.channels, size, model.levels, "--image")  # (C, H, W)
    h, w = size
    keep = torch.zeros(h, w, dtype=torch.bool)
    if args.keep == "top-half":
        keep[: h // 2] = True
    elif args.keep == "left-half":
        keep[:, : w // 2] = True
    else:
        keep = read_image(args.keep, 1, size, 2, "--keep mask")[0].bool()  # white = keep
    n = args.n
    y = None
    if model.num_classes is not None:
        if args.klass is None:
            raise UserError("the model is class-conditional: pass --class K")
        y, _ = _class_labels(model, n, args.klass, info)
    elif args.klass is not None:
        raise UserError("--class given but the model is not class-conditional")
    x = known[None].expand(n, -1, -1, -1)
    mask = keep[None, None].expand(n, model.channels, h, w)
    gen = torch.Generator().manual_seed(args.seed)
    completions = model.sample(n, x=x, mask=mask, y=y, generator=gen, cached=not args.naive,
                               temperature=args.temperature)
    from pixelwave.viz import image_grid, save_image, to_uint8

    panel = torch.cat([known[None], known[None], completions.cpu()])  # original | kept part | completions
    panel = torch.from_numpy(to_uint8(panel, model.levels)).permute(0, 3, 1, 2).long()  # (N, C, H, W), 0..255
    panel[1][:, ~keep] = 128  # the part to fill, in mid-grey
    save_image(image_grid(panel, 256, nrow=len(panel), scale=args.scale), out)
    print(f"wrote {out} (original, kept part, {n} completions)")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# generate / resynthesize (audio)


def audio_output(path: str, force: bool, n: int = 1) -> tuple[list[Path], Path]:
    """New .wav files and their picture (same stem, .png): `path` itself for one clip, else `<stem>-1.wav` ..
    `<stem>-<n>.wav` beside it; none may exist without --force."""
    p = Path(path)
    if p.suffix.lower() != ".wav":
        raise UserError(f"{p}: output must be a .wav file")
    if not p.parent.exists():
        raise UserError(f"{p.parent}: output folder does not exist")
    wavs = [p] if n == 1 else [p.with_name(f"{p.stem}-{i}{p.suffix}") for i in range(1, n + 1)]
    png = p.with_suffix(".png")
    for q in (*wavs, png):
        if q.exists() and not force:
            raise UserError(f"{q} exists: choose another --out or pass --force to replace it")
    return wavs, png


def load_audio_model(args, command: str):
    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device)
    if model.data_kind != "audio":
        raise UserError(f"{args.checkpoint} is a {model.model_name} (image) checkpoint: `pixelwave {command}` is "
                        f"for WaveNet; use `pixelwave sample` or `pixelwave complete`")
    if not info.get("sample_rate"):
        raise UserError(f"{args.checkpoint} has no data.json with the sample rate it was trained at: it is "
                        f"needed to write audio (train with `pixelwave train` to get one)")
    return model, info, device


def speaker_id(model, info: dict, name: str | None) -> tuple[int | None, str | None]:
    """--speaker NAME (or its number) -> (id, name) by the run's speaker table; None for speaker-less models."""
    if model.num_speakers is None:
        if name is not None:
            raise UserError("the model was trained without speakers (no speaker conditioning): leave out --speaker")
        return None, None
    names = info.get("speakers") or [str(i) for i in range(model.num_speakers)]
    if name is None:
        raise UserError(f"the model is speaker-conditional: pass --speaker NAME (one of {', '.join(names)})")
    if name in names:
        return names.index(name), name
    if name.isdigit() and int(name) < len(names):
        return int(name), names[int(name)]
    raise UserError(f"unknown speaker {name!r}: the model knows {', '.join(names)}")


def write_audio(outs: list[Path], png: Path, codes: torch.Tensor, model, rate: int, titles: list[str],
                reference=None) -> float:
    """Write the generated codes (N, T), one 16-bit WAV per row, and one picture of every waveform and its
    log-mel spectrogram (after `reference`, a (title, wave) panel, if given); returns the seconds per clip."""
    from pixelwave.audio import mu_law_decode, write_wav
    from pixelwave.viz import audio_figure, save_image

    waves = mu_law_decode(codes.cpu(), model.levels).numpy()  # (N, T) in [-1, 1]
    for out, wave in zip(outs, waves, strict=True):
        write_wav(out, wave, rate)
    panels = ([reference] if reference is not None else []) + list(zip(titles, waves, strict=True))
    save_image(audio_figure(panels, rate), png)
    return waves.shape[1] / rate


def prepare_generation(args, model) -> bool:
    """Ready the fused step before the command starts its clock, and return whether --bf16 asks for bfloat16
    generation (after checking it can run, else UserError). The kernel is built now if generation will use it,
    saying so when it compiles (once per CPU, ~10 s), so that the compile is not in the samples/s reported."""
    from pixelwave.fast import _build, wavenet_step

    if args.naive:
        if args.bf16:
            raise UserError("--bf16 runs in the fused CPU step; it cannot be combined with --naive")
        return False
    if next(model.parameters()).device.type == "cpu" and not wavenet_step.disabled():
        if not _build.built(wavenet_step.SOURCE):
            print("compiling the fast WaveNet kernel for this CPU (once; later runs reuse it)", flush=True)
        wavenet_step.kernel()  # a failure warns once; generation then takes the PyTorch path
    if not args.bf16:
        return False
    param = next(model.parameters())
    why = wavenet_step.bf16_unsupported(model, param.dtype, param.device)
    if why:
        raise UserError(f"--bf16 cannot run here: {why}")
    if not wavenet_step.native_bf16():
        print("note: this CPU has no AVX512-BF16: --bf16 computes the same bfloat16 products emulated, not faster")
    return True


def cmd_generate(args, parser) -> int:
    outs, png = audio_output(args.out, args.force, args.num)
    model, info, device = load_audio_model(args, "generate")
    if model.cond_channels is not None:
        raise UserError(f"{args.checkpoint} is conditioned on mel spectrograms (trained with --mel): it needs a "
                        f"recording to follow; use `pixelwave resynthesize {args.checkpoint} --input SPEECH.wav`")
    speaker, name = speaker_id(model, info, args.speaker)
    rate = info["sample_rate"]
    steps = max(1, round(args.seconds * rate))
    bf16 = prepare_generation(args, model)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    n = args.num
    codes = model.generate(steps, batch=n, speaker=speaker, generator=gen, cached=not args.naive,
                           temperature=args.temperature, bf16=bf16)  # (n, steps), one batch
    took = time.perf_counter() - t0
    who = f", speaker {name}" if name else ""
    titles = [f"{model.model_name}{who}, seed {args.seed}" + (f", clip {i + 1} of {n}" if n > 1 else "")
              for i in range(n)]
    seconds = write_audio(outs, png, codes, model, rate, titles)
    wrote = str(outs[0]) if n == 1 else f"{outs[0]} .. {outs[-1].name}"
    clips = f"{seconds:.2f} s" if n == 1 else f"{n} clips of {seconds:.2f} s"
    print(f"wrote {wrote} and {png} ({clips} at {rate} Hz{who}; generated {n * steps:,} samples in {took:.1f} s, "
          f"{n * steps / took:,.0f} samples/s, {'naive' if args.naive else 'cached'}{', bf16' * bf16})")
    return 0


def cmd_resynthesize(args, parser) -> int:
    from pixelwave.audio import log_mel, read_audio

    outs, png = audio_output(args.out, args.force)
    model, info, device = load_audio_model(args, "resynthesize")
    if model.cond_channels is None:
        raise UserError(f"{args.checkpoint} has no mel conditioning (train with --mel to get a vocoder): it "
                        f"cannot follow a recording; use `pixelwave generate`")
    mel = info.get("mel")
    if not mel or (mel["n_mels"], mel["hop_length"]) != (model.cond_channels, model.hop_length):
        raise UserError(f"{args.checkpoint}: data.json does not hold the mel settings the model was trained with")
    speaker, name = speaker_id(model, info, args.speaker)
    rate, hop = info["sample_rate"], mel["hop_length"]
    wave, _ = read_audio(args.input, rate)  # mono, resampled to the model's rate; bad files: UserError
    if args.seconds:
        wave = wave[: max(1, round(args.seconds * rate))]
    cond = log_mel(torch.from_numpy(wave), rate, **mel)[None]  # (1, n_mels, ceil(T / hop))
    steps = cond.shape[-1] * hop
    bf16 = prepare_generation(args, model)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    codes = model.generate(steps, speaker=speaker, cond=cond.to(device), generator=gen, cached=not args.naive,
                           temperature=args.temperature, bf16=bf16)  # (1, steps)
    took = time.perf_counter() - t0
    who = f", speaker {name}" if name else ""
    seconds = write_audio(outs, png, codes, model, rate, [f"resynthesised{who}"],
                          reference=(f"input: {Path(args.input).name}", wave))
    print(f"wrote {outs[0]} and {png} ({seconds:.2f} s at {rate} Hz from the log-mel frames of {args.input}{who}; "
          f"{steps:,} samples in {took:.1f} s, {steps / took:,.0f} samples/s{', bf16' * bf16})")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# data


def cmd_data_speech(args, parser) -> int:
    from tqdm import tqdm

    from pixelwave.data import speech

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: choose a new --out (nothing is overwritten)")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="utterance", disable=args.no_progress)
        bar.update(done - bar.n)

    try:
        meta = speech.build_speech_corpus(out, voices=voices, sentences_file=args.sentences,
                                          sample_rate=args.sample_rate, voices_per_sentence=args.voices_per_sentence,
                                          test_every=args.test_every, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    utts = meta["utterances"]
    test = sum(u["split"] == "test" for u in utts)
    print(f"wrote {out}: {len(utts)} utterances ({meta['seconds']:.0f} s at {meta['sample_rate']} Hz) of "
          f"{meta['sentences']} sentences in {len(meta['speakers'])} voices ({', '.join(meta['speakers'])}), "
          f"{test} held out; train on it with --data wav:{out}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# receptive-field


def cmd_receptive_field(args, parser) -> int:
    from pixelwave.models import MODELS
    from pixelwave.viz import blind_spot, receptive_field, receptive_field_figure, save_image

    out = output_path(args.out, args.force)
    h, w = args.size
    target = (h // 2 + 1, w // 2) if args.target is None else args.target
    if not (0 <= target[0] < h and 0 <= target[1] < w):
        raise UserError(f"--target {target} is outside the {h}x{w} image")
    maps = []
    names = args.model.split(",")
    for name in names:
        causal = [m for m in IMAGE_MODELS if m != "pixelvae"]  # PixelVAE's encoder sees the whole image
        if name not in causal:
            raise UserError(f"--model {name!r}: choose from {', '.join(causal)}")
        torch.manual_seed(args.seed)
        kwargs = dict(channels=1, levels=2, hidden=args.hidden, layers=args.layers)
        if args.kernel_size:
            if "kernel_size" not in {f.name for f in dataclasses.fields(MODELS[name].config_class)}:
                raise UserError(f"--kernel-size does not apply to --model {name}")
            kwargs["kernel_size"] = args.kernel_size
        try:
            model = MODELS[name](**kwargs)
        except ValueError as e:
            raise UserError(f"--model {name}: {e}") from None
        m = receptive_field(model, (h, w), target)
        blind = blind_spot(m, target)
        seen = int((m > 0).sum())
        maps.append((f"{name}, {args.layers} layers", m))
        print(f"{name} ({args.layers} layers): pixel {target} sees {seen} earlier pixels; blind spot: {blind}")
    save_image(receptive_field_figure(maps, target), out)
    print(f"wrote {out}")
    return 0


def target_pixel(text: str) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--target must be I,J, got {text!r}") from None
    return (i, j)


# ---------------------------------------------------------------------------------------------------------------


def cmd_reconstruct(args, parser) -> int:
    out, device, model, info = open_image_checkpoint(args)
    if not hasattr(model, "reconstruct"):
        raise UserError(f"{args.checkpoint} is a {model.model_name} checkpoint: reconstruct needs a pixelvae")
    dataset = load_data(args.data, args.split, model.data_kind, info, args)
    check_compatible(model, dataset, info)
    n = min(args.n, len(dataset))
    batch = dataset.batch(torch.linspace(0, len(dataset) - 1, n).long())  # spread over the split (and classes)
    x = batch["x"].to(device)
    y = batch["y"].to(device) if model.num_classes is not None else None
    recon = model.reconstruct(x, y, generator=torch.Generator().manual_seed(args.seed))
    from pixelwave.viz import image_grid, save_image

    save_image(image_grid(torch.cat([x.cpu(), recon.cpu()]), model.levels, nrow=n, scale=args.scale), out)
    print(f"wrote {out} (top row: {n} {args.split} images of {args.data}, evenly spaced; "
          f"bottom row: decoded from q(z | x))")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pixelwave import train

    parser = Parser(prog="pixelwave", description="Deep autoregressive models: train, score, sample.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a model (one loop for every model)")
    add_model_arguments(p)
    p.add_argument("--data", help="data set: mnist-sample, mnist-sample-binary, mnist:DIR, cifar10:DIR, images:DIR "
                                  "(images); speech-sample, wav:DIR, vctk:DIR (audio)")
    p.add_argument("--image-size", type=image_size, help="images:DIR only: the size images have (HxW)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="images:DIR only: 1 (gray) or 3 (RGB)")
    p.add_argument("--levels", type=int, help="images: requantise pixels to this many levels (2..256); audio: "
                                              "mu-law levels (default 256)")
    g = p.add_argument_group("audio data (wavenet)")
    g.add_argument("--crop", type=positive(), help="samples per training example (default 8000)")
    g.add_argument("--sample-rate", type=positive(), help="resample all audio to this rate (default 16000)")
    g.add_argument("--n-mels", type=positive(), help="with --mel: mel bands (default 80)")
    g.add_argument("--hop-length", type=positive(), help="with --mel: samples per mel frame (default 200)")
    g.add_argument("--n-fft", type=positive(), help="with --mel: STFT window (default 800)")
    g.add_argument("--trim-db", type=trim_db, help="cut leading/trailing audio this many dB below the loudest "
                                                   "(default 40), or 'off'")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named set of defaults (flags override)")
    p.add_argument("--config", help="JSON or TOML file of flag values (flags on the command line override)")
    train.add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="exact held-out bits/dim of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint or run directory")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch-size", type=positive(), help="examples per forward pass (default 100; audio 16)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="draw images from a checkpoint into a grid PNG")
    p.add_argument("checkpoint")
    p.add_argument("-n", type=positive(), default=64, help="number of samples (class-conditional: per class "
                   "rows of ceil(n / classes) unless --class)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--class", dest="klass", type=int, help="class label to condition on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=image_size, help="image size HxW (default: the training data's)")
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--naive", action="store_true", help="use the reference sampler (same samples, slower)")
    p.add_argument("--scale", type=positive(), default=4, help="enlarge the grid by this factor")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("complete", help="fill in the unknown part of an image")
    p.add_argument("checkpoint")
    p.add_argument("--image", required=True, help="PNG/JPEG of the model's size")
    p.add_argument("--keep", required=True, help="top-half, left-half, or a mask PNG (white = keep)")
    p.add_argument("--out", required=True)
    p.add_argument("-n", type=positive(), default=4, help="number of completions")
    p.add_argument("--class", dest="klass", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--naive", action="store_true")
    p.add_argument("--scale", type=positive(), default=6)
    p.add_argument("--force", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_complete, size=None)

    p = sub.add_parser("generate", help="speak: draw audio from a WaveNet checkpoint into a WAV (+ PNG)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="output .wav; the waveform + log-mel picture goes to .png beside it")
    p.add_argument("--seconds", type=positive(float), default=1.0, help="length (default 1 s)")
    p.add_argument("-n", "--num", type=positive(), default=1,
                   help="clips to draw in one batch (default 1; faster per clip than one at a time): written as "
                        "<out stem>-1.wav .. -N.wav, with one picture of all of them")
    p.add_argument("--speaker", help="speaker name (or number) of a speaker-conditional model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--naive", action="store_true", help="use the reference generator (same audio, much slower)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 weights in the fused CPU step: faster on CPUs with AVX512-BF16; the audio then "
                        "differs slightly from the float32 path's")
    p.add_argument("--force", action="store_true", help="replace --out and its .png if they exist")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("resynthesize", help="re-speak a recording from its log-mel frames (mel WaveNet)")
    p.add_argument("checkpoint")
    p.add_argument("--input", required=True, help="WAV/FLAC/OGG recording")
    p.add_argument("--out", required=True, help="output .wav; input and output pictures go to .png beside it")
    p.add_argument("--speaker", help="speaker name (or number) of a speaker-conditional model")
    p.add_argument("--seconds", type=positive(float), help="use only the first S seconds of --input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--naive", action="store_true", help="use the reference generator (same audio, much slower)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 weights in the fused CPU step: faster on CPUs with AVX512-BF16; the audio then "
                        "differs slightly from the float32 path's")
    p.add_argument("--force", action="store_true", help="replace --out and its .png if they exist")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_resynthesize)

    p = sub.add_parser("data", help="build data sets")
    data_sub = p.add_subparsers(dest="dataset", required=True, parser_class=Parser)
    p = data_sub.add_parser("speech", help="an accent-labelled speech corpus made with espeak-ng (load: wav:DIR)")
    p.add_argument("--out", required=True, help="new (or empty) folder")
    p.add_argument("--voices", help="comma-separated espeak-ng voices (default en-us,en-gb,en-gb-scotland,en-029)")
    p.add_argument("--sentences", help="text file, one sentence a line (default: the 104 shipped sentences)")
    p.add_argument("--sample-rate", type=positive(), default=16000)
    p.add_argument("--voices-per-sentence", type=positive(),
                   help="training sentences are spoken by this many voices in turn (default: all)")
    p.add_argument("--test-every", type=positive(), default=10, help="every N-th sentence is held out (default 10)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_data_speech)

    p = sub.add_parser("reconstruct", help="pixelvae: held-out images next to their reconstructions")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("-n", type=positive(), default=8, help="number of images")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=positive(), default=4)
    p.add_argument("--force", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_reconstruct)

    from pixelwave.compare import add_compare_arguments, run_compare

    p = sub.add_parser("compare", help="the seed's table: several models, equal size and CPU budget")
    add_compare_arguments(p)
    p.set_defaults(func=lambda args, parser: run_compare(args))

    p = sub.add_parser("receptive-field", help="measure which pixels a model's output can see")
    p.add_argument("--model", required=True, help="image models, comma-separated (e.g. pixelcnn,gated_pixelcnn)")
    p.add_argument("--layers", type=positive(), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--kernel-size", type=positive())
    p.add_argument("--hidden", type=positive(), default=16)
    p.add_argument("--size", type=image_size, default=(15, 15))
    p.add_argument("--target", type=target_pixel, help="I,J (default: just below the centre)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_receptive_field)
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and (args.preset or args.config):
        train_parser = parser._subparsers._group_actions[0].choices["train"]
        preset = dict(PRESETS.get(args.preset) or {})
        by_kind = {k: preset.pop(k) for k in ("image", "audio") if k in preset}
        train_parser.set_defaults(**preset)
        from_config = apply_config_file(train_parser, args.config) if args.config else {}
        args = parser.parse_args(argv)
        if by_kind and args.model is not None:
            # The preset's sizes for this kind of model; what the config file set stays.
            kind_defaults = {k: v for k, v in by_kind.get(_kind_for(args.model), {}).items() if k not in from_config}
            train_parser.set_defaults(**kind_defaults)
            args = parser.parse_args(argv)
    args.argv = list(argv)  # what was typed, to tell explicit flags from preset / config defaults
    return args, parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, parser = parse(argv)
        return args.func(args, parser)
    except UserError as e:
        print(f"pixelwave: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixelwave: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
