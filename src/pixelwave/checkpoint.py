"""Checkpoints: weights in safetensors, constructor config in JSON. Nothing here can execute code on load.

A checkpoint is a directory holding `model.safetensors`, `config.json` and `manifest.json` (the size and SHA-256
of each file, written last); a training run directory is one. Loading checks the files it reads against the
manifest, so a damaged or incomplete checkpoint is refused, naming the file. A checkpoint saved by pixelwave 0.1
has no manifest: it loads, with a notice (`UnverifiedCheckpoint`). One saved since says so in its config.json
(`"manifest": "manifest.json"`), so a missing manifest is damage there, not age.
`pretrained:NAME` names a checkpoint shipped in the package (pixelwave.pretrained): it can be read, never written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
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
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "pixelwave-manifest"
MANIFEST_VERSION = 1


class DamagedCheckpoint(UserError):
    """A checkpoint's file does not match its manifest, or the manifest is missing or unreadable."""


class UnverifiedCheckpoint(UserWarning):
    """A checkpoint without a manifest (saved by pixelwave 0.1) was loaded without verification."""


def stage(path: str | os.PathLike, write) -> Path:
    """Write a file under a temporary name beside `path` (flushed, fsynced) and return that name; renaming it to
    `path` is the caller's commit."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Write a file via a temporary file in the same folder, fsync, then rename: never half-written."""
    tmp = stage(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def write_json(path: str | os.PathLike, obj) -> None:
    atomic_write(path, lambda f: f.write(json_bytes(obj)))


# ---- the manifest: every file's size and SHA-256 ----
def digest(path: str | os.PathLike) -> dict:
    """{"size", "sha256"} of a file, read in 1 MB chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def manifest(files: dict) -> dict:
    """The contents of a manifest.json listing `files` ({name: digest})."""
    return {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "files": files}


def write_manifest(folder: str | os.PathLike, names) -> None:
    """Write folder/manifest.json for the files `names` in it, as they are on disk. Call it once they are all
    written: the folder is complete exactly when its manifest verifies."""
    folder = Path(folder)
    write_json(folder / MANIFEST, manifest({name: digest(folder / name) for name in sorted(names)}))


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """{name: {"size", "sha256"}} from folder/manifest.json, or None for a checkpoint saved by pixelwave 0.1.
    DamagedCheckpoint if the manifest is unreadable, or missing where config.json says there is one."""
    path = Path(folder) / MANIFEST
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        if _declares_manifest(folder):
            raise DamagedCheckpoint(f"{path} is missing: the checkpoint is damaged or incomplete") from None
        return None
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8
        raise DamagedCheckpoint(f"{path} is damaged: unreadable ({e})") from None
    if not (isinstance(meta, dict) and meta.get("format") == MANIFEST_FORMAT and isinstance(meta.get("files"), dict)):
        raise DamagedCheckpoint(f"{path} is damaged: not a pixelwave manifest")
    if meta.get("version") != MANIFEST_VERSION:
        raise UserError(f"{path}: manifest version {meta.get('version')!r} is not supported (this pixelwave reads "
                        f"version {MANIFEST_VERSION})")
    return meta["files"]


def _declares_manifest(folder: str | os.PathLike) -> bool:
    try:
        meta = json.loads((Path(folder) / CONFIG).read_bytes())
    except (OSError, ValueError):
        return False  # no config (not a checkpoint) or an unreadable one: reading it will say so
    return isinstance(meta, dict) and meta.get("manifest") == MANIFEST


def verify_files(folder: str | os.PathLike, names=None) -> dict | None:
    """Check the files `names` of `folder` (default: all its manifest lists) against its manifest; return the
    manifest's entries, or None for a checkpoint saved by pixelwave 0.1 (no manifest: nothing to check against).
    DamagedCheckpoint names the first file that is missing or differs. A name that is neither listed nor there
    is skipped: whoever reads it says that it is missing."""
    folder = Path(folder)
    files = read_manifest(folder)
    if files is None:
        return None
    for name in files if names is None else names:
        path = folder / name
        if name not in files:
            if path.exists():
                raise DamagedCheckpoint(f"{path} is not listed in {folder / MANIFEST}: it cannot be verified")
            continue
        try:
            got = digest(path)
        except FileNotFoundError:
            raise DamagedCheckpoint(f"{path} is missing (listed in {MANIFEST}): the checkpoint is damaged") from None
        except OSError as e:
            raise DamagedCheckpoint(f"{path} is unreadable: {e.strerror or e}") from None
        want = files[name]
        if got != want:
            size = want.get("size") if isinstance(want, dict) else None
            why = f"{got['size']:,} bytes, not {size:,}" if isinstance(size, int) and size != got["size"] \
                else "its SHA-256 differs"
            raise DamagedCheckpoint(f"{path} is damaged: it does not match {MANIFEST} ({why})")
    return files


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
            "config": dataclasses.asdict(model.config), "manifest": MANIFEST}


def save(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Save `model` to directory `path` (created if needed) as model.safetensors + config.json, then their
    manifest.json."""
    pretrained.refuse_write(path)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_tensors(path / WEIGHTS, model.state_dict())
    write_json(path / CONFIG, model_config(model))
    write_manifest(path, [WEIGHTS, CONFIG])


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


def load(path: str | os.PathLike, weights: str = WEIGHTS, verify: bool = True) -> torch.nn.Module:
    """Rebuild the model saved in directory `path` (or shipped as `pretrained:NAME`) and load its weights
    (safetensors only). `verify` checks config.json and the weights against the manifest first
    (DamagedCheckpoint names a file that differs); a checkpoint from pixelwave 0.1 has none and loads with an
    `UnverifiedCheckpoint` warning."""
    path = Path(pretrained.resolve(path))
    verified = verify_files(path, [CONFIG, weights]) if verify and path.is_dir() else {}
    model = build(read_config(path))  # a missing folder or config.json is named here
    wpath = path / weights
    if not wpath.is_file():
        raise UserError(f"{path}: checkpoint has no {weights}")
    state = read_tensors(wpath)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{wpath}: weights do not match the config ({first})") from None
    if verified is None:
        warnings.warn(f"{path} has no {MANIFEST} (saved by pixelwave 0.1): loaded without verification",
                      UnverifiedCheckpoint, stacklevel=2)
    model.eval()
    return model
