"""One training loop for every pixelwave model, read top to bottom (after nanoGPT's train.py).

The loop does not know which model it trains: it calls `model(**batch)` for log p(example) in nats, (B,),
and minimises bits/dim = -mean(log p) / (dims * ln 2). `pixelwave train` builds the model and the data sets
and calls `run(args, model, train_set, test_set)`; `evaluate` scores a whole data set exactly (`pixelwave
eval` uses it).

Conditions ride in the batch ("y" labels, "speaker" ids, "cond" mel frames) and reach the model only if it was
built for them (`_CONDITIONS`). Audio has one dim per sample, so its logs and TensorBoard tags say bits per
sample; its TensorBoard samples are short clips, one per speaker, generated with the cached generator.

Distributed: under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) each process joins a gloo (CPU) or nccl
(GPU) group and DDP averages gradients. Every epoch has one global permutation drawn from (--seed, epoch);
step s takes the next --batch-size indices of it and rank r trains on its slice, so the global batch -- and
any randomness `dataset.batch` draws, from a generator seeded by (--seed, s) -- is the same for any number of
processes. Rank 0 alone logs, shows progress and writes files.

Reproducibility: the global torch RNG is reseeded from (--seed, step, rank) before every step, the learning
rate is a function of the step, and the data position is (epoch, offset), so a checkpoint (train_state.py)
holds all there is to restore: on CPU a run killed at any moment and resumed ends with bit-identical weights.

Stopping: SIGTERM or SIGINT finishes the current step, writes a checkpoint, says so and exits with 128 + the
signal number (143 for SIGTERM, 130 for SIGINT); a second SIGINT stops at once. A non-finite loss or gradient
stops the run with `NonFiniteLoss` (a UserError: one line, exit code 2) naming the step, which is never saved.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import signal
import time
from collections import deque
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from pixelwave import checkpoint, train_state
from pixelwave.errors import UserError

LN2 = math.log(2.0)
# What a run directory may hold before its first checkpoint; --resume starts afresh in such a folder.
_FRESH_RUN_FILES = {"train_args.json", "data.json", "tb", train_state.CHECKPOINTS}
# Batch keys that carry a condition, and the model config field that says whether the model takes it.
_CONDITIONS = {"y": "num_classes", "speaker": "num_speakers", "cond": "cond_channels"}


class NonFiniteLoss(UserError):
    """Training produced a NaN/inf loss or gradient; the step was not applied or saved."""


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The training flags of `pixelwave train` (the CLI adds --model, --data and the model sizes)."""
    g = parser.add_argument_group("training")
    g.add_argument("--steps", type=int, default=1000, help="optimizer steps in total (default 1000)")
    g.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                   help="also stop once this much training time (evaluations excluded) has passed; 0 = off")
    g.add_argument("--batch-size", type=int, default=32,
                   help="global batch; each of N torchrun processes trains on batch/N (default 32)")
    g.add_argument("--out", default=None, help="run directory (default runs/MODEL)")
    g.add_argument("--seed", type=int, default=0, help="seeds data order, per-step randomness and samples")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true", help="delete the run in --out and start afresh")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto takes a GPU when there is one")
    g = parser.add_argument_group("optimizer")
    g.add_argument("--optimizer", choices=["adam", "adamw"], default="adam")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="on weights of >= 2 dims only (default 0)")
    g.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up to --lr (default 100)")
    g.add_argument("--min-lr", type=float, default=None,
                   help="the cosine decay from --lr reaches this at --steps (default lr/10)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm; 0 = off")
    g.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="also keep an exponential moving average of the weights (e.g. 0.999), saved as "
                        "ema.safetensors; 0 = off")
    g.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the forward pass: about 2x faster training on CPUs with "
                        "AVX512-BF16 or AMX (docs/benchmarks.md); weights, optimiser and loss stay float32")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g = parser.add_argument_group("checkpoints and logging")
    g.add_argument("--checkpoint-every", type=int, default=500,
                   help="steps between checkpoints; 0 = only at the end (default 500)")
    g.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="keep the last K (default 3)")
    g.add_argument("--eval-every", type=int, default=500,
                   help="steps between held-out evaluations over the whole test split; 0 = only at the end")
    g.add_argument("--eval-batches", type=int, default=None,
                   help="cap the periodic evaluations at this many batches (the final one is always whole)")
    g.add_argument("--sample-every", type=int, default=0,
                   help="steps between TensorBoard sample grids (images) or clips (audio); 0 = only at the end")
    g.add_argument("--samples", type=int, default=16,
                   help="images per sample grid; audio: 0 = no clips, else one clip per speaker (default 16)")
    g.add_argument("--sample-seconds", type=float, default=0.5,
                   help="audio models: length of each TensorBoard clip (default 0.5 s; generation is sequential)")
    g.add_argument("--log-every", type=int, default=50, help="steps between log lines and scalars")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process's heap for reuse (glibc: mallopt M_MMAP_MAX=0, no trimming).

    By default glibc serves allocations of >= 32 MB (less once its threshold adapts) by mmap and returns them
    on free, so every training step page-faults its large activations in afresh, each page zeroed by the
    kernel: on a 2-core CPU that cost the standard WaveNet's float32 step anywhere from 0% to 45% of its speed,
    depending on what ran before. With this, a step reuses the previous step's memory. The process's resident
    size then stays at its peak; meant for processes that train (`pixelwave train`, the demo, the benchmarks),
    not called on import. Returns whether it took effect (False off glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    # -1 is read as the largest size_t: the top of the heap is never handed back
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, -1))


