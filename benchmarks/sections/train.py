"""Training throughput: forward, -log p(x).mean(), backward and an Adam step on a fixed batch, in fp32 and under
bf16 autocast. Against the references at issue 4's sizes (each pair in a fresh process, ours and the reference
timed interleaved), then every image model at ~60k parameters."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from pixelwave.models import GatedPixelCNN

from harness import (
    Options,
    Row,
    Rows,
    binary_mnist,
    fmt_s,
    interleaved,
    med,
    peak_mib,
    progress,
    reset_peak,
    step_fn,
    vs_matmul,
)
from sections.wavenet import standard_wavenet, wavenet_size

RUN = Path(__file__).resolve().parent.parent / "run.py"  # runs one pair with --pair (see versus_in_child)

# Reported in issue 4 (measured by others on a 2-core machine with ~215 GFLOP/s matmul), not measured here.
REPORTED_MATMUL = 215.0
REPORTED_GATED_TRAIN = 14.0  # images/s, Gated PixelCNN 10 x 128, batch 16, binary 28x28, most-used PyTorch library
REPORTED_WAVENET_TRAIN = 19_800.0  # samples/s, "standard" WaveNet, batch 2 x 16,384: the published wavenet_vocoder
# measures this at its gate_channels=128 (64 per half, our gate_channels=64), not at our gate_channels=128

# wavenet: the standard model; wavenet-64: gate 64 per half, i.e. wavenet_vocoder's gate_channels=128, the model
# whose training speed issue 4 reports (its 19,800 samples/s matches the published code at that size, not at ours)
PAIRS = ("gated", "wavenet", "wavenet-64")

IMAGE_MODELS = ("pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelrnn_row", "pixelrnn_diag", "pixelvae")


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


def versus_reference(opts: Options, rows: Rows, label: str, make_ours, make_ref, inputs: dict, unit: str,
                     per_step: int, warmup: int, repeats: int, reported: float | None, *,
                     ref_name: str = "the reference", make_twin=None, compile_ours: bool = True) -> None:
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
    if compile_ours and not opts.quick:
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
                   f"{vs_matmul(achieved, opts.matmul_gflops)}; median of {repeats} interleaved steps")
        if prec == "fp32" and reported:
            detail += (f"; issue 4 reports ~{reported:,g} {unit} for the reference at ~{REPORTED_MATMUL:g} "
                       f"GFLOP/s matmul")
        setting = "fp32" if prec == "fp32" else "bf16 autocast (`--bf16`)"
        rows.add(label, setting, f"{ours:,.{digits}f} {unit}", detail, peak)
    if compile_s is not None:
        fp32, bf16 = rate["compiled fp32"], rate["compiled bf16"]
        rows.add(label, "torch.compile (`--compile`), fp32 and bf16",
                 f"{fp32:,.{digits}f} / {bf16:,.{digits}f} {unit}",
                 f"{fp32 / rate['ref fp32']:.2f}x / {bf16 / rate['ref fp32']:.2f}x {ref_name} in fp32, "
                 f"{fp32 / rate['ours fp32']:.2f}x / {bf16 / rate['ours bf16']:.2f}x uncompiled; compiling took "
                 f"{fmt_s(compile_s)} (torch's on-disk cache may hold earlier runs; not in the step times)", peak)


def run_pair(opts: Options, pair: str) -> Rows:
    """One comparison against a reference (in the child process of versus_in_child)."""
    from reference_models import PublishedWaveNet, ReferenceGatedPixelCNN, ReferenceWaveNet, published_wavenet_version

    rows = Rows("train")
    if pair == "gated":
        batch = 16
        x = binary_mnist("train").batch(torch.arange(batch))["x"]  # real digits
        versus_reference(opts, rows, "Gated PixelCNN 10 x 128, k3, batch 16, binary 28x28",
                         lambda: GatedPixelCNN(channels=1, levels=2, hidden=128, layers=10, kernel_size=3),
                         lambda: ReferenceGatedPixelCNN(n_gated=10, channels=128), {"x": x}, "images/s", batch,
                         opts.q(1, 2), opts.q(2, 8), REPORTED_GATED_TRAIN, ref_name="the reference twin")
        return rows
    gate = 128 if pair == "wavenet" else 64
    bsz, length = 2, opts.q(2048, 16384)
    a = torch.randint(0, 256, (bsz, length), generator=torch.Generator().manual_seed(0))
    published = published_wavenet_version()
    if published:
        ref, twin, ref_name = (lambda: PublishedWaveNet(gate=gate)), (lambda: ReferenceWaveNet(gate=gate)), \
            f"wavenet_vocoder {published}"
    else:  # the `bench` extra is not installed: the twin alone
        ref, twin, ref_name = (lambda: ReferenceWaveNet(gate=gate)), None, "the reference twin"
    label = f"WaveNet {wavenet_size(gate)}, batch {bsz} x {length:,}"
    if gate != 128:
        label += f" (wavenet_vocoder's gate_channels={2 * gate})"
    versus_reference(opts, rows, label, lambda: standard_wavenet(gate), ref, {"a": a}, "samples/s", bsz * length,
                     opts.q(1, 1), opts.q(2, 6), REPORTED_WAVENET_TRAIN if gate == 64 else None, ref_name=ref_name,
                     make_twin=twin, compile_ours=gate == 128)
    return rows


def versus_in_child(opts: Options, pair: str) -> list[Row]:
    """Run one comparison in a fresh Python process and take its rows. Inside it, ours and the twin still
    alternate step by step; the fresh process keeps earlier benchmarks' heap out of the timing. (Before
    reuse_freed_memory, the standard WaveNet's fp32 step measured anywhere from 0.55x to 1x the twin's depending
    on what ran before: its large temporaries were mmap'ed and page-faulted afresh or not, depending on glibc
    malloc's state.)"""
    cmd = [sys.executable, str(RUN), "--pair", pair, "--matmul", str(opts.matmul_gflops or 0.0)]
    if opts.quick:
        cmd.append("--quick")
    if opts.threads:
        cmd += ["--threads", str(opts.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    rows = [Row(**json.loads(line)) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not rows:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"child exited {done.returncode}: {tail}")
    for row in rows:
        progress(row)
    return rows


def run(opts: Options) -> Rows:
    from pixelwave.compare import matched_model

    rows = Rows("train")
    train_set = binary_mnist("train")
    batch = 16
    x = train_set.batch(torch.arange(batch))["x"]  # (16, 1, 28, 28) real binary MNIST digits

    # Against the references: the sizes issue 4 names, each pair in a fresh process (see versus_in_child).
    for pair in PAIRS:
        rows.guarded(f"{pair} vs reference", lambda pair=pair: rows.extend(versus_in_child(opts, pair)))

    # Every image model at ~60k parameters (the sizes `pixelwave compare` trains), fp32 and bf16.
    for name in IMAGE_MODELS:
        def case(name=name):
            torch.manual_seed(0)
            model = matched_model(name, train_set, 60_000)
            inputs = {"x": x}
            flops = step_flops(model, inputs)
            reset_peak()
            times = interleaved({p: step_fn(model, inputs, p == "bf16") for p in ("fp32", "bf16")},
                                opts.q(1, 2), opts.q(2, 8))
            fp32, bf16 = (batch / med(times[p]) for p in ("fp32", "bf16"))
            params = sum(p.numel() for p in model.parameters())
            rows.add(f"{name}, hidden {model.config.hidden}, {params / 1e3:.0f}k parameters",
                     "batch 16, binary 28x28, fp32", f"{fp32:,.1f} images/s",
                     f"bf16 autocast {bf16:,.1f} images/s ({bf16 / fp32:.2f}x); {flops / 1e9:,.2f} GFLOP/step; "
                     f"fp32 {vs_matmul(flops * fp32 / batch / 1e9, opts.matmul_gflops)}; "
                     f"median of {len(times['fp32'])} steps", peak_mib())

        rows.guarded(name, case)
    return rows
