"""WaveNet generation speed: naive vs PyTorch cached vs the fused C++ step, batch 1 and 16, side by side.

    .venv/bin/python benchmarks/wavenet_generation.py            # ~15 s on an idle 2-core CPU
    .venv/bin/python benchmarks/wavenet_generation.py --quick    # seconds: checks the script, rough figures
    .venv/bin/python benchmarks/wavenet_generation.py --json out.json

The standard model (20 layers = 2 stacks x 10, residual 64, gate 128, skip 256, kernel 2, 256 levels), float32,
untrained weights (speed does not depend on them). Each configuration runs `repeats` times, interleaved with the
others (so a change in the machine's load hits all of them alike), and the median is reported, with the
real-time factor at 16 kHz (samples/s / 16,000: > 1 is faster than real time), the 2048x2048 fp32 matmul rate
measured in the same run, and the load average, since these figures move with whatever else the machine runs.

naive: every sample runs the parallel pass over the last receptive_field = 2,047 inputs (its steady state; the
first 2,047 samples of an utterance are cheaper), timed as that pass. cached: WaveNet.generate(fast=False), the
PyTorch queue loop. fast: WaveNet.generate(fast=True), the fused step (pixelwave.fast.wavenet_step); at batch 1
it splits each sample over two threads while both get a core, else runs on one ("split share" says how many
steps ran split), and "fast/CPU-s" is its samples per CPU-second of its own threads: roughly its rate on a
machine to itself. fast bf16: the same with bfloat16 weights (WaveNet.generate(bf16=True)), native VDPBF16PS
where the CPU has AVX512-BF16 (the header says which). benchmarks/run.py can import `measure`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from pixelwave.fast import wavenet_step
from pixelwave.models.wavenet import WaveNet

AUDIO_RATE = 16_000


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Median fp32 GFLOP/s of an n x n matmul, PyTorch's default threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        rates.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def standard_model(conditioned: bool = False) -> WaveNet:
    torch.manual_seed(0)
    kw = dict(num_speakers=4, cond_channels=80, hop_length=256) if conditioned else {}
    return WaveNet(**kw).eval()


def _conditions(m: WaveNet, batch: int, steps: int):
    if m.cond_channels is None:
        return None, None
    mel = torch.randn(batch, m.cond_channels, -(-steps // m.hop_length), generator=torch.Generator().manual_seed(1))
    return torch.arange(batch) % m.num_speakers, mel


def _time_generate(m: WaveNet, batch: int, steps: int, fast: bool, bf16: bool = False) -> dict:
    spk, mel = _conditions(m, batch, steps)
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    m.generate(steps, batch=batch, speaker=spk, cond=mel, generator=g, fast=fast, bf16=bf16)
    wall = time.perf_counter() - t
    out = {"samples_per_s": batch * steps / wall}
    if fast:
        run = wavenet_step.last_run
        out["split_share"] = run["split_steps"] / steps if run["threads"] == 2 and batch == 1 else None
        out["samples_per_cpu_s"] = batch * steps / run["cpu_s"] if run["cpu_s"] > 0 else None
        out["threads"] = run["threads"]
    return out


@torch.no_grad()
def _time_naive(m: WaveNet, batch: int) -> dict:
    """One naive step at steady state: the parallel pass over the last receptive_field inputs."""
    window = torch.randint(0, m.levels, (batch, m.receptive_field), generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    params = m._network(window, None, None)[:, :, -1]
    m.output.sample(params, torch.rand(batch), 1.0)
    return {"samples_per_s": batch / (time.perf_counter() - t)}


def measure(quick: bool = False, repeats: int | None = None, batch_big: int = 16, conditioned: bool = True,
            log=print) -> dict:
    """Every figure in one run. Returns {"machine", "matmul_gflops", "load_before", "load_after", "rows"}, rows
    being dicts with path, batch, samples_per_s (median), rtf_16k, and for the fast path split_share,
    samples_per_cpu_s, threads. quick: a few hundred steps per run, 1 repeat (checks the script)."""
    repeats = repeats or (1 if quick else 3)
    load_before = os.getloadavg()
    m = standard_model()
    mc = standard_model(conditioned=True) if conditioned else None
    fast_ok = wavenet_step.unsupported(m, torch.float32, torch.device("cpu")) is None
    s1, s16 = (400, 100) if quick else (16_000, 4_000)  # fast: 1 s of audio at batch 1, 4 s worth at 16
    c1, c16 = (100, 25) if quick else (1_500, 300)  # the PyTorch loop: ~1 s each
    configs = [("naive", 1, lambda: _time_naive(m, 1)),
               ("naive", batch_big, lambda: _time_naive(m, batch_big)),
               ("cached", 1, lambda: _time_generate(m, 1, c1, fast=False)),
               ("cached", batch_big, lambda: _time_generate(m, batch_big, c16, fast=False))]
    if fast_ok:
        configs += [("fast", 1, lambda: _time_generate(m, 1, s1, fast=True)),
                    ("fast", batch_big, lambda: _time_generate(m, batch_big, s16, fast=True))]
        if mc is not None:
            configs += [("fast, speaker + mel", 1, lambda: _time_generate(mc, 1, s1, fast=True)),
                        ("fast, speaker + mel", batch_big, lambda: _time_generate(mc, batch_big, s16, fast=True))]
        if wavenet_step.bf16_unsupported(m, torch.float32, torch.device("cpu")) is None:
            configs += [("fast bf16", 1, lambda: _time_generate(m, 1, s1, fast=True, bf16=True)),
                        ("fast bf16", batch_big, lambda: _time_generate(m, batch_big, s16, fast=True, bf16=True))]
            if mc is not None:
                configs += [("fast bf16, speaker + mel", b, lambda b=b: _time_generate(
                    mc, b, s1 if b == 1 else s16, fast=True, bf16=True)) for b in (1, batch_big)]
    else:
        log(f"fast path unavailable: {wavenet_step.unsupported(m, torch.float32, torch.device('cpu'))}")
    for model in (m, mc) if fast_ok and mc is not None else (m,):  # warm-up: builds the kernel (first use)
        _time_generate(model, 1, 20, fast=fast_ok)
    gflops = [matmul_gflops()]
    results: dict[tuple, list] = {(p, b): [] for p, b, _ in configs}
    for rep in range(repeats):
        for path, batch, fn in configs:
            results[(path, batch)].append(fn())
        gflops.append(matmul_gflops())
        log(f"  repeat {rep + 1}/{repeats} done")
    rows = []
    for (path, batch), runs in results.items():
        row = {"path": path, "batch": batch}
        for key in runs[0]:
            vals = [r[key] for r in runs if r[key] is not None]
            row[key] = statistics.median(vals) if vals else None
        row["rtf_16k"] = row["samples_per_s"] / AUDIO_RATE
        rows.append(row)
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
                       f"{torch.__version__}, {torch.get_num_threads()} torch threads",
            "matmul_gflops": statistics.median(gflops), "load_before": load_before, "load_after": os.getloadavg(),
            "native_bf16": fast_ok and wavenet_step.native_bf16(),
            "repeats": repeats, "rows": rows}


def table(res: dict) -> str:
    rate = {(r["path"], r["batch"]): r["samples_per_s"] for r in res["rows"]}
    lines = [f"WaveNet generation, standard model, float32 weights (bf16 rows: bfloat16) -- {res['machine']}",
             f"2048x2048 fp32 matmul: {res['matmul_gflops']:.0f} GFLOP/s (median, same run); load average "
             f"{res['load_before'][0]:.2f} before, {res['load_after'][0]:.2f} after; medians of {res['repeats']}; "
             f"bf16 products {'native (AVX512-BF16)' if res.get('native_bf16') else 'emulated in float32'}",
             "",
             "| path | batch | samples/s | x real time (16 kHz) | vs cached | fast/CPU-s | split share |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        cached = rate.get(("cached", r["batch"]))
        vs = f"{r['samples_per_s'] / cached:.1f}x" if cached and r["path"] != "cached" else ""
        cpu = f"{r['samples_per_cpu_s']:,.0f}" if r.get("samples_per_cpu_s") else ""
        split = f"{r['split_share']:.0%}" if r.get("split_share") is not None else ""
        sps = f"{r['samples_per_s']:,.0f}" if r["samples_per_s"] >= 100 else f"{r['samples_per_s']:.2g}"
        vs = vs if not vs.startswith("0.0") else f"{r['samples_per_s'] / cached:.1g}x"
        lines.append(f"| {r['path']} | {r['batch']} | {sps} | {r['rtf_16k']:.3g} | {vs} | {cpu} | {split} |")
    lines.append("")
    for path in ("fast", "fast bf16"):
        f1, f16 = rate.get((path, 1)), [r for r in res["rows"] if r["path"] == path and r["batch"] != 1]
        if f1 and f16:
            lines.append(f"{path}, batch {f16[0]['batch']} aggregate / batch 1: {f16[0]['samples_per_s'] / f1:.1f}x")
    for b in sorted({r["batch"] for r in res["rows"]}):
        if rate.get(("fast", b)) and rate.get(("fast bf16", b)):
            lines.append(f"fast bf16 / fast float32, batch {b}: {rate[('fast bf16', b)] / rate[('fast', b)]:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs, one repeat: checks the script")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-conditioned", action="store_true", help="skip the speaker + mel rows")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    res = measure(quick=args.quick, repeats=args.repeats, conditioned=not args.no_conditioned)
    print(table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