def learning_rate(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """The rate of update number `step` (0-based): linear warm-up, then cosine decay to min_lr at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= steps:
        return min_lr
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def model_inputs(model: torch.nn.Module, batch: dict) -> dict:
    """Drop the conditions (labels, speakers) a model was not built to take: p(x) from labelled data."""
    config = getattr(model, "config", None)
    unused = {k for k, field in _CONDITIONS.items()
              if hasattr(config, field) and getattr(config, field) is None}
    return {k: v for k, v in batch.items() if k not in unused}


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset, batch_size: int, device: str | torch.device = "cpu", *,
             max_batches: int | None = None) -> dict:
    """Exact held-out likelihood: the sum of log p over every example / (N * dims * ln 2), in float64.

    Inside a torch.distributed group the batches are shared out over the ranks and the sums all-reduced, so
    every rank must call it. Returns {"bits_per_dim", "nats_per_example", "examples"}.
    """
    device = torch.device(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    starts = list(range(0, len(dataset), batch_size))[:max_batches]
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of log p, examples)
    for start in starts[rank::world]:
        idx = torch.arange(start, min(start + batch_size, len(dataset)))
        batch = dataset.batch(idx, torch.Generator().manual_seed(0))  # fixed: the same crops every time
        log_p = model(**_to(model_inputs(model, batch), device))  # (B,)
        totals[0] += log_p.double().sum()
        totals[1] += len(idx)
    if world > 1:
        dist.all_reduce(totals)
    model.train(was_training)
    total, n = totals.tolist()
    n = int(n)
    if n == 0:
        return {"bits_per_dim": float("nan"), "nats_per_example": float("nan"), "examples": 0}
    return {"bits_per_dim": -total / (n * dataset.dims * LN2), "nats_per_example": -total / n, "examples": n}


def _seed(*parts) -> int:
    """A 63-bit seed from named parts, e.g. ("order", seed, epoch): independent streams, no clashes."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _json_args(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items()
            if v is None or isinstance(v, str | int | float | bool | list)}


