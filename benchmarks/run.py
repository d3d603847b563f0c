"""pixelwave speed benchmarks: every figure side by side in one process, one markdown table.

    .venv/bin/python benchmarks/run.py                 # the full run (tens of minutes on a 2-core CPU)
    .venv/bin/python benchmarks/run.py --quick         # everything shrunk: < 2 minutes, for checking the script
    .venv/bin/python benchmarks/run.py --only sample   # one section (the reference rates always run)
    .venv/bin/python benchmarks/run.py --write-docs    # also replace the results block of docs/benchmarks.md

Sections (docs/benchmarks.md says what every figure means):
  reference  2048x2048 fp32 matmul GFLOP/s and a 64->64 3x3 conv2d GFLOP/s: the machine's yardsticks
  train      training throughput (forward + backward + Adam step) in fp32 and bf16 autocast, next to cost twins of
             the reference implementations (benchmarks/reference_models.py), FLOPs per step, achieved GFLOP/s
  budget     held-out bits/dim each image model reaches in a fixed training-time budget
  sample     image sampling, naive vs cached, and a float64 check that both draw identical samples
  wavenet    WaveNet generation naive vs cached (float32 and bf16), batch 1 and 16, real-time factor at 16 kHz

Timings are medians over repeats, measured with time.perf_counter. Peak memory is the process's peak resident
set (VmHWM from /proc/self/status), reset before every benchmark by writing 5 to /proc/self/clear_refs, so each
row's figure is that benchmark's own peak -- it includes the process baseline (Python, torch, the data sets).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import gc
import math
import os
import platform
import re
import resource
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import pixelwave.data
from pixelwave import train as pw_train
from pixelwave.models.gated_pixelcnn import GatedPixelCNN
from pixelwave.models.pixelcnn import PixelCNN

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SECTIONS = ("reference", "train", "budget", "sample", "wavenet")
LN2 = math.log(2.0)
AUDIO_RATE = 16_000  # Hz, for the real-time factor

# Reported in issue 4 (measured by others on a 2-core machine with ~215 GFLOP/s matmul), not measured here.
REPORTED_MATMUL = 215.0
REPORTED_GATED_TRAIN = 14.0  # images/s, Gated PixelCNN 10 x 128, batch 16, binary 28x28, most-used PyTorch library
REPORTED_WAVENET_TRAIN = 19_800.0  # samples/s, "standard" WaveNet, batch 2 x 16,384: the published wavenet_vocoder
# measures this at its gate_channels=128 (64 per half, our gate_channels=64), not at our gate_channels=128
REPORTED_WAVENET_GEN = 800.0  # samples/s, open PyTorch WaveNets, batch 1


# ------------------------------------------------------------------------------------------------ plumbing
@dataclass
class Row:
    section: str
    name: str
    setting: str
    result: str
    detail: str = ""
    peak: str = ""


class Bench:
    """Holds the options, the measured reference rates and the rows of the table."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.rows: list[Row] = []
        self.matmul_gflops: float | None = None
        self.conv_gflops: float | None = None
        self.failed = False

    def q(self, quick, full):
        return quick if self.quick else full

    def add(self, section, name, setting, result, detail="", peak=None):
        self.rows.append(Row(section, name, setting, result, detail, "" if peak is None else f"{peak:,.0f}"))
        print(f"  [{section}] {name} | {setting} | {result} | {detail}", file=sys.stderr, flush=True)

    def guarded(self, section, name, fn, *, optional=False):
        """Run one benchmark; a failure becomes a row ('n/a' for optional parts) instead of ending the run."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 -- the table must still print
            msg = f"{type(e).__name__}: {e}".replace("|", "/").replace("\n", " ")[:160]
            if optional:
                self.add(section, name, "", "n/a", msg)
            else:
                self.failed = True
                self.add(section, name, "", "FAILED", msg)
                traceback.print_exc(file=sys.stderr)

    # utilisation next to the matmul rate measured in this run
    def vs_matmul(self, gflops):
        if not self.matmul_gflops:
            return f"{gflops:,.1f} GFLOP/s"
        return f"{gflops:,.1f} GFLOP/s = {100 * gflops / self.matmul_gflops:.0f}% of matmul"


try:
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
except OSError:
    _LIBC = None


def reset_peak() -> None:
    """Start a new peak-RSS window: free what can be freed, hand free heap pages back (malloc_trim), then reset
    VmHWM to the current RSS."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux, or not allowed: peak() then reports the process's peak so far


def peak_mib() -> float:
    """Peak RSS since the last reset_peak() (VmHWM), in MiB; ru_maxrss (peak over the whole process) elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def timed(fn, repeats: int, warmup: int = 0) -> list[float]:
    return interleaved({"fn": fn}, warmup, repeats)["fn"]


class num_threads:
    """with num_threads(1): ... -- torch's intra-op thread count for a block, restored afterwards."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def med(xs):
    return statistics.median(xs)


