"""pixelwave sample | complete | reconstruct | receptive-field: the image commands."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch

from pixelwave.cli.common import (
    add_checkpoint_argument,
    add_command,
    device_of,
    image_size,
    load_checkpoint,
    load_data_for,
    output_path,
    positive,
)
from pixelwave.compat import check_compatible
from pixelwave.errors import UserError
from pixelwave.models import MODELS, PixelVAE


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
    if args.size:
        return args.size
    if info.get("size"):
        return tuple(info["size"])
    raise UserError("the checkpoint has no data.json: pass --size HxW")


def open_image_checkpoint(args):
    """The output path (checked first, so nothing is computed for nothing), device, image model and data.json."""
    out = output_path(args.out, args.force)
    device = device_of(args.device)
    model, info = load_checkpoint(args.checkpoint, device, not args.no_verify)
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
    if model.num_classes is not None and args.klass is None:
        y = _classes_from_the_kept_part(model, known, keep, n, args.seed, info, args.checkpoint)
    elif model.num_classes is not None:
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




def _classes_from_the_kept_part(model, known, keep, n: int, seed: int, info: dict, checkpoint: str):
    """n classes (n,) drawn from p(class | kept part), one per completion, so that each completion is a draw from
    p(the rest | the kept part) itself; prints the posterior's top classes. The posterior is exact only for a
    kept part that is the top of the image in raster order: UserError for any other."""
    from pixelwave.posterior import class_posterior, raster_prefix

    if raster_prefix(keep[None]) is None:
        raise UserError("the model is class-conditional: pass --class K (it is inferred only when --keep is the "
                        "top of the image in raster order, e.g. top-half)")
    if model.is_bound:
        raise UserError(f"the model is class-conditional: pass --class K ({model.model_name}'s likelihood is a "
                        f"bound, so its class posterior would not be exact)")
    classes, counts = model.num_classes, info.get("class_counts")
    if counts is None:
        print(f"note: {checkpoint}/data.json records no training label counts (an older run): uniform class prior")
    prior = None if counts is None else torch.tensor(counts + [0] * (classes - len(counts)), dtype=torch.float64)
    posterior = class_posterior(model, known[None], keep, prior)[0].cpu()  # (K,)
    names = info.get("class_names") or []
    names = names if len(names) == classes else [str(k) for k in range(classes)]
    top = ", ".join(f"{names[k]} ({posterior[k]:.3f})" for k in posterior.argsort(descending=True)[:3].tolist())
    print(f"p(class | kept part) with a {'uniform prior' if counts is None else 'prior of the training labels'}: "
          f"{top}")
    y = torch.multinomial(posterior, n, replacement=True, generator=torch.Generator().manual_seed(seed))  # (n,)
    print("completing under classes drawn from it: " + ", ".join(names[k] for k in y.tolist()))
    return y


def cmd_receptive_field(args, parser) -> int:
    from pixelwave.viz import blind_spot, receptive_field, receptive_field_figure, save_image

    out = output_path(args.out, args.force)
    h, w = args.size
    target = (h // 2 + 1, w // 2) if args.target is None else args.target
    if not (0 <= target[0] < h and 0 <= target[1] < w):
        raise UserError(f"--target {target} is outside the {h}x{w} image")
    maps = []
    names = args.model.split(",")
    for name in names:
        causal = [m for m, cls in MODELS.items() if cls.data_kind == "image" and m != "pixelvae"]  # PixelVAE's
        # encoder sees the whole image
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




def cmd_reconstruct(args, parser) -> int:
    out, device, model, info = open_image_checkpoint(args)
    if not isinstance(model, PixelVAE):
        raise UserError(f"{args.checkpoint} is a {model.model_name} checkpoint: reconstruct needs a pixelvae")
    dataset = load_data_for(model, args.data, args.split, info)
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



def add_parsers(sub) -> None:
    p = add_command(sub, "sample", "draw images from a checkpoint into a grid PNG",
                    "pixelwave sample runs/demo -n 80 --out samples.png")
    add_checkpoint_argument(p)
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

    p = add_command(sub, "complete", "fill in the unknown part of an image",
                    "pixelwave complete runs/demo --image digit.png --keep top-half --out completion.png")
    add_checkpoint_argument(p)
    p.add_argument("--image", required=True, help="PNG/JPEG of the model's size")
    p.add_argument("--keep", required=True, help="top-half, left-half, or a mask PNG (white = keep)")
    p.add_argument("--out", required=True)
    p.add_argument("-n", type=positive(), default=4, help="number of completions")
    p.add_argument("--class", dest="klass", type=int,
                   help="the class to complete under (a class-conditional model without it: with --keep top-half, "
                        "each completion's class is drawn from p(class | kept part), which it prints)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=positive(float), default=1.0)
    p.add_argument("--naive", action="store_true")
    p.add_argument("--scale", type=positive(), default=6)
    p.add_argument("--force", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_complete, size=None)

    p = add_command(sub, "reconstruct", "pixelvae: held-out images next to their reconstructions",
                    "pixelwave reconstruct runs/vae --data mnist-sample-binary --out recon.png")
    add_checkpoint_argument(p)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("-n", type=positive(), default=8, help="number of images")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=positive(), default=4)
    p.add_argument("--force", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_reconstruct)

    p = add_command(sub, "receptive-field", "measure which pixels a model's output can see",
                    "pixelwave receptive-field --model pixelcnn,gated_pixelcnn --layers 5 --out rf.png")
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
