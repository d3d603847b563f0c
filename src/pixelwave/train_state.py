"""Training checkpoints on disk: safetensors + JSON only, written so a kill never leaves one half-written.

A run directory (`--out DIR`):

    model.safetensors, config.json   the latest weights: `pixelwave.load(DIR)` works after the first save
    ema.safetensors                  the latest EMA weights (--ema): `pixelwave.load(DIR, "ema.safetensors")`
    data.json                        the training set's info(): image size, levels, classes, ...
    train_args.json                  the flags of the latest (re)start
    tb/                              TensorBoard events
    checkpoints/step-000500/         one complete checkpoint a folder, the last K kept:
        model.safetensors, config.json, [ema.safetensors]
        optimizer.safetensors        every tensor of optimizer.state_dict(), keys "state.<param>.<name>"
        state.json                   step, data position, metrics, flags, the optimizer's other state

A checkpoint is written into a hidden temporary folder that is renamed to `step-NNNNNN` only once every file
in it is complete and fsynced, so every `step-*` folder is complete; `latest_checkpoint` ignores the rest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from pixelwave import checkpoint
from pixelwave.errors import UserError

STATE_FORMAT = "pixelwave-train-state"
STATE_VERSION = 1
CHECKPOINTS = "checkpoints"
EMA = "ema.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:06d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in `run_dir`, oldest first, as (step, folder)."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


# ---- optimizer state <-> (tensors, JSON) ----
def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split optimizer.state_dict() into safetensors-ready tensors and a JSON-ready rest."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in sd["state"].items():
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """The inverse of `optimizer_to_flat`: a dict for optimizer.load_state_dict()."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in rest["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    # JSON has no tuples; torch's optimizers keep betas as a tuple.
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---- writing ----
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: str | os.PathLike, step: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, state: dict, ema: torch.nn.Module | None = None,
                    keep: int = 3) -> Path:
    """Write checkpoint `step` atomically, point the top-level weights at it, and keep the last `keep`.

    Raises UserError (naming the folder and the OS reason) if the disk is full or the folder unwritable; the
    previous checkpoints are untouched in that case.
    """
    run_dir = Path(run_dir)
    final = step_dir(run_dir, step)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        checkpoint.write_tensors(tmp / checkpoint.WEIGHTS, model.state_dict())
        checkpoint.write_json(tmp / checkpoint.CONFIG, checkpoint.model_config(model))
        if ema is not None:
            checkpoint.write_tensors(tmp / EMA, ema.state_dict())
        opt_tensors, opt_rest = optimizer_to_flat(optimizer)
        checkpoint.write_tensors(tmp / OPTIMIZER, opt_tensors)
        checkpoint.write_json(tmp / STATE, {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step,
                                            **state, "optimizer": opt_rest})
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. a resumed run stopped at once): replace it
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        # The top-level copy, so `pixelwave.load(DIR)` always gives the latest weights; each file is atomic.
        checkpoint.write_tensors(run_dir / checkpoint.WEIGHTS, model.state_dict())
        checkpoint.write_json(run_dir / checkpoint.CONFIG, checkpoint.model_config(model))
        if ema is not None:
            checkpoint.write_tensors(run_dir / EMA, ema.state_dict())
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        kept = f"; the last complete checkpoint is {previous}" if previous else ""
        raise UserError(f"cannot write checkpoint {final}: {e.strerror or e}{kept}") from None
    prune(run_dir, keep)
    return final


def prune(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and temporary folders left by a killed run."""
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    folder = Path(run_dir) / CHECKPOINTS
    for p in folder.glob(".tmp-*") if folder.is_dir() else []:
        pid = p.name.rsplit("-", 1)[-1]
        if pid != str(os.getpid()):
            shutil.rmtree(p, ignore_errors=True)


# ---- reading ----
def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read one checkpoint folder: {"config", "model", "ema" (or None), "optimizer", "state"}. No pickle."""
    path = Path(path)
    state_path = path / STATE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{state_path}: unreadable training state ({e})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{state_path}: not a pixelwave training state")
    if state.get("version") != STATE_VERSION:
        raise UserError(f"{state_path}: training state version {state.get('version')!r} is not supported "
                        f"(this pixelwave reads version {STATE_VERSION})")
    opt_rest = state.pop("optimizer")
    return {
        "config": checkpoint.read_config(path),
        "model": checkpoint.read_tensors(path / checkpoint.WEIGHTS),
        "ema": checkpoint.read_tensors(path / EMA) if (path / EMA).is_file() else None,
        "optimizer": optimizer_from_flat(checkpoint.read_tensors(path / OPTIMIZER), opt_rest),
        "state": state,
    }
