"""pixelwave command line: train | eval | sample | complete | receptive-field.

Every user mistake becomes one line on stderr and exit code 2 (UserError); nothing already saved is touched.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path

import torch

from pixelwave import checkpoint
from pixelwave.errors import UserError

IMAGE_MODELS = ("pixelcnn", "gated_pixelcnn")
ALL_MODELS = IMAGE_MODELS

# Presets fill in flag defaults; a config file and explicit flags override them.
PRESETS = {
    "demo": dict(model="gated_pixelcnn", data="mnist-sample-binary", hidden=32, layers=6, kernel_size=5,
                 steps=600, batch_size=32, lr=3e-3, warmup_steps=50, eval_every=300, checkpoint_every=300),
    "tiny": dict(hidden=8, layers=2, kernel_size=3, steps=2, batch_size=4),
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


def load_checkpoint(path: str, device: torch.device):
    model = checkpoint.load(path).to(device)
    data_info = {}
    info_path = Path(path) / "data.json"
    if info_path.is_file():
        try:
            data_info = json.loads(info_path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{info_path}: not valid JSON ({e})") from None
    return model, data_info


def load_data(name: str, split: str, model_kind: str, data_info: dict | None = None, args=None):
    from pixelwave import data

    kind = data.data_kind(name)
    if kind != model_kind:
        raise UserError(f"data {name!r} is {kind} data but the model is an {model_kind} model")
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


def check_compatible(model, dataset) -> None:
    """The data set must be what the model was built for (channels, levels, classes)."""
    if getattr(model, "data_kind", "image") != dataset.kind:
        raise UserError(f"the model is an {model.data_kind} model but the data is {dataset.kind} data")
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
    g.add_argument("--hidden", type=positive(), help="hidden channels")
    g.add_argument("--layers", type=positive(), help="number of layers / residual blocks")
    g.add_argument("--kernel-size", type=positive(), help="kernel size")
    g.add_argument("--unconditional", action="store_true", help="ignore class labels even if the data has them")


def build_model(args, train_set):
    from pixelwave.models import MODELS

    kwargs = {k: getattr(args, k) for k in ("hidden", "layers", "kernel_size") if getattr(args, k) is not None}
    cls = MODELS[args.model]
    if cls.data_kind != train_set.kind:
        raise UserError(f"--model {args.model} models {cls.data_kind} data but --data {args.data} is "
                        f"{train_set.kind} data")
    if train_set.kind == "image":
        kwargs.update(channels=train_set.channels, levels=train_set.levels)
        if train_set.num_classes and not args.unconditional:
            kwargs["num_classes"] = train_set.num_classes
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise UserError(f"--model {args.model}: {e}") from None


def apply_config_file(parser: argparse.ArgumentParser, path: str) -> None:
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


def cmd_train(args, parser) -> int:
    from pixelwave import train

    if args.model is None or args.data is None:
        raise UserError("train needs --model and --data (or a --preset / --config that sets them)")
    train_set = load_data(args.data, "train", _kind_for(args.model), args=args)
    test_set = load_data(args.data, "test", _kind_for(args.model), args=args)
    torch.manual_seed(args.seed)  # weight initialisation is part of the run's seed
    model = build_model(args, train_set)
    saved = Path(args.out or "") / checkpoint.CONFIG
    if args.resume and args.out and saved.is_file():
        # Resume the model that was saved: the sizes need not be repeated on the command line.
        meta = checkpoint.read_config(args.out)
        given = {k: getattr(args, k) for k in ("hidden", "layers", "kernel_size")
                 if any(a == flag(k) or a.startswith(flag(k) + "=") for a in args.argv)}
        clash = {k: v for k, v in given.items() if meta["config"].get(k, v) != v}
        if clash or meta["model"] != args.model:
            raise UserError(f"--resume: {args.out} holds a {meta['model']} with {meta['config']}; "
                            f"the flags ask for {args.model} with {given}")
        model = checkpoint.build(meta)
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
    dataset = load_data(args.data, args.split, model.data_kind, info, args)
    check_compatible(model, dataset)
    if len(dataset) == 0:
        raise UserError(f"the {args.split} split of {args.data} is empty")
    result = evaluate(model, dataset, args.batch_size, device)
    result.update(data=args.data, split=args.split, checkpoint=str(args.checkpoint), model=model.model_name)
    if args.json:
        print(json.dumps(result))
    else:
        unit = "image" if dataset.kind == "image" else "clip"
        print(f"{args.data} [{args.split}]: {result['bits_per_dim']:.4f} bits/dim, "
              f"{result['nats_per_example']:.2f} nats per {unit} ({result['examples']} {unit}s)")
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


def cmd_sample(args, parser) -> int:
    out = output_path(args.out, args.force)
    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device)
    if model.data_kind != "image":
        raise UserError(f"{args.checkpoint} is a {model.model_name} checkpoint: use `pixelwave generate`")
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
    out = output_path(args.out, args.force)
    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device)
    if model.data_kind != "image":
        raise UserError(f"{args.checkpoint} is a {model.model_name} checkpoint, not an image model")
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
        if name not in IMAGE_MODELS:
            raise UserError(f"--model {name!r}: choose from {', '.join(IMAGE_MODELS)}")
        torch.manual_seed(args.seed)
        kwargs = dict(channels=1, levels=2, hidden=args.hidden, layers=args.layers)
        if args.kernel_size:
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


def build_parser() -> argparse.ArgumentParser:
    from pixelwave import train

    parser = Parser(prog="pixelwave", description="Deep autoregressive models: train, score, sample.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("train", help="train a model (one loop for every model)")
    add_model_arguments(p)
    p.add_argument("--data", help="data set: mnist-sample, mnist-sample-binary, mnist:DIR, cifar10:DIR, images:DIR")
    p.add_argument("--image-size", type=image_size, help="images:DIR only: the size images have (HxW)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="images:DIR only: 1 (gray) or 3 (RGB)")
    p.add_argument("--levels", type=int, help="requantise pixels to this many levels (2..256)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named set of defaults (flags override)")
    p.add_argument("--config", help="JSON or TOML file of flag values (flags on the command line override)")
    train.add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="exact held-out bits/dim of a checkpoint")
    p.add_argument("checkpoint", help="checkpoint or run directory")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch-size", type=positive(), default=100)
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

    p = sub.add_parser("receptive-field", help="measure which pixels a model's output can see")
    p.add_argument("--model", required=True, help="pixelcnn, gated_pixelcnn, or both comma-separated")
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
        if args.preset:
            train_parser.set_defaults(**PRESETS[args.preset])
        if args.config:
            apply_config_file(train_parser, args.config)
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
