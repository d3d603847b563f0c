"""Checkpoints: weights in safetensors, constructor config in JSON. Nothing here can execute code on load.

A checkpoint is a directory holding `model.safetensors` and `config.json`; a training run directory is one.
`pretrained:NAME` names one shipped in the package (pixelwave.pretrained): it can be read, never written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pixelwave import pretrained
from pixelwave.errors import UserError

FORMAT = "pixelwave"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write a file via a temporary file in the same folder, fsync, then rename: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    path = Path(path)

    def write(f):
        # safetensors writes to a filename; write next to the target and copy the bytes in.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".st")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            with open(tmp, "rb") as src:
                f.write(src.read())
        finally:
            os.unlink(tmp)

    atomic_write(path, write)


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None


def model_config(model) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.model_name,
            "config": dataclasses.asdict(model.config)}


def save(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Save `model` to directory `path` (created if needed) as model.safetensors + config.json."""
    pretrained.refuse_write(path)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_tensors(path / WEIGHTS, model.state_dict())
    write_json(path / CONFIG, model_config(model))


def read_config(path: str | os.PathLike) -> dict:
    path = Path(pretrained.resolve(path))
    cfg_path = path / CONFIG
    if not path.is_dir():
        raise UserError(f"{path}: no such checkpoint directory")
    if not cfg_path.is_file():
        raise UserError(f"{path}: not a pixelwave checkpoint (no {CONFIG})")
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{cfg_path}: not a pixelwave checkpoint config")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{cfg_path}: checkpoint format version {meta.get('format_version')!r} is not supported "
                        f"(this pixelwave reads version {FORMAT_VERSION})")
    return meta


def build(meta: dict) -> torch.nn.Module:
    """Construct an untrained model from a config dict as written by `model_config`."""
    from pixelwave.models import MODELS

    name = meta.get("model")
    if name not in MODELS:
        raise UserError(f"unknown model {name!r} in checkpoint (known: {', '.join(sorted(MODELS))})")
    cls = MODELS[name]
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    cfg = meta.get("config", {})
    unknown = set(cfg) - fields
    if unknown:
        raise UserError(f"checkpoint config for {name} has unknown keys: {', '.join(sorted(unknown))}")
    try:
        return cls(**cfg)
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint config for {name} is invalid: {e}") from None


def load(path: str | os.PathLike, weights: str = WEIGHTS) -> torch.nn.Module:
    """Rebuild the model saved in directory `path` (or shipped as `pretrained:NAME`) and load its weights
    (safetensors only)."""
    path = Path(pretrained.resolve(path))
    model = build(read_config(path))
    wpath = path / weights
    if not wpath.is_file():
        raise UserError(f"{path}: checkpoint has no {weights}")
    state = read_tensors(wpath)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{wpath}: weights do not match the config ({first})") from None
    model.eval()
    return model