def fmt_s(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:,.1f} min"
    if seconds >= 1:
        return f"{seconds:,.2f} s"
    return f"{seconds * 1e3:,.1f} ms"


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers: "AMD EPYC" alone hides whether it is a Zen 4
    (family 25: AVX-512 on 256-bit units) or a Zen 5 (family 26: full-width), which halves or doubles the
    compute-bound figures."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = re.sub(r"\s+", " ", value).strip()
                if not line.strip() and fields:
                    break
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    extra = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    return fields["model name"] + extra


# ------------------------------------------------------------------------------------------------ reference
def matmul_rate(repeats: int) -> tuple[float, list[float]]:
    n = 2048
    a, c = torch.randn(n, n), torch.randn(n, n)
    ts = timed(lambda: torch.mm(a, c), repeats, warmup=2)
    return 2 * n**3 / med(ts) / 1e9, ts


def section_reference(b: Bench):
    def matmul():
        reset_peak()
        b.matmul_gflops, ts = matmul_rate(b.q(5, 15))
        b.add("reference", "matmul fp32", "2048 x 2048 @ 2048 x 2048", f"{b.matmul_gflops:,.1f} GFLOP/s",
              f"median of {len(ts)} (min {fmt_s(min(ts))}, max {fmt_s(max(ts))})", peak_mib())

    def conv():
        x, w = torch.randn(16, 64, 28, 28), torch.randn(64, 64, 3, 3)
        flops = 2 * 16 * 28 * 28 * 64 * 64 * 9
        reset_peak()
        ts = timed(lambda: F.conv2d(x, w, padding=1), b.q(5, 20), warmup=2)
        b.conv_gflops = flops / med(ts) / 1e9
        b.add("reference", "conv2d fp32", "16x64x28x28, 64->64 3x3, pad 1", f"{b.conv_gflops:,.1f} GFLOP/s",
              f"{flops / 1e9:.2f} GFLOP per call, median of {len(ts)}; "
              f"{100 * b.conv_gflops / b.matmul_gflops:.0f}% of matmul" if b.matmul_gflops else "", peak_mib())

    b.guarded("reference", "matmul fp32", matmul)
    b.guarded("reference", "conv2d fp32", conv)


