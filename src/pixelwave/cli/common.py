"""What every command shares: the parser that turns mistakes into one line, argument types, the device,
output files that are never silently replaced, and reading a checkpoint with its data description."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from pixelwave import checkpoint, pretrained
from pixelwave.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with a mistake as one line (UserError, exit 2), and descriptions and examples kept as written."""

    example = ""  # a command's example: the last line of its --help and its entry in `pixelwave --help`

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message by default)
        raise UserError(message)


def add_command(sub, name: str, what: str, example: str, threads: bool = True) -> Parser:
    """A command's parser: `what` it does (one line, at the top of its --help and in `pixelwave --help`), one
    `example` (the last line of both) and, for a command that computes, --threads (which `main` applies)."""
    p = sub.add_parser(name, help=what, description=what, epilog=f"example:\n  {example}")
    p.what, p.example = what, example
    if threads:
        p.add_argument_group("process").add_argument(
            "--threads", type=positive(), help="torch CPU threads (default: the cores that are idle when it starts, "
                                               "at least 1)")
    return p


def flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


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


def output_path(path: str, force: bool) -> Path:
    """A new output picture (never silently replace one that exists)."""
    p = Path(path)
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{p}: output must be a .png or .jpg file")
    if not p.parent.exists():
        raise UserError(f"{p.parent}: output folder does not exist")
    if p.exists() and not force:
        raise UserError(f"{p} exists: choose another --out or pass --force to replace it")
    return p


def read_data_info(path: str | Path) -> tuple[Path, dict]:
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


def add_checkpoint_argument(p: argparse.ArgumentParser) -> None:
    """The checkpoint a command reads, and --no-verify."""
    p.add_argument("checkpoint", help="a checkpoint or run directory (a run being trained can be read)")
    p.add_argument("--no-verify", action="store_true",
                   help="load the checkpoint even if its files do not match its manifest.json")


def load_checkpoint(path: str, device: torch.device, verify: bool = True):
    """The model saved in `path` (or shipped: `pretrained:NAME`) on `device` (checked against its manifest unless
    verify=False), and the description of the data it was trained on."""
    path = pretrained.resolve(path)
    model = checkpoint.load(path, verify=verify).to(device)
    _, data_info = read_data_info(path)
    return model, data_info


def audio_options(info: dict | None = None, model=None, given: dict | None = None) -> dict:
    """`load_audio` options: the run's data.json (`info`) where there is one, else what the model says; then
    the options `given` (flags typed on the command line, or a fresh run's merged settings) override."""
    opts = {}
    if model is not None:
        opts["levels"] = model.levels
        if model.cond_channels is not None:
            opts.update(with_mel=True, n_mels=model.config.mel_bands, hop_length=model.hop_length,
                        pitch=model.config.pitch)
        if getattr(model.config, "pre_emphasis", 0):
            opts["pre_emphasis"] = model.config.pre_emphasis
    if info and info.get("kind") == "audio":
        opts.update(sample_rate=info["sample_rate"], levels=info["levels"], crop=info["crop"],
                    trim_db=info.get("trim_db"), with_mel=bool(info.get("mel")))
        if info.get("pre_emphasis"):
            opts["pre_emphasis"] = info["pre_emphasis"]
        if info.get("cond_context"):  # the run's crops carried their neighbours' frames (--cond-context)
            opts["context"] = info["cond_context"]
        if info.get("mel"):
            opts.update({k: info["mel"][k] for k in ("n_mels", "hop_length", "n_fft")})
            opts["pitch"] = bool(info["mel"].get("pitch"))
    for key, value in (given or {}).items():
        if value in (None, False):
            continue
        if key in ("levels", "crop", "sample_rate", "n_mels", "hop_length", "n_fft", "pre_emphasis"):
            opts[key] = value
        elif key == "trim_db":
            opts["trim_db"] = None if value == "off" else value
        elif key == "mel":
            opts["with_mel"] = True
        elif key == "pitch":
            opts["pitch"] = True
    return opts


def load_data_for(model, name: str, split: str, info: dict | None = None, given: dict | None = None):
    """Data set `name` loaded as `model` needs it: audio as the run was made (its data.json: rate, levels, crop,
    mel options); image folders at the run's size and channels. UserError if it is the wrong kind of data."""
    from pixelwave import data

    kind = data.data_kind(name)
    if kind != model.data_kind:
        raise UserError(f"data {name!r} is {kind} data but the model is an {model.data_kind} model")
    if kind == "audio":
        return data.load(name, split=split, **audio_options(info, model, given))
    opts = {k: v for k, v in (given or {}).items() if v is not None}
    if info and info.get("kind") == "image" and name.startswith("images:"):
        opts.setdefault("size", tuple(info["size"]))
        opts.setdefault("channels", info["channels"])
    return data.load(name, split=split, **opts)
