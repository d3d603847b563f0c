"""The run directory: locked, made (or checked for --resume / --overwrite) before training, and its
checkpoints, safetensors + JSON only, written so a kill never leaves one half-written.

A run directory (`--out DIR`):

    .lock                            the run lock (training/runlock.py): who trains into DIR now, or last did
    model.safetensors, config.json   the latest weights: `pixelwave.load(DIR)` works after the first save
    ema.safetensors                  the latest EMA weights (--ema): `pixelwave.load(DIR, "ema.safetensors")`
    manifest.json                    the size and SHA-256 of the three files above
    data.json                        the training set's info(): image size, levels, classes, ...
    train_args.json                  the TrainConfig of the latest (re)start
    tb/                              TensorBoard events
    checkpoints/step-000500/         one complete checkpoint a folder, the last K kept:
        model.safetensors, config.json, [ema.safetensors]
        optimizer.safetensors        every tensor of optimizer.state_dict(), keys "state.<param>.<name>"
        state.json                   step, data position, metrics, flags, the optimizer's other state
        manifest.json                the size and SHA-256 of every file above, written last
    checkpoints/step-000400.damaged/ a checkpoint that did not verify, set aside by --resume (never pruned)

A checkpoint is written into a hidden temporary folder, its manifest last, that is renamed to `step-NNNNNN` only
once every file in it is complete and fsynced, so every `step-*` folder is complete; `latest_checkpoint` ignores
the rest. A checkpoint is never changed once renamed, so a reader that finds its manifest verifies can trust it.
--resume takes the newest checkpoint that verifies and says which file of each newer one did not.
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
from pixelwave.training import runlock
from pixelwave.training.config import TrainConfig
from pixelwave.training.distributed import Processes

STATE_FORMAT = "pixelwave-train-state"
STATE_VERSION = 1
CHECKPOINTS = "checkpoints"
EMA = "ema.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
MODEL_FILES = (checkpoint.WEIGHTS, checkpoint.CONFIG, EMA)  # what the run directory's top level holds
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
        checkpoint.write_manifest(tmp, [p.name for p in tmp.iterdir() if not p.name.startswith(".")])
        _fsync_dir(tmp)
        if final.exists():  # the same step saved again (e.g. a resumed run stopped at once): replace it
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            shutil.rmtree(old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        publish(final, run_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        kept = f"; the last complete checkpoint is {previous}" if previous else ""
        raise UserError(f"cannot write checkpoint {final}: {e.strerror or e}{kept}") from None
    prune(run_dir, keep)
    return final


def publish(folder: Path, run_dir: Path) -> None:
    """Make the run directory's top level (what `pixelwave.load(DIR)` reads) copies of checkpoint `folder`'s
    model files, with their manifest entries. All are written under temporary names first, then renamed in one
    burst, the manifest last: a reader finds them disagreeing only if it reads during those few renames."""
    files = checkpoint.read_manifest(folder)
    names = [name for name in MODEL_FILES if (folder / name).is_file()]
    staged = []
    try:
        for name in names:
            with open(folder / name, "rb") as src:
                staged.append((checkpoint.stage(run_dir / name, lambda f, src=src: shutil.copyfileobj(src, f)),
                               run_dir / name))
        top = checkpoint.manifest({name: files[name] for name in names})
        staged.append((checkpoint.stage(run_dir / checkpoint.MANIFEST,
                                        lambda f: f.write(checkpoint.json_bytes(top))), run_dir / checkpoint.MANIFEST))
        for tmp, path in staged:
            os.replace(tmp, path)
        _fsync_dir(run_dir)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def prune(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints, and temporary files and folders left by a killed run."""
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    folder = Path(run_dir) / CHECKPOINTS
    for p in folder.glob(".tmp-*") if folder.is_dir() else []:
        pid = p.name.rsplit("-", 1)[-1]
        if pid != str(os.getpid()):
            shutil.rmtree(p, ignore_errors=True)
    for p in Path(run_dir).glob(".*.tmp"):  # the lock keeps other writers out: these are a killed run's
        p.unlink(missing_ok=True)


# ---- reading ----
def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> dict:
    """Read one checkpoint folder: {"config", "model", "ema" (or None), "optimizer", "state", "verified"}. No
    pickle. `verify` checks every file against the manifest first (DamagedCheckpoint names a file that differs);
    "verified" is the manifest's entries, or None for a checkpoint of pixelwave 0.1 (it has none)."""
    path = Path(path)
    verified = checkpoint.verify_files(path) if verify else None
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
        "verified": verified,
    }


def newest_verified(run_dir: str | os.PathLike) -> tuple[dict | None, list[tuple[Path, str]]]:
    """The newest checkpoint that verifies, read by `load_checkpoint` with its "path" (None if there is none),
    and (folder, the reason) for each newer one that did not."""
    damaged = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return {**load_checkpoint(path), "path": path}, damaged
        except checkpoint.DamagedCheckpoint as e:
            damaged.append((path, str(e)))
    return None, damaged