def _check_args(args, model, train_set, test_set, world: int) -> float:
    """Every flag and the model/data pairing, before anything is touched. Returns the effective --min-lr."""
    def need(ok, message):
        if not ok:
            raise UserError(message)

    def finite(x):
        return isinstance(x, int | float) and math.isfinite(x)

    need(args.steps >= 1, f"--steps must be at least 1, got {args.steps}")
    need(args.batch_size >= 1, f"--batch-size must be at least 1, got {args.batch_size}")
    need(args.batch_size % world == 0,
         f"--batch-size {args.batch_size} must be divisible by the number of processes ({world})")
    need(len(train_set) > 0, "the training set is empty")
    need(args.batch_size <= len(train_set),
         f"--batch-size {args.batch_size} is larger than the training set ({len(train_set)} examples)")
    need(finite(args.lr) and args.lr > 0, f"--lr must be a positive number, got {args.lr}")
    min_lr = args.lr / 10 if args.min_lr is None else args.min_lr
    need(finite(min_lr) and 0 <= min_lr <= args.lr, f"--min-lr must be in [0, --lr={args.lr}], got {min_lr}")
    need(args.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    need(finite(args.weight_decay) and args.weight_decay >= 0,
         f"--weight-decay must be >= 0, got {args.weight_decay}")
    need(finite(args.grad_clip) and args.grad_clip >= 0,
         f"--grad-clip must be >= 0 (0 = off), got {args.grad_clip}")
    need(finite(args.ema) and 0 <= args.ema < 1, f"--ema must be in [0, 1) (0 = off), got {args.ema}")
    need(finite(args.sample_seconds) and args.sample_seconds > 0,
         f"--sample-seconds must be a positive number, got {args.sample_seconds}")
    for flag in ("checkpoint_every", "eval_every", "sample_every", "samples"):
        need(getattr(args, flag) >= 0, f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    need(args.keep_checkpoints >= 1, f"--keep-checkpoints must be at least 1, got {args.keep_checkpoints}")
    need(args.log_every >= 1, f"--log-every must be at least 1, got {args.log_every}")
    need(args.eval_batches is None or args.eval_batches >= 1,
         f"--eval-batches must be at least 1, got {args.eval_batches}")
    need(not (args.resume and args.overwrite), "--resume and --overwrite contradict each other: pass one")
    need(args.device != "cuda" or torch.cuda.is_available(), "--device cuda: no CUDA device is available")
    kind = getattr(model, "data_kind", None)
    for name, ds in (("training", train_set), ("test", test_set)):
        if ds is not None:
            need(ds.kind == kind, f"{model.model_name} models {kind} data, but the {name} set "
                                  f"{ds.info().get('name')!r} is {ds.kind} data")
    info = train_set.info()
    for key in ("num_classes", "num_speakers"):
        wanted, have = getattr(model.config, key, None), info.get(key)
        if wanted is not None:
            need(have is not None, f"{model.model_name} is conditional ({key}={wanted}) but the data "
                                   f"{info.get('name')!r} has no labels for it")
            need(have <= wanted, f"the data {info.get('name')!r} has {key}={have} but the model was built "
                                 f"with {key}={wanted}")
    levels = getattr(model.config, "levels", None)
    need(info.get("levels") in (None, levels), f"the data {info.get('name')!r} has {info.get('levels')} levels "
                                               f"but the model was built with levels={levels}")
    # Local conditioning: the data's mel frames must be what the model's upsampler was built for.
    cond_channels = getattr(model.config, "cond_channels", None)
    if cond_channels is not None and kind == "audio":
        hop = model.config.hop_length
        need(info.get("n_mels") is not None, f"{model.model_name} is conditioned on mel frames "
                                             f"(cond_channels={cond_channels}) but the data "
                                             f"{info.get('name')!r} has no mel features")
        need(info["n_mels"] == cond_channels, f"the data has {info['n_mels']} mel bands but the model was built "
                                              f"with cond_channels={cond_channels}")
        need(info.get("hop_length") == hop, f"the data has mel frames every {info.get('hop_length')} samples "
                                            f"but the model was built with hop_length={hop}")
    return min_lr


def run(args: argparse.Namespace, model: torch.nn.Module, train_set, test_set=None) -> dict:
    """Train `model` on `train_set` as the flags say; return the final metrics (rank 0 also prints them)."""
    # ------------------------------------------------------------ processes and device
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    world = int(os.environ["WORLD_SIZE"]) if ddp else 1
    min_lr = _check_args(args, model, train_set, test_set, world)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    own_group = False
    if ddp:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            own_group = True
    rank = dist.get_rank() if ddp else 0
    master = rank == 0
    previous_handlers = {}
    writer = None
    try:
        # -------------------------------------------------------- the run directory: read-only checks first
        out = Path(args.out or f"runs/{model.model_name}")
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a directory")
        entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
        resume_from = train_state.latest_checkpoint(out) if args.resume else None
        if resume_from is None and entries:
            if args.resume and not entries <= _FRESH_RUN_FILES:
                raise UserError(f"--resume: {out} holds no checkpoint to resume and is not an empty run "
                                f"directory")
            looks_like_run = bool(entries & {"train_args.json", train_state.CHECKPOINTS, checkpoint.CONFIG})
            if args.overwrite and not looks_like_run:
                raise UserError(f"--overwrite: {out} does not look like a pixelwave run directory; "
                                f"refusing to delete it")
            if not args.resume and not args.overwrite:
                raise UserError(f"run directory {out} exists: pass --resume to continue it or --overwrite "
                                f"to replace it")
        saved = None
        if resume_from is not None:
            saved = train_state.load_checkpoint(resume_from)
            then, now = saved["config"], json.loads(json.dumps(checkpoint.model_config(model)))
            if (then["model"], then["config"]) != (now["model"], now["config"]):
                raise UserError(f"--resume: {out} was trained as {then['model']} "
                                f"{json.dumps(then['config'])}, not {now['model']} "
                                f"{json.dumps(now['config'])}")
            data_then, data_now = saved["state"].get("data") or {}, json.loads(json.dumps(train_set.info()))
            if data_then != data_now:
                raise UserError(f"--resume: {out} was trained on {data_then.get('name')!r}, not on "
                                f"{data_now.get('name')!r} (or the data changed)")
            if saved["state"]["step"] > args.steps:
                raise UserError(f"--resume: {out} is already at step {saved['state']['step']}, beyond "
                                f"--steps {args.steps}")
        # Rank 0 alone writes, once every rank has looked; the others then learn whether it worked.
        if ddp:
            dist.barrier()
        setup_error = None
        if master:
            try:
                if args.overwrite and out.exists():
                    shutil.rmtree(out)
                out.mkdir(parents=True, exist_ok=True)
                if resume_from is not None:
                    # A run killed between writing a checkpoint and pruning left one too many: tidy up first.
                    train_state.prune(out, args.keep_checkpoints)
                checkpoint.write_json(out / "data.json", train_set.info())
                checkpoint.write_json(out / "train_args.json", {**_json_args(args), "world_size": world})
            except OSError as e:
                setup_error = UserError(f"cannot write the run directory {out}: {e.strerror or e}")
        if ddp:
            ok = torch.tensor([setup_error is None], dtype=torch.int32, device=device)
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            if not ok.item():
                raise setup_error or UserError(f"rank 0 could not write the run directory {out}")
        elif setup_error is not None:
            raise setup_error

        def log(message: str) -> None:
            if master:
                tqdm.write(message)

        # -------------------------------------------------------- model, optimizer, EMA, restored state
        raw = model.to(device)
        raw.train()
        decay = [p for p in raw.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in raw.parameters() if p.requires_grad and p.dim() < 2]
        optimizer = (torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam)(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.lr)
        ema = copy.deepcopy(raw).requires_grad_(False).eval() if args.ema > 0 else None

        step, epoch, offset, examples_seen, train_seconds = 0, 0, 0, 0, 0.0
        metrics: dict = {}
        recent: deque[float] = deque(maxlen=args.log_every)  # train bits/dim of the last steps
        if saved is not None:
            s = saved["state"]
            try:
                raw.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
            except (RuntimeError, ValueError, KeyError) as e:
                raise UserError(f"--resume: {resume_from} does not fit this model/optimizer "
                                f"({str(e).strip().splitlines()[0]})") from None
            for group, wd in zip(optimizer.param_groups, (args.weight_decay, 0.0), strict=True):
                group["weight_decay"] = wd  # this invocation's flag, not the saved one
            if ema is not None:
                ema.load_state_dict(saved["ema"] if saved["ema"] is not None else raw.state_dict())
            step, epoch, offset = s["step"], s["epoch"], s["epoch_offset"]
            examples_seen, train_seconds = s["examples_seen"], s["train_seconds"]
            metrics = s.get("metrics", {})
            recent.extend(s.get("recent_train_bits_per_dim", []))
            before = s.get("args", {})
            changed = [f"--{k.replace('_', '-')} {before[k]} -> {v}" for k, v in _json_args(args).items()
                       if k in before and before[k] != v and k not in ("resume", "overwrite", "no_progress")]
            log(f"resuming {out} from step {step}" + (f"; changed: {', '.join(changed)}" if changed else ""))
            del saved
        elif args.resume:
            log(f"--resume: nothing to resume in {out} yet; starting at step 0")

        train_model = torch.compile(raw) if args.compile else raw
        if ddp:
            # static_graph: every step uses the same parameters. It also tolerates parameters that never get
            # a gradient, where plain DDP stops with "Expected to have finished reduction".
            train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None,
                              static_graph=True)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
        per_rank = args.batch_size // world
        dims = train_set.dims
        info = train_set.info()
        audio = getattr(raw, "data_kind", None) == "audio"
        unit = "sample" if audio else "dim"  # audio: one dim per sample, so bits/dim is bits per sample
        log(f"training {raw.model_name} ({sum(p.numel() for p in raw.parameters()):,} parameters) on "
            f"{info.get('name')}: {len(train_set):,} examples of {dims:,} "
            + (f"samples ({dims / info['sample_rate']:.3g} s)" if audio else "dims") + f", batch {args.batch_size}"
            + (f" ({per_rank} on each of {world} processes)" if world > 1 else "")
            + f", {device.type}; run directory {out}")
        if args.bf16 and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            log("note: this CPU has no native bfloat16 (AVX512-BF16 / AMX): --bf16 runs emulated and is likely "
                "slower than float32")

        def save(step: int) -> Path:
            state = {"epoch": epoch, "epoch_offset": offset, "examples_seen": examples_seen,
                     "train_seconds": train_seconds, "seed": args.seed, "world_size": world,
                     "lr": learning_rate(max(step - 1, 0), args.lr, min_lr, args.warmup_steps, args.steps),
                     "metrics": metrics, "recent_train_bits_per_dim": list(recent), "data": info,
                     "args": _json_args(args)}
            return train_state.save_checkpoint(out, step, raw, optimizer, state, ema, args.keep_checkpoints)

        bound = "<= " if getattr(raw, "is_bound", False) else ""  # PixelVAE: an ELBO, not the likelihood

        def run_eval(step: int, final: bool) -> None:
            if test_set is None or len(test_set) == 0:
                return
            for name, m in (("test", raw), ("test_ema", ema)):
                if m is not None:
                    result = evaluate(m, test_set, per_rank, device, max_batches=None if final else
                                      args.eval_batches)
                    metrics[f"{name}_bits_per_dim"] = result["bits_per_dim"]
                    metrics[f"{name}_examples"] = result["examples"]
                    if writer:
                        tag = f"{name.replace('_', '/')}/bits_per_{unit}"  # test/bits_per_dim, test/ema/...
                        writer.add_scalar(tag, result["bits_per_dim"], step)
            ema_note = f" (EMA {metrics['test_ema_bits_per_dim']:.4f})" if ema is not None else ""
            log(f"step {step}: test {bound}{metrics['test_bits_per_dim']:.4f} bits/{unit}{ema_note} "
                f"over {metrics['test_examples']:,} examples")

        def draw_samples(step: int) -> None:
            if not (writer and args.samples):
                return
            m = ema if ema is not None else raw
            if audio:
                return draw_audio(m, step)
            if getattr(raw, "data_kind", None) != "image":
                return
            import numpy as np

            from pixelwave.viz import image_grid

            classes = getattr(m.config, "num_classes", None)
            y = torch.arange(args.samples, device=device) % classes if classes else None  # a class a column
            x = m.sample(args.samples, size=tuple(info["size"]), y=y,
                         generator=torch.Generator().manual_seed(_seed("samples", args.seed)))  # (n, C, H, W)
            grid = np.asarray(image_grid(x, info["levels"], nrow=classes, pad=1))  # uint8 (H, W) or (H, W, 3)
            writer.add_image("samples", grid, step, dataformats="HW" if grid.ndim == 2 else "HWC")

        def draw_audio(m, step: int) -> None:
            """One short clip per speaker (or one); a mel-conditioned model re-speaks held-out utterances."""
            from pixelwave.audio import mu_law_decode

            rate, config = info["sample_rate"], m.config
            steps = max(1, round(args.sample_seconds * rate))
            n = config.num_speakers or 1
            speaker = torch.arange(n, device=device) if config.num_speakers else None
            cond, names = None, info.get("speakers") or [str(i) for i in range(n)]
            if config.cond_channels is not None:
                if test_set is None or len(test_set) == 0:
                    return
                # Per clip the longest test utterance of that speaker (or of all), all cut to the shortest.
                lengths, by_speaker = test_set.lengths, test_set.speaker is not None and config.num_speakers
                pick = []
                for s in range(n):
                    mine = torch.where(test_set.speaker == s, lengths, -1) if by_speaker else lengths  # (U,)
                    pick.append(int(mine.argmax()) if int(mine.max()) > 0 else int(lengths.argmax()))
                utts = [test_set.utterance(i) for i in pick]
                frames = min([-(-steps // config.hop_length)] + [u["cond"].shape[-1] for u in utts])
                if frames < 1:
                    return
                cond = torch.cat([u["cond"][..., :frames] for u in utts]).to(device)  # (n, n_mels, frames)
                steps = frames * config.hop_length
            gen = torch.Generator().manual_seed(_seed("samples", args.seed))
            codes = m.generate(steps, batch=n, speaker=speaker, cond=cond, generator=gen).cpu()  # (n, steps)
            for i in range(n):
                tag = f"samples/{names[i]}" if config.num_speakers else "samples"
                writer.add_audio(tag, mu_law_decode(codes[i], config.levels)[None], step, sample_rate=rate)

        if master:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events a killed run logged after its last checkpoint.
            writer = SummaryWriter(str(out / "tb"), purge_step=step if step else None)

        # -------------------------------------------------------- signals: finish the step, save, exit
        caught = {"signal": 0}

        def on_signal(signum, frame):  # no printing here: the signal may land inside a print
            if caught["signal"] == signal.SIGINT and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            caught["signal"] = signum

        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous_handlers[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread: leave signals alone
                break

        # -------------------------------------------------------- the loop
        perm, perm_epoch = None, -1
        saved_step = step if resume_from is not None else -1
        window_seconds, window_examples = 0.0, 0
        bar = tqdm(total=args.steps, initial=step, unit="step", dynamic_ncols=True,
                   disable=not master or args.no_progress)
        while step < args.steps:
            t0 = time.perf_counter()
            lr = learning_rate(step, args.lr, min_lr, args.warmup_steps, args.steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if offset + args.batch_size > len(train_set):  # drop the incomplete tail: a new epoch
                epoch, offset = epoch + 1, 0
            if perm_epoch != epoch:
                order = torch.Generator().manual_seed(_seed("order", args.seed, epoch))
                perm, perm_epoch = torch.randperm(len(train_set), generator=order), epoch
            idx = perm[offset:offset + args.batch_size]  # the global batch
            batch = train_set.batch(idx, torch.Generator().manual_seed(_seed("batch", args.seed, step)))
            batch = {k: v[rank * per_rank:(rank + 1) * per_rank] if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}  # this rank's slice
            torch.manual_seed(_seed("step", args.seed, step, rank))  # dropout & co: a function of the step

            with autocast:
                log_p = train_model(**_to(model_inputs(raw, batch), device))  # (B / world,) nats
            loss = -log_p.float().mean() / (dims * LN2)  # bits/dim
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), args.grad_clip)
            else:
                grad_norm = torch.nn.utils.get_total_norm([p.grad for p in raw.parameters()
                                                           if p.grad is not None])
            # One sync a step: the mean loss, the gradient norm, and whether any rank was told to stop.
            over_time = bool(args.time_limit) and train_seconds + time.perf_counter() - t0 >= args.time_limit
            stat = torch.stack([loss.detach() / world, grad_norm.detach().float() / world,
                                torch.tensor(float(caught["signal"] == signal.SIGTERM), device=device),
                                torch.tensor(float(caught["signal"] == signal.SIGINT), device=device),
                                torch.tensor(float(over_time), device=device)])
            if ddp:
                dist.all_reduce(stat)
            train_bpd, grad_norm, term, intr, over_time = stat.tolist()
            if not (math.isfinite(train_bpd) and math.isfinite(grad_norm)):
                last = train_state.latest_checkpoint(out)
                bad_loss = not math.isfinite(train_bpd)
                what, value = ("loss", train_bpd) if bad_loss else ("gradient norm", grad_norm)
                raise NonFiniteLoss(
                    f"training diverged: the {what} is {value} at step {step + 1}; that step was not applied "
                    f"or saved. " + (f"The last good checkpoint is {last}" if last else "No checkpoint was "
                                     "written yet") + " (try a lower --lr or --grad-clip)")
            optimizer.step()
            if ema is not None:
                with torch.no_grad():
                    for e, p in zip(ema.parameters(), raw.parameters(), strict=True):
                        e.lerp_(p, 1.0 - args.ema)
                    for e, b in zip(ema.buffers(), raw.buffers(), strict=True):
                        e.copy_(b)
            step, offset, examples_seen = step + 1, offset + args.batch_size, examples_seen + args.batch_size
            seconds = time.perf_counter() - t0
            train_seconds, window_seconds = train_seconds + seconds, window_seconds + seconds
            window_examples += args.batch_size
            recent.append(train_bpd)
            bar.update(1)

            if step % args.log_every == 0 or step == args.steps:
                mean_bpd = sum(recent) / len(recent)
                rate = window_examples / max(window_seconds, 1e-9)
                metrics.update(train_bits_per_dim=mean_bpd, examples_per_second=rate,
                               dims_per_second=rate * dims)
                bar.set_postfix(bpd=f"{mean_bpd:.4f}", lr=f"{lr:.2e}")
                if writer:
                    writer.add_scalar(f"train/bits_per_{unit}", mean_bpd, step)
                    writer.add_scalar("train/grad_norm", grad_norm, step)
                    writer.add_scalar("lr", lr, step)
                    writer.add_scalar("throughput/examples_per_second", rate, step)
                    writer.add_scalar("throughput/dims_per_second", rate * dims, step)
                log(f"step {step}/{args.steps} | train {mean_bpd:.4f} bits/{unit} | lr {lr:.2e} | "
                    + (f"{rate * dims:,.0f} samples/s" if audio else f"{rate:,.0f} examples/s"))
                window_seconds, window_examples = 0.0, 0
            if step < args.steps and args.eval_every and step % args.eval_every == 0:
                run_eval(step, final=False)
            if step < args.steps and args.sample_every and step % args.sample_every == 0:
                draw_samples(step)
            stopping = term > 0 or intr > 0
            due = step < args.steps and args.checkpoint_every and step % args.checkpoint_every == 0
            if stopping or due:
                where = save(step) if master else out
                saved_step = step
            if stopping:
                code, name = (143, "SIGTERM") if term > 0 else (130, "SIGINT")
                bar.close()
                log(f"stopped by {name} after step {step}: checkpoint written to {where}; continue with "
                    f"--resume (exit code {code})")
                if ddp:
                    dist.barrier()
                raise SystemExit(code)
            if over_time > 0 and step < args.steps:
                log(f"--time-limit: {args.time_limit:g} s of training reached after step {step}")
                break
        bar.close()

        # -------------------------------------------------------- the end: evaluate, sample, save, summarise
        run_eval(step, final=True)
        draw_samples(step)
        if step != saved_step and master:
            save(step)
        if ddp:
            dist.barrier()
        rate = examples_seen / train_seconds if train_seconds else float("nan")
        metrics.setdefault("train_bits_per_dim", sum(recent) / len(recent) if recent else float("nan"))
        metrics.update(step=step, examples_per_second=rate, dims_per_second=rate * dims, run_dir=str(out),
                       train_seconds=train_seconds)
        test = metrics.get("test_bits_per_dim")
        test_note = "" if test is None else f" | test {bound}{test:.4f} bits/{unit}"
        if ema is not None and test is not None:
            test_note += f" (EMA {metrics['test_ema_bits_per_dim']:.4f})"
        log(f"done: step {step} | train {metrics['train_bits_per_dim']:.4f} bits/{unit}{test_note} | "
            + (f"{rate * dims:,.0f} samples/s" if audio else f"{rate:,.0f} examples/s") + f" | run in {out}")
        return metrics
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.close()
        if own_group:
            dist.destroy_process_group()
