"""`pixelwave compare`: the seed's comparison table (PixelRNN vs PixelCNN vs Gated PixelCNN ...) on our data.

Each model is sized to about the same number of parameters, trained by the one training loop (`training.train`) for
the same CPU-time budget, and scored on the held-out split. The table has the seed's columns: model, test NLL,
parameters, training time, images/s; a PNG of the learning curves and one sample grid per model go to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from pixelwave.compat import check_compatible
from pixelwave.errors import UserError
from pixelwave.runtime import reuse_freed_memory
from pixelwave.training import TrainConfig, train

# Published test NLLs: bits/dim on CIFAR-10, nats on statically binarised MNIST.
PUBLISHED = {
    "pixelcnn": {"cifar10": 3.14, "binary_mnist_nats": 81.30},
    "gated_pixelcnn": {"cifar10": 3.03},
    "pixelcnn_pp": {"cifar10": 2.92},
    "pixelrnn_row": {"cifar10": 3.00, "binary_mnist_nats": 80.54},  # the 3.00 on CIFAR-10 is the Row LSTM's
    "pixelrnn_diag": {"binary_mnist_nats": 79.20},
    "pixelsnail": {"cifar10": 2.85},
}
DEFAULT_LAYERS = {"pixelcnn": 6, "gated_pixelcnn": 6, "pixelcnn_pp": 1, "pixelrnn_row": 2, "pixelrnn_diag": 2,
                  "pixelvae": 6, "pixelsnail": 2}


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="pixelcnn,gated_pixelcnn,pixelcnn_pp,pixelrnn_row,pixelrnn_diag,pixelsnail",
                   help="comma-separated model names")
    p.add_argument("--data", default="mnist-sample-binary", help="an image data set (see `train --data`)")
    p.add_argument("--budget-minutes", type=float, default=2.0, help="CPU time per model (default 2)")
    p.add_argument("--params", type=int, default=60_000, help="target parameter count per model (default 60k)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out", default="runs/compare", help="folder for runs, curves, grids and the table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def matched_model(name: str, train_set, target: int, layers: int | None = None):
    """The model `name` with `hidden` chosen so its parameter count is closest to `target`."""
    from pixelwave.models import MODELS

    if name not in MODELS or MODELS[name].data_kind != "image":
        known = sorted(k for k, v in MODELS.items() if v.data_kind == "image")
        raise UserError(f"--models: {name!r} is not an image model (known: {', '.join(known)})")
    cls = MODELS[name]
    layers = layers or DEFAULT_LAYERS.get(name, 4)
    base = dict(channels=train_set.channels, levels=train_set.levels, layers=layers)
    best = None
    step = 2 * train_set.channels
    for hidden in range(step, 513, step):
        try:
            extra = {"encoder_channels": max(4, hidden // 2)} if name == "pixelvae" else {}
            model = cls(hidden=hidden, **base, **extra)
        except ValueError:
            continue
        n = sum(p.numel() for p in model.parameters())
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (model, n)
        if n > target:
            break
    if best is None:
        raise UserError(f"--models: could not size {name} to {target} parameters")
    return best[0]


def seconds_per_step(model, train_set, batch_size: int, device) -> float:
    """Median wall time of a forward + backward pass at `batch_size` (after a warm-up), to size the run."""
    model.to(device).train()
    idx = torch.arange(min(batch_size, len(train_set)))
    batch = {k: v.to(device) for k, v in train_set.batch(idx).items() if v is not None and k == "x"}
    times = []
    for k in range(4):
        t0 = time.perf_counter()
        loss = -model(**batch).mean()
        loss.backward()
        if k:
            times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def learning_curves(tb_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    curves = {}
    for tag in ("train/bits_per_dim", "test/bits_per_dim"):
        if tag in acc.Tags().get("scalars", []):
            events = acc.Scalars(tag)
            curves[tag] = ([e.step for e in events], [e.value for e in events])
    return curves


def plot_curves(results: list[dict], path: Path, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for k, r in enumerate(results):
        colour = f"C{k}"
        for tag, style in (("train/bits_per_dim", ":"), ("test/bits_per_dim", "-")):
            if tag in r["curves"]:
                steps, values = r["curves"][tag]
                seconds = [s * r["seconds_per_step"] for s in steps]
                ax.plot(seconds, values, style, color=colour, marker="o" if "test" in tag else None,
                        label=f"{r['model']} ({'test' if 'test' in tag else 'train'})")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("bits/dim")
    ax.set_title(f"{data}: learning curves at equal CPU budget")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(results: list[dict], data: str) -> str:
    head = "| model | NLL test (bits/dim) | NLL test (nats/image) | parameters | training time | images/s |"
    rows = [head, "|" + "---|" * 6]
    for r in results:
        bound = "≤ " if r.get("bound") else ""
        rows.append(f"| {r['model']} | {bound}{r['bits_per_dim']:.4f} | {bound}{r['nats_per_image']:.2f} | "
                    f"{r['parameters']:,} | {r['train_seconds']:.0f} s | {r['images_per_second']:.0f} |")
    return "\n".join(rows)


def run_compare(args: argparse.Namespace) -> int:
    from pixelwave import data as data_lib
    from pixelwave.viz import image_grid, save_image

    reuse_freed_memory()  # this process trains: reuse activations' memory instead of re-faulting it

    if not math.isfinite(args.budget_minutes) or args.budget_minutes <= 0:
        raise UserError(f"--budget-minutes must be positive, got {args.budget_minutes}")
    if args.params < 100 or args.batch_size < 1:
        raise UserError("--params must be >= 100 and --batch-size >= 1")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError("--models must name each model once")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError(f"{out} exists: pass --overwrite to replace it or choose another --out")
    if data_lib.data_kind(args.data) != "image":
        raise UserError(f"--data {args.data}: compare works on image data")
    train_set, test_set = (data_lib.load(args.data, split=s) for s in ("train", "test"))
    models = []
    for name in names:  # build (and validate) every model before training any
        torch.manual_seed(args.seed)
        model = matched_model(name, train_set, args.params)
        check_compatible(model, train_set)
        models.append((name, model))
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    budget = args.budget_minutes * 60
    results = []
    for name, model in models:
        per_step = seconds_per_step(model, train_set, args.batch_size, device)
        # The budget is training time (evaluations excluded), enforced by --time-limit; the step count from the
        # probe only spaces the evaluations. A constant learning rate after warm-up treats every model alike.
        steps = max(20, int(budget / per_step))
        config = TrainConfig(steps=10 * steps, time_limit=budget, min_lr=args.lr, batch_size=args.batch_size,
                             lr=args.lr, out=str(out / name), seed=args.seed, overwrite=True, device=args.device,
                             warmup_steps=min(100, steps // 10), eval_every=max(1, steps // 4), eval_batches=2,
                             checkpoint_every=0, samples=0, no_progress=True, log_every=max(1, steps // 8))
        print(f"\n== {name}: {sum(p.numel() for p in model.parameters()):,} parameters, about "
              f"{per_step * 1000:.0f} ms a step; training for {budget:g} s", flush=True)
        metrics = train(config, model, train_set, test_set)
        grid = model.sample(16, size=train_set.size, generator=torch.Generator().manual_seed(args.seed))
        save_image(image_grid(grid, train_set.levels, nrow=4, scale=3), out / f"samples_{name}.png")
        bpd = metrics["test_bits_per_dim"]
        results.append(dict(model=name, bits_per_dim=bpd, nats_per_image=metrics["test_nats_per_example"],
                            parameters=sum(p.numel() for p in model.parameters()),
                            train_seconds=metrics["train_seconds"], images_per_second=metrics["examples_per_second"],
                            steps=metrics["step"], seconds_per_step=metrics["train_seconds"] / metrics["step"],
                            bound=model.is_bound,
                            curves=learning_curves(out / name / "tb")))
    plot_curves(results, out / "learning_curves.png", args.data)
    text = table(results, args.data)
    (out / "results.json").write_text(json.dumps({"data": args.data, "budget_minutes": args.budget_minutes,
                                                  "results": results}, indent=1))
    (out / "table.md").write_text(text + "\n")
    print(f"\n{args.data}, {args.budget_minutes:g} min per model, ~{args.params:,} parameters each:\n")
    print(text)
    print(f"\nwrote {out}/table.md, learning_curves.png, samples_*.png, results.json")
    return 0