# ------------------------------------------------------------------------------------------------ training
def step_fn(model: nn.Module, inputs: dict, bf16: bool):
    """One training step (zero_grad, forward, -mean log p, backward, Adam step), optionally under bfloat16
    autocast (as `pixelwave train --bf16`: bf16 matrix products, float32 weights, optimiser and loss)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            log_p = model(**inputs)
        loss = -log_p.float().mean()
        loss.backward()
        opt.step()

    return step


def step_flops(model: nn.Module, inputs: dict) -> int:
    """FLOPs of one forward + backward pass, matrix products and convolutions only (direct-convolution count:
    masked-out weights count, since the kernels compute them), by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    def addmm_(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs):
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]  # as addmm: one multiply and one add per term

    # in-place addmm_ (WaveNet's skip sum) is missing from the counter's registry
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: addmm_}) as counter:
        (-model(**inputs).mean()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def interleaved(steps: dict, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, timed in turn (a, b, c, a, b, c, ...) so that a change of the
    machine's load during the run touches all of them alike."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def versus_reference(b: Bench, label: str, make_ours, make_ref, inputs: dict, unit: str, per_step: int,
                     warmup: int, repeats: int, reported: float | None, *, ref_name: str = "the reference",
                     make_twin=None, compile_ours: bool = True) -> None:
    """Ours and a reference, fp32 and bf16 autocast, timed interleaved in one loop: a row per precision with the
    ratio to the reference. `make_ref` builds the reference (the published code where it is installed, else its
    cost twin from benchmarks/reference_models.py); `make_twin`, if given, adds the twin in fp32 as a second
    yardstick. Without --quick and with `compile_ours`, also ours under torch.compile (`pixelwave train
    --compile`; its compile time is reported, not timed in the steps)."""
    torch.manual_seed(0)
    models = {"ours": make_ours(), "ref": make_ref()}
    if make_twin is not None:
        models["twin"] = make_twin()
    flops = {name: step_flops(m, inputs) for name, m in models.items()}
    reset_peak()
    steps = {f"{name} {prec}": step_fn(m, inputs, prec == "bf16") for name, m in models.items()
             for prec in (("fp32",) if name == "twin" else ("fp32", "bf16"))}
    compile_s = None
    if compile_ours and not b.quick:
        compiled = torch.compile(models["ours"])
        t0 = time.perf_counter()
        for prec in ("fp32", "bf16"):
            steps[f"compiled {prec}"] = step_fn(compiled, inputs, prec == "bf16")
            steps[f"compiled {prec}"]()  # compiles
        compile_s = time.perf_counter() - t0
    times = interleaved(steps, warmup, repeats)
    rate = {k: per_step / med(v) for k, v in times.items()}
    peak = peak_mib()
    digits = 2 if unit == "images/s" else 0
    for prec in ("fp32", "bf16"):
        ours, ref = rate[f"ours {prec}"], rate[f"ref {prec}"]
        achieved = flops["ours"] * ours / per_step / 1e9
        detail = (f"{ref_name} {ref:,.{digits}f} {unit}: **{ours / ref:.2f}x**"
                  + (f"; {ours / rate['ref fp32']:.2f}x {ref_name} in fp32" if prec == "bf16" else ""))
        if prec == "fp32" and "twin fp32" in rate:
            twin = rate["twin fp32"]
            detail += (f"; its cost twin without weight norm and dropout {twin:,.{digits}f} {unit}: "
                       f"{ours / twin:.2f}x")
        twin_flops = f", twin {flops['twin'] / 1e9:,.1f}" if "twin" in flops else ""
        detail += (f"; {flops['ours'] / 1e9:,.1f} GFLOP/step ({ref_name} {flops['ref'] / 1e9:,.1f}{twin_flops}); "
                   f"{b.vs_matmul(achieved)}; median of {repeats} interleaved steps")
        if prec == "fp32" and reported:
            detail += (f"; issue 4 reports ~{reported:,g} {unit} for the reference at ~{REPORTED_MATMUL:g} "
                       f"GFLOP/s matmul")
        setting = "fp32" if prec == "fp32" else "bf16 autocast (`--bf16`)"
        b.add("train", label, setting, f"{ours:,.{digits}f} {unit}", detail, peak)
    if compile_s is not None:
        fp32, bf16 = rate["compiled fp32"], rate["compiled bf16"]
        b.add("train", label, "torch.compile (`--compile`), fp32 and bf16",
              f"{fp32:,.{digits}f} / {bf16:,.{digits}f} {unit}",
              f"{fp32 / rate['ref fp32']:.2f}x / {bf16 / rate['ref fp32']:.2f}x {ref_name} in fp32, "
              f"{fp32 / rate['ours fp32']:.2f}x / {bf16 / rate['ours bf16']:.2f}x uncompiled; compiling took "
              f"{fmt_s(compile_s)} (torch's on-disk cache may hold earlier runs; not in the step times)", peak)


# wavenet: the standard model; wavenet-64: gate 64 per half, i.e. wavenet_vocoder's gate_channels=128, the model
# whose training speed issue 4 reports (its 19,800 samples/s matches the published code at that size, not at ours)
PAIRS = ("gated", "wavenet", "wavenet-64")


def run_pair(b: Bench, pair: str) -> None:
    """One comparison against a reference (in the child process of versus_in_child)."""
    from reference_models import PublishedWaveNet, ReferenceGatedPixelCNN, ReferenceWaveNet, published_wavenet_version

    from pixelwave.models.wavenet import WaveNet

    if pair == "gated":
        batch = 16
        x = pixelwave.data.load("mnist-sample-binary", "train").batch(torch.arange(batch))["x"]  # real digits
        versus_reference(b, "Gated PixelCNN 10 x 128, k3, batch 16, binary 28x28",
                         lambda: GatedPixelCNN(channels=1, levels=2, hidden=128, layers=10, kernel_size=3),
                         lambda: ReferenceGatedPixelCNN(n_gated=10, channels=128), {"x": x}, "images/s", batch,
                         b.q(1, 2), b.q(2, 8), REPORTED_GATED_TRAIN, ref_name="the reference twin")
        return
    gate = 128 if pair == "wavenet" else 64
    bsz, length = 2, b.q(2048, 16384)
    a = torch.randint(0, 256, (bsz, length), generator=torch.Generator().manual_seed(0))
    published = published_wavenet_version()
    if published:
        ref, twin, ref_name = (lambda: PublishedWaveNet(gate=gate)), (lambda: ReferenceWaveNet(gate=gate)), \
            f"wavenet_vocoder {published}"
    else:  # the `bench` extra is not installed: the twin alone
        ref, twin, ref_name = (lambda: ReferenceWaveNet(gate=gate)), None, "the reference twin"
    label = f"WaveNet 20 layers, 2 stacks, 64/{gate}/256, k2, batch {bsz} x {length:,}"
    if gate != 128:
        label += f" (wavenet_vocoder's gate_channels={2 * gate})"
    versus_reference(b, label, lambda: WaveNet(layers=20, stacks=2, residual_channels=64, gate_channels=gate,
                                               skip_channels=256, kernel_size=2),
                     ref, {"a": a}, "samples/s", bsz * length, b.q(1, 1), b.q(2, 6),
                     REPORTED_WAVENET_TRAIN if gate == 64 else None, ref_name=ref_name, make_twin=twin,
                     compile_ours=gate == 128)


def versus_in_child(b: Bench, pair: str) -> None:
    """Run one comparison in a fresh Python process and take its rows. Inside it, ours and the twin still
    alternate step by step; the fresh process keeps earlier benchmarks' heap out of the timing. (Before
    reuse_freed_memory, the standard WaveNet's fp32 step measured anywhere from 0.55x to 1x the twin's depending
    on what ran before: its large temporaries were mmap'ed and page-faulted afresh or not, depending on glibc
    malloc's state.)"""
    import json
    import subprocess

    cmd = [sys.executable, __file__, "--pair", pair, "--matmul", str(b.matmul_gflops or 0.0)]
    if b.quick:
        cmd.append("--quick")
    if b.args.threads:
        cmd += ["--threads", str(b.args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not rows:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"child exited {done.returncode}: {tail}")
    for row in rows:
        b.rows.append(Row(**row))
        print(f"  [{row['section']}] {row['name']} | {row['setting']} | {row['result']} | {row['detail']}",
              file=sys.stderr, flush=True)


def section_train(b: Bench, train_set):

    from pixelwave.compare import matched_model

    batch = 16
    x = train_set.batch(torch.arange(batch))["x"]  # (16, 1, 28, 28) real binary MNIST digits

    # Against the references: the sizes issue 4 names, each pair in a fresh process (see versus_in_child).
    for pair in PAIRS:
        b.guarded("train", f"{pair} vs reference", lambda pair=pair: versus_in_child(b, pair))

    # Every image model at ~60k parameters (the sizes `pixelwave compare` trains), fp32 and bf16.
    for name in ("pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelrnn_row", "pixelrnn_diag", "pixelvae"):
        def run(name=name):
            torch.manual_seed(0)
            model = matched_model(name, train_set, 60_000)
            inputs = {"x": x}
            flops = step_flops(model, inputs)
            reset_peak()
            times = interleaved({p: step_fn(model, inputs, p == "bf16") for p in ("fp32", "bf16")},
                                b.q(1, 2), b.q(2, 8))
            fp32, bf16 = (batch / med(times[p]) for p in ("fp32", "bf16"))
            params = sum(p.numel() for p in model.parameters())
            b.add("train", f"{name}, hidden {model.config.hidden}, {params / 1e3:.0f}k parameters",
                  "batch 16, binary 28x28, fp32", f"{fp32:,.1f} images/s",
                  f"bf16 autocast {bf16:,.1f} images/s ({bf16 / fp32:.2f}x); {flops / 1e9:,.2f} GFLOP/step; "
                  f"fp32 {b.vs_matmul(flops * fp32 / batch / 1e9)}; median of {len(times['fp32'])} steps",
                  peak_mib())

        b.guarded("train", name, run)


# ------------------------------------------------------------------------------------------------ budget
def section_budget(b: Bench, train_set, test_set):
    """Own loop: Adam at a fixed lr 1e-3, batch 32, shuffled epochs, no warm-up / clipping / EMA; the clock
    counts the training steps only. Then pixelwave.train.evaluate (float32): exact sum over the held-out images.
    The bf16 row trains the same model from the same seed on the same batches under bf16 autocast: what the
    faster steps buy in held-out bits/dim."""
    seconds = b.args.budget_seconds if b.args.budget_seconds is not None else b.q(10.0, 120.0)
    eval_batches = b.q(1, None)  # quick: 50 of the 500 held-out images
    clock = time.perf_counter if b.args.budget_clock == "wall" else time.process_time
    batch = 32
    def gated():
        return GatedPixelCNN(1, 2, hidden=64, layers=10, kernel_size=5)

    models = [("PixelCNN 8 x 64, k3", lambda: PixelCNN(1, 2, hidden=64, layers=8, kernel_size=3), False),
              ("Gated PixelCNN 10 x 64, k5", gated, False),
              ("Gated PixelCNN 10 x 64, k5, bf16 autocast", gated, True)]  # same seed, same batches
    for label, make, bf16 in models:
        def run(label=label, make=make, bf16=bf16):
            torch.manual_seed(0)
            model = make()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            gen = torch.Generator().manual_seed(0)
            order, pos, steps, spent, cpu = torch.randperm(len(train_set), generator=gen), 0, 0, 0.0, 0.0
            reset_peak()
            model.train()
            while spent < seconds:
                if pos + batch > len(order):
                    order, pos = torch.randperm(len(train_set), generator=gen), 0
                x = train_set.batch(order[pos:pos + batch])["x"]
                pos += batch
                t0, c0 = clock(), time.process_time()
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    log_p = model(x=x)
                loss = -log_p.float().mean() / (train_set.dims * LN2)  # bits/dim
                loss.backward()
                opt.step()
                spent += clock() - t0
                cpu += time.process_time() - c0
                steps += 1
            t0 = time.perf_counter()
            ev = pw_train.evaluate(model, test_set, batch_size=50, max_batches=eval_batches)
            ev_s = time.perf_counter() - t0
            held = f"{ev['examples']} of {len(test_set)} held-out images"
            b.add("budget", label, f"{seconds:g} s ({b.args.budget_clock} clock) of training, batch {batch}",
                  f"{ev['bits_per_dim']:.4f} bits/dim",
                  f"{steps} steps ({steps * batch / len(train_set):.2f} epochs), {cpu:,.0f} CPU-s; {held} "
                  f"(evaluation {fmt_s(ev_s)}); last train batch {loss.item():.4f}", peak_mib())

        b.guarded("budget", label, run)


# ------------------------------------------------------------------------------------------------ sampling
def check_identical(make, size, n=3, seed=1):
    """float64: cached and naive samplers draw the same images from the same generator seed."""
    torch.manual_seed(0)
    model = make().double()
    s1 = model.sample(n, size, generator=torch.Generator().manual_seed(seed), cached=False)
    s2 = model.sample(n, size, generator=torch.Generator().manual_seed(seed), cached=True)
    assert torch.equal(s1, s2), f"cached and naive samples differ ({(s1 != s2).sum().item()} sub-pixels)"
    return s1.numel()


def naive_per_subpixel(model, n, channels, size, k, repeats):
    """Seconds per sub-pixel of the naive sampler: it is run as a completion with only the first k sub-pixels
    (raster, then colour, order) free, so it does exactly k full forward passes; the cost of one pass does not
    depend on the position, so k of them extrapolate to the whole image."""
    h, w = size
    order = torch.arange(channels * h * w).view(h, w, channels).permute(2, 0, 1)  # sampling order of (c, i, j)
    keep = (order >= k)[None].expand(n, channels, h, w)
    x = torch.zeros(n, channels, h, w, dtype=torch.long)
    times = timed(lambda: model.sample(n, x=x, mask=keep, generator=torch.Generator().manual_seed(0),
                                       cached=False), repeats)
    return med(times) / k


def section_sample(b: Bench):
    n = 16
    # (label, what, constructor, channels, size, naive sub-pixels timed (quick, full), goal)
    cases = [
        ("Gated PixelCNN 10 x 64, k5", "binary 28x28",
         lambda: GatedPixelCNN(1, 2, hidden=64, layers=10, kernel_size=5), 1, (28, 28), (2, 12), "goal >= 30x"),
        ("PixelCNN 8 x 64, k3", "binary 28x28",
         lambda: PixelCNN(1, 2, hidden=64, layers=8, kernel_size=3), 1, (28, 28), (8, 48), ""),
        ("Gated PixelCNN 10 x 64, k5", "RGB 32x32, 256 levels",
         lambda: GatedPixelCNN(3, 256, hidden=64, layers=10, kernel_size=5), 3, (32, 32), (1, 6), ""),
        ("PixelCNN 8 x 64, k3", "RGB 32x32, 256 levels",
         lambda: PixelCNN(3, 256, hidden=64, layers=8, kernel_size=3), 3, (32, 32), (4, 24), ""),
    ]
    for label, what, make, channels, size, ks, goal in cases:
        def run(label=label, what=what, make=make, channels=channels, size=size, ks=ks, goal=goal):
            torch.manual_seed(0)
            model = make().eval()
            subpixels = channels * size[0] * size[1]
            # --quick samples the first `rows` rows only: both cached samplers cost the same for every row
            # (W pixel passes, and for the Gated PixelCNN one vertical-stack pass), so the time scales exactly.
            rows = b.q(4, size[0])
            part = (rows, size[1])
            scale = size[0] / rows

            def cached_time():
                return scale * med(timed(lambda: model.sample(n, part, generator=torch.Generator().manual_seed(0),
                                                              cached=True), b.q(1, 3)))

            how = f"median of {b.q(1, 3)}" + ("" if rows == size[0] else f"; extrapolated from {rows} of "
                                                                          f"{size[0]} rows")
            reset_peak()
            cached_s = cached_time()
            cached_peak = peak_mib()
            k = b.q(*ks)
            reset_peak()
            per = naive_per_subpixel(model, n, channels, size, k, b.q(1, 3))
            naive_peak = peak_mib()
            naive_s = per * subpixels
            setting = f"n={n}, {what} (untrained weights)"
            b.add("sample", f"{label}: cached", setting,
                  f"{fmt_s(cached_s)}{' (extrapolated)' if rows < size[0] else ''} "
                  f"({n * subpixels / cached_s:,.0f} sub-pixels/s)",
                  how, cached_peak)
            b.add("sample", f"{label}: naive", setting, f"{fmt_s(naive_s)} (extrapolated)",
                  f"extrapolated from {k} sub-pixels x {subpixels:,}: {fmt_s(per)} per sub-pixel "
                  f"(one full forward pass each)", naive_peak)
            b.add("sample", f"{label}: cached speedup", setting, f"{naive_s / cached_s:,.0f}x",
                  f"naive / cached, side by side in this run{'; ' + goal if goal else ''}")
            if torch.get_num_threads() > 1:  # small per-pixel ops: threading them can cost more than it gives
                with num_threads(1):
                    reset_peak()
                    one = cached_time()
                b.add("sample", f"{label}: cached, 1 thread", setting,
                      f"{fmt_s(one)}{' (extrapolated)' if rows < size[0] else ''} "
                      f"({n * subpixels / one:,.0f} sub-pixels/s)",
                      f"{how}; {naive_s / one:,.0f}x the naive sampler at {torch.get_num_threads()} threads; "
                      f"{cached_s / one:.1f}x the cached sampler at {torch.get_num_threads()} threads", peak_mib())

        b.guarded("sample", f"{label} {what}", run)

    def identical():
        checks = [
            ("Gated PixelCNN 3 x 16, k5, binary 7x6", lambda: GatedPixelCNN(1, 2, hidden=16, layers=3,
                                                                            kernel_size=5), (7, 6)),
            ("Gated PixelCNN 3 x 12, k3, RGB 16 levels 5x5", lambda: GatedPixelCNN(3, 16, hidden=12, layers=3,
                                                                                   kernel_size=3), (5, 5)),
            ("PixelCNN 3 x 16, k3, binary 7x6", lambda: PixelCNN(1, 2, hidden=16, layers=3, kernel_size=3), (7, 6)),
            ("PixelCNN 2 x 12, k3, RGB 16 levels 5x5", lambda: PixelCNN(3, 16, hidden=12, layers=2, kernel_size=3),
             (5, 5)),
        ]
        total = sum(check_identical(make, size) for _, make, size in checks)
        b.add("sample", "cached == naive", "; ".join(name for name, _, _ in checks) + "; n=3, float64",
              "identical", f"assert torch.equal on {total:,} sub-pixels, same generator seed")

    b.guarded("sample", "cached == naive", identical)


# ------------------------------------------------------------------------------------------------ WaveNet
def section_wavenet(b: Bench):
    try:
        from pixelwave.models.wavenet import WaveNet

        torch.manual_seed(0)
        models = {g: WaveNet(layers=20, stacks=2, residual_channels=64, gate_channels=g, skip_channels=256,
                             kernel_size=2).eval() for g in (128, 64)}
        model = models[128]
        model.generate  # noqa: B018 -- the API this section needs
    except Exception as e:  # noqa: BLE001
        b.add("wavenet", "WaveNet generation", "", "n/a", f"{type(e).__name__}: {e}"[:160])
        return
    settings = {128: "20 layers, 2 stacks, 64/128/256, k2, 256 levels (untrained)",
                64: "20 layers, 2 stacks, 64/64/256, k2, 256 levels (untrained; wavenet_vocoder's "
                    "gate_channels=128)"}
    setting = settings[128]
    rates = {}

    def cached(batch, threads=None, bf16=False, gate=128):
        def run():
            steps = b.q(300, 16_000 if batch == 1 else 4_000)  # one second of 16 kHz audio per stream at batch 1
            reset_peak()
            with num_threads(threads or torch.get_num_threads()):
                ts = timed(lambda: models[gate].generate(steps, batch, generator=torch.Generator().manual_seed(0),
                                                         cached=True, bf16=bf16), b.q(1, 3))
            rate = batch * steps / med(ts)
            if bf16:
                from pixelwave.fast import wavenet_step

                rates[("bf16", batch, gate)] = rate
                how = "VDPBF16PS" if wavenet_step.native_bf16() else "emulated: no AVX512-BF16 here"
                detail = (f"{steps:,} steps, median of {len(ts)}; real-time factor {rate / AUDIO_RATE:.2f} at "
                          f"16 kHz; bfloat16 weights ({how}); {rate / rates[('cached', batch, gate)]:.2f}x float32")
                if batch != 1 and ("bf16", 1, gate) in rates:
                    detail += f"; {rate / rates[('bf16', 1, gate)]:.1f}x the bf16 batch-1 aggregate"
                b.add("wavenet", f"generation cached bf16, batch {batch}", settings[gate], f"{rate:,.0f} samples/s",
                      detail, peak_mib())
                return
            if threads is not None:
                b.add("wavenet", f"generation cached, batch {batch}, {threads} thread", settings[gate],
                      f"{rate:,.0f} samples/s", f"{steps:,} steps, median of {len(ts)}; real-time factor "
                      f"{rate / AUDIO_RATE:.2f} at 16 kHz; {rate / rates[('cached', batch, gate)]:.1f}x the same at "
                      f"{torch.get_num_threads()} threads", peak_mib())
                return
            rates[("cached", batch, gate)] = rate
            detail = f"{steps:,} steps, median of {len(ts)}; real-time factor {rate / AUDIO_RATE:.2f} at 16 kHz"
            if batch == 1:
                detail += "; goal >= 24,000 samples/s (1.5x real time)"
                if ("published", gate) in rates:
                    detail += f"; {rate / rates[('published', gate)]:,.0f}x wavenet_vocoder's incremental_forward"
            elif ("cached", 1, gate) in rates:
                detail += f"; {rate / rates[('cached', 1, gate)]:.1f}x the batch-1 aggregate (goal >= 8x)"
            b.add("wavenet", f"generation cached, batch {batch}", settings[gate], f"{rate:,.0f} samples/s", detail,
                  peak_mib())
        return run

    def published(gate):
        """The published wavenet_vocoder's own cached generation (incremental_forward, batch 1) at this size."""
        def run():
            from reference_models import PublishedWaveNet, published_wavenet_version

            version = published_wavenet_version()
            if version is None:
                raise RuntimeError("wavenet_vocoder is not installed (pip install -e '.[bench]')")
            torch.manual_seed(0)
            net = PublishedWaveNet(gate=gate).net.eval()
            net.make_generation_fast_()  # folds the weight norm away, as its synthesis script does
            steps = b.q(50, 400)
            reset_peak()
            with torch.no_grad():
                ts = timed(lambda: net.incremental_forward(T=steps), b.q(1, 3), warmup=1)
            rate = steps / med(ts)
            rates[("published", gate)] = rate
            b.add("wavenet", f"wavenet_vocoder {version} incremental_forward, batch 1", settings[gate],
                  f"{rate:,.0f} samples/s",
                  f"the published code's cached generation (weight norm folded by its make_generation_fast_; "
                  f"softmax, then a categorical draw), {steps:,} steps, median of {len(ts)}; issue 4 reports "
                  f"~{REPORTED_WAVENET_GEN:g} samples/s for open PyTorch WaveNets", peak_mib())
        return run

    def naive(batch):
        def run():
            # Steady state (t >= receptive field): every sample is one parallel pass over the last R inputs.
            # Timed as that pass plus the draw, exactly what _generate_naive does per sample once the window is full.
            field = model.receptive_field
            seq = torch.full((batch, field), model.silence, dtype=torch.long)
            u = torch.rand(batch)

            def one_sample():
                with torch.no_grad():
                    params = model._network(seq, None, None)[:, :, -1]
                    model.output.sample(params, u, 1.0)

            reset_peak()
            ts = timed(one_sample, b.q(2, 5) if batch == 1 else b.q(1, 3), warmup=1)
            rate = batch / med(ts)
            rates[("naive", batch)] = rate
            detail = (f"steady state, extrapolated from {len(ts)} samples: one parallel pass over the "
                      f"{field:,}-sample receptive field each ({fmt_s(med(ts))})")
            b.add("wavenet", f"generation naive, batch {batch}", setting, f"{rate:,.1f} samples/s", detail, peak_mib())
            if ("cached", batch, 128) in rates:
                b.add("wavenet", f"cached speedup, batch {batch}", setting,
                      f"{rates[('cached', batch, 128)] / rate:,.0f}x", "cached / naive (steady state), this run")
        return run

    b.guarded("wavenet", "wavenet_vocoder generation", published(128), optional=True)
    for batch in (1, 16):
        b.guarded("wavenet", f"generation cached, batch {batch}", cached(batch), optional=True)
        b.guarded("wavenet", f"generation naive, batch {batch}", naive(batch), optional=True)
        if torch.get_num_threads() > 1 and ("cached", batch, 128) in rates:
            b.guarded("wavenet", f"generation cached, batch {batch}, 1 thread", cached(batch, 1), optional=True)
        if ("cached", batch, 128) in rates:
            b.guarded("wavenet", f"generation cached bf16, batch {batch}", cached(batch, bf16=True), optional=True)
    # gate 64 per half: wavenet_vocoder's gate_channels=128, the size issue 4's reference figures fit
    b.guarded("wavenet", "wavenet_vocoder generation, gate 64", published(64), optional=True)
    for batch in (1, 16):
        b.guarded("wavenet", f"generation cached, batch {batch}, gate 64", cached(batch, gate=64), optional=True)
        if ("cached", batch, 64) in rates:
            b.guarded("wavenet", f"generation cached bf16, batch {batch}, gate 64", cached(batch, bf16=True, gate=64),
                      optional=True)

    def identical():
        torch.manual_seed(0)
        small = WaveNet(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, kernel_size=2,
                        levels=16).double()
        s1 = small.generate(60, 2, generator=torch.Generator().manual_seed(1), cached=False)
        s2 = small.generate(60, 2, generator=torch.Generator().manual_seed(1), cached=True)
        assert torch.equal(s1, s2), f"cached and naive WaveNet samples differ ({(s1 != s2).sum().item()} samples)"
        b.add("wavenet", "cached == naive", "6 layers, 2 stacks, 8/8/16, 16 levels; batch 2 x 60 steps, float64",
              "identical", "assert torch.equal, same generator seed")

    b.guarded("wavenet", "cached == naive", identical, optional=True)


# ------------------------------------------------------------------------------------------------ output
def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def header(b: Bench, started: datetime.datetime) -> list[str]:
    mode = "quick (--quick: shrunk, for checking the script)" if b.quick else "full"
    return [
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores ({platform.machine()}, {platform.system()}); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; Python {platform.python_version()}",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; run: {mode}; {time.perf_counter() - b.t0:,.0f} s in all; "
        f"1-minute load average {b.load_start} at the start, {load_average()} at the end "
        f"(above 0 means other work shared the CPU)",
        "- glibc malloc keeps freed memory for reuse (`pixelwave.train.reuse_freed_memory`, as `pixelwave "
        "train` does), in this process and in the children that run the versus-reference pairs",
        f"- Reference rates this run: matmul {b.matmul_gflops or float('nan'):,.1f} GFLOP/s, "
        f"conv2d {b.conv_gflops or float('nan'):,.1f} GFLOP/s; the matmul again at the end of the run: "
        f"{b.matmul_end:,.1f} GFLOP/s (a large difference means the machine's load changed during the run)",
    ]


def table(rows: list[Row]) -> list[str]:
    out = ["| Section | Benchmark | Setting | Result | Detail | Peak RSS (MiB) |",
           "|---|---|---|---|---|---:|"]
    for r in rows:
        out.append(f"| {r.section} | {r.name} | {r.setting} | **{r.result}** | {r.detail} | {r.peak} |")
    return out


def write_docs(lines: list[str], label: str) -> None:
    text = DOCS.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{DOCS} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    block = "\n".join([f"_{label}_", "", *lines])
    DOCS.write_text(f"{head}{START}\n{block}\n{END}{tail}")
    print(f"wrote the results block of {DOCS}", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shrink everything: the whole run takes < 2 minutes")
    p.add_argument("--only", default=None, metavar="SECTION[,SECTION]",
                   help=f"run these sections only, of {', '.join(SECTIONS)} (the reference rates always run)")
    p.add_argument("--budget-seconds", type=float, default=None,
                   help="training time per model in the budget section (default 120; 10 with --quick)")
    p.add_argument("--budget-clock", choices=["wall", "process"], default="wall",
                   help="what the budget counts: wall-clock seconds of training steps (default) or process CPU "
                        "seconds (all threads summed)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default os.cpu_count())")
    p.add_argument("--write-docs", action="store_true", help=f"replace the results block of {DOCS.relative_to(ROOT)}")
    p.add_argument("--note", default="", help="words added to the results block's label (with --write-docs)")
    p.add_argument("--pair", choices=PAIRS, help=argparse.SUPPRESS)  # internal: one versus-reference child
    p.add_argument("--matmul", type=float, default=0.0, help=argparse.SUPPRESS)  # the parent's matmul rate
    args = p.parse_args(argv)
    only = set(SECTIONS) if args.only is None else {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    pw_train.reuse_freed_memory()  # as `pixelwave train` does, so that steps do not re-fault their memory
    if args.pair:  # a child of versus_in_child: the rows as JSON lines on stdout
        import json

        b = Bench(args)
        b.matmul_gflops = args.matmul or None
        run_pair(b, args.pair)
        for row in b.rows:
            print(json.dumps(row.__dict__))
        return 0
    started = datetime.datetime.now(datetime.UTC)
    b = Bench(args)
    b.t0 = time.perf_counter()
    b.load_start = load_average()
    print(f"pixelwave benchmarks ({'quick' if args.quick else 'full'}): {', '.join(s for s in SECTIONS if s in only)}"
          f" -- progress on stderr, the table on stdout", file=sys.stderr)

    section_reference(b)
    if only & {"train", "budget"}:
        train_set = pixelwave.data.load("mnist-sample-binary", "train")
        test_set = pixelwave.data.load("mnist-sample-binary", "test")
    if "train" in only:
        section_train(b, train_set)
    if "budget" in only:
        section_budget(b, train_set, test_set)
    if "sample" in only:
        section_sample(b)
    if "wavenet" in only:
        section_wavenet(b)

    b.matmul_end = matmul_rate(b.q(5, 15))[0]
    lines = [*header(b, started), "", *table(b.rows)]
    print("\n".join(lines))
    if args.write_docs:
        kind = "quick run" if args.quick else "full run"
        note = f", {args.note}" if args.note else ""
        write_docs(lines, f"{kind}{note}, {started:%Y-%m-%d}, {cpu_model()} ({os.cpu_count()} cores)")
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
