"""The run directory: made (or checked for --resume / --overwrite) before training, and its checkpoints,
safetensors + JSON only, written so a kill never leaves one half-written.

A run directory (`--out DIR`):

    model.safetensors, config.json   the latest weights: `pixelwave.load(DIR)` works after the first save
    ema.safetensors                  the latest EMA weights (--ema): `pixelwave.load(DIR, "ema.safetensors")`
    data.json                        the training set's info(): image size, levels, classes, ...
    train_args.json                  the TrainConfig of the latest (re)start
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
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pixelwave import checkpoint
from pixelwave.errors import UserError
from pixelwave.training.config import TrainConfig
from pixelwave.training.distributed import Processes

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


# ---- the run directory ----
# What a run directory may hold before its first checkpoint; --resume starts afresh in such a folder.
_FRESH_RUN_FILES = {"train_args.json", "data.json", "tb", CHECKPOINTS}


def open_run(config: TrainConfig, model: torch.nn.Module, data_info: dict,
             procs: Processes) -> tuple[Path, dict | None]:
    """Check the run directory against --resume / --overwrite (every check before anything is touched), then
    create it (rank 0). Returns (the directory, the checkpoint to resume from as `load_checkpoint` reads it, or
    None for a fresh start)."""
    out = Path(config.out or f"runs/{model.model_name}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    resume_from = latest_checkpoint(out) if config.resume else None
    if resume_from is None and entries:
        if config.resume and not entries <= _FRESH_RUN_FILES:
            raise UserError(f"--resume: {out} holds no checkpoint to resume and is not an empty run directory")
        looks_like_run = bool(entries & {"train_args.json", CHECKPOINTS, checkpoint.CONFIG})
        if config.overwrite and not looks_like_run:
            raise UserError(f"--overwrite: {out} does not look like a pixelwave run directory; refusing to delete it")
        if not config.resume and not config.overwrite:
            raise UserError(f"run directory {out} exists: pass --resume to continue it or --overwrite to replace it")
    saved = None
    if resume_from is not None:
        saved = load_checkpoint(resume_from)
        then, now = saved["config"], json.loads(json.dumps(checkpoint.model_config(model)))
        if (then["model"], then["config"]) != (now["model"], now["config"]):
            raise UserError(f"--resume: {out} was trained as {then['model']} {json.dumps(then['config'])}, not "
                            f"{now['model']} {json.dumps(now['config'])}")
        data_then, data_now = saved["state"].get("data") or {}, json.loads(json.dumps(data_info))
        if "class_counts" not in data_then:  # a run saved before the label counts were recorded: not a change
            data_now.pop("class_counts", None)
        if data_then != data_now:
            raise UserError(f"--resume: {out} was trained on {data_then.get('name')!r}, not on "
                            f"{data_now.get('name')!r} (or the data changed)")
        if saved["state"]["step"] > config.steps:
            raise UserError(f"--resume: {out} is already at step {saved['state']['step']}, beyond --steps "
                            f"{config.steps}")
        saved["path"] = resume_from
    # Rank 0 alone writes, once every process has looked; the others then learn whether it worked.
    procs.barrier()
    error = None
    if procs.master:
        try:
            if config.overwrite and out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            if saved is not None:  # a run killed between writing a checkpoint and pruning left one too many
                prune(out, config.keep_checkpoints)
            checkpoint.write_json(out / "data.json", data_info)
            checkpoint.write_json(out / "train_args.json", {**config.to_dict(), "world_size": procs.world})
        except OSError as e:
            error = UserError(f"cannot write the run directory {out}: {e.strerror or e}")
    if not procs.all_ok(error is None):
        raise error or UserError(f"rank 0 could not write the run directory {out}")
    return out, saved


# ---- where a run is, saved with every checkpoint ----
@dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    offset: int = 0  # position in the epoch's permutation
    examples_seen: int = 0
    train_seconds: float = 0.0  # training time, evaluations excluded
    metrics: dict = field(default_factory=dict)
    recent: list = field(default_factory=list)  # train bits/dim of the last --log-every steps
    changed: list = field(default_factory=list)  # flags that differ from the run's previous start

    def advance(self, examples: int, seconds: float) -> None:
        self.step, self.offset = self.step + 1, self.offset + examples
        self.examples_seen += examples
        self.train_seconds += seconds

    def summary(self, out: Path, dims: int) -> dict:
        rate = self.examples_seen / self.train_seconds if self.train_seconds else float("nan")
        metrics = self.metrics
        metrics.setdefault("train_bits_per_dim", sum(self.recent) / len(self.recent) if self.recent else float("nan"))
        metrics.update(step=self.step, examples_per_second=rate, dims_per_second=rate * dims, run_dir=str(out),
                       train_seconds=self.train_seconds)
        return metrics


def restore(saved: dict, config: TrainConfig, model, optimizer, ema) -> RunState:
    """Load a checkpoint read by `load_checkpoint` into the model, optimizer and EMA; return where the run was."""
    s = saved["state"]
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"--resume: {saved['path']} does not fit this model/optimizer "
                        f"({str(e).strip().splitlines()[0]})") from None
    for group, wd in zip(optimizer.param_groups, (config.weight_decay, 0.0), strict=True):
        group["weight_decay"] = wd  # this start's setting, not the saved one
    if ema is not None:
        ema.load_state_dict(saved["ema"] if saved["ema"] is not None else model.state_dict())
    before, now = s.get("args", {}), config.to_dict()
    changed = [f"--{k.replace('_', '-')} {before[k]} -> {v}" for k, v in now.items()
               if k in before and before[k] != v and k not in ("resume", "overwrite", "no_progress")]
    return RunState(step=s["step"], epoch=s["epoch"], offset=s["epoch_offset"], examples_seen=s["examples_seen"],
                    train_seconds=s["train_seconds"], metrics=s.get("metrics", {}),
                    recent=list(s.get("recent_train_bits_per_dim", [])), changed=changed)


def save_run(out: Path, step: int, model, optimizer, ema, run: RunState, config: TrainConfig, data_info: dict,
             procs: Processes, lr: float) -> Path:
    """Rank 0 writes checkpoint `step` with everything `restore` needs; the other ranks write nothing."""
    if not procs.master:
        return out
    state = {"epoch": run.epoch, "epoch_offset": run.offset, "examples_seen": run.examples_seen,
             "train_seconds": run.train_seconds, "seed": config.seed, "world_size": procs.world, "lr": lr,
             "metrics": run.metrics, "recent_train_bits_per_dim": list(run.recent), "data": data_info,
             "args": config.to_dict()}
    return save_checkpoint(out, step, model, optimizer, state, ema, config.keep_checkpoints)