def saved_config(run_dir: str | os.PathLike) -> dict | None:
    """The model config of the newest checkpoint in `run_dir` whose config.json verifies (None if none does)."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            checkpoint.verify_files(path, [checkpoint.CONFIG])
            return checkpoint.read_config(path)
        except (UserError, OSError):
            continue
    return None


# ---- the run directory ----
# What a run directory may hold before its first checkpoint; --resume starts afresh in such a folder.
_FRESH_RUN_FILES = {runlock.LOCK, "train_args.json", "data.json", "tb", CHECKPOINTS}


def open_run(config: TrainConfig, model: torch.nn.Module, data_info: dict,
             procs: Processes) -> tuple[Path, dict | None, runlock.RunLock | None]:
    """Take the run lock (rank 0), check the run directory against --resume / --overwrite (every check before
    anything is touched), then create it (rank 0). Returns (the directory; the checkpoint to resume from as
    `newest_verified` reads it, with "notes" to show, or None for a fresh start; rank 0's lock, to release when
    the run ends)."""
    out = Path(config.out or f"runs/{model.model_name}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    lock, error = None, None
    if procs.master:  # a directory that another run holds is not even read
        try:
            lock = runlock.acquire(out, create=False)
        except UserError as e:
            error = e
    if not procs.all_ok(error is None):
        raise error or runlock.RunInUse(f"{out} is in use by another run (rank 0 could not take its lock)")
    try:
        saved, damaged = check_run(config, model, data_info, out)
        # Rank 0 alone writes, once every process has looked; the others then learn whether it worked.
        procs.barrier()
        if procs.master:
            try:
                out.mkdir(parents=True, exist_ok=True)
                lock = lock or runlock.acquire(out)  # RunInUse if another run took it since the checks
                lock.record()
                create_run(config, data_info, procs.world, out, saved, damaged)
            except OSError as e:
                error = UserError(f"cannot write the run directory {out}: {e.strerror or e}")
            except UserError as e:
                error = e
        if not procs.all_ok(error is None):
            raise error or UserError(f"rank 0 could not write the run directory {out}")
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return out, saved, lock


def check_run(config: TrainConfig, model, data_info: dict, out: Path) -> tuple[dict | None, list[tuple[Path, str]]]:
    """Read-only: the checkpoint to resume from (see `open_run`) and the newer ones that did not verify; UserError
    if the directory does not fit --resume / --overwrite, the model or the data."""
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    saved, damaged = newest_verified(out) if config.resume else (None, [])
    if saved is None and damaged:
        raise UserError(f"--resume: no checkpoint in {out} verifies; the newest: {damaged[0][1]}")
    if saved is None and entries:
        if config.resume and not entries <= _FRESH_RUN_FILES:
            raise UserError(f"--resume: {out} holds no checkpoint to resume and is not an empty run directory")
        looks_like_run = bool(entries & {"train_args.json", CHECKPOINTS, checkpoint.CONFIG})
        if config.overwrite and not looks_like_run:
            raise UserError(f"--overwrite: {out} does not look like a pixelwave run directory; refusing to delete it")
        if not config.resume and not config.overwrite:
            raise UserError(f"run directory {out} exists: pass --resume to continue it or --overwrite to replace it")
    if saved is None:
        return None, damaged
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
    saved["notes"] = [f"warning: --resume: {why}; resuming from {saved['path'].name}, {path.name} is set aside "
                      f"as {path.name}.damaged" for path, why in damaged]
    if saved["verified"] is None:
        saved["notes"].append(f"note: {saved['path']} has no {checkpoint.MANIFEST} (saved by pixelwave 0.1): "
                              f"resuming it unverified")
    return saved, damaged


def create_run(config: TrainConfig, data_info: dict, world: int, out: Path, saved: dict | None,
               damaged: list[tuple[Path, str]]) -> None:
    """Rank 0, holding the lock: clear the directory (--overwrite), set aside damaged checkpoints, point the top
    level at the checkpoint resumed, and write data.json and train_args.json."""
    if config.overwrite:  # everything but the lock, which this run holds
        for p in out.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            elif p.name != runlock.LOCK:
                p.unlink()
    for path, _ in damaged:  # out of the rotation, kept to be looked at
        aside = path.with_name(f"{path.name}.damaged")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(path, aside)
    if saved is not None:
        prune(out, config.keep_checkpoints)  # a run killed between writing a checkpoint and pruning left one more
        if saved["verified"] is not None:
            publish(saved["path"], out)
    checkpoint.write_json(out / "data.json", data_info)
    checkpoint.write_json(out / "train_args.json", {**config.to_dict(), "world_size": world})


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
