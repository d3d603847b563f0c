"""WaveNet generation speed: naive vs PyTorch cached vs the fused C++ step in each weight format and build,
batch 1 and 16, with the roofline, side by side in one run.

    .venv/bin/python benchmarks/wavenet_generation.py            # ~1.5 min on an idle 2-core CPU (AVX-512: ~3)
    .venv/bin/python benchmarks/wavenet_generation.py --quick    # seconds: checks the script, rough figures
    .venv/bin/python benchmarks/wavenet_generation.py --json out.json
    .venv/bin/python benchmarks/wavenet_generation.py --kl       # the KL of each weight format, shipped models
    .venv/bin/python benchmarks/wavenet_generation.py --vocoder  # the lpc_mixture vocoder instead: ~1 min
    .venv/bin/python benchmarks/wavenet_generation.py --pairs 10 # batch 1, 16, 1 in turn: each triple's ratio

The standard model (20 layers = 2 stacks x 10, residual 64, gate 128, skip 256, kernel 2, 256 levels), float32,
untrained weights (speed does not depend on them). Each configuration runs `repeats` times, interleaved with the
others (so a change in the machine's load hits all of them alike), and the median is reported, with the
real-time factor at 16 kHz (samples/s / 16,000: > 1 is faster than real time), the 2048x2048 fp32 matmul rate
measured in the same run, and the load average, since these figures move with whatever else the machine runs.

naive: every sample runs the parallel pass over the last receptive_field = 2,047 inputs (its steady state; the
first 2,047 samples of an utterance are cheaper), timed as that pass. cached: WaveNet.generate(backend="torch"),
the PyTorch queue loop. fast FORMAT [BUILD]: WaveNet.generate(backend="fused", weights=FORMAT), the fused step
(pixelwave.fast.wavenet_step) with float32, bf16, fp16 or int8 weights (products and sums float32), as built for this
CPU (-march=native: its vector code, e.g. avx512) and, on an x86-64 CPU whose own build is not AVX2, also as the
AVX2 build (-march=x86-64-v3, wavenet_step.target): what an AVX2-only CPU of the same speed would run. At batch
1 it splits each sample over two threads while both get a core, else runs on one ("split share" says how many
steps ran split), and "fast/CPU-s" is its samples per CPU-second of its own threads: roughly its rate on a
machine to itself. Speaker + mel rows (batch 1): the conditioned standard model (4 speakers, 80 mel bands).

The roofline: at batch 1 every sample reads every weight once, so a step cannot beat the rate at which the
machine reads a buffer the size of its weights (both threads each reading its half, as the split step does:
wavenet_step.stream_rate, timed in the same run between the repeats); "of roofline" is each batch-1 fast row's
samples/s as a share of that limit for its format's bytes. A batch of 16 is bound by its multiply-adds instead:
its rows' "of roofline" cell gives its share of the rate of the same step's matrix products alone (no gates,
copies or draws; wavenet_step.product_rate, the same build, format and threads, timed between the repeats), and
the summary line the batch-16 / batch-1 ratio those products alone would allow. Split mode's other yardstick,
timed with the roofline: a cache line's round trip between two threads placed as split mode places its two
(wavenet_step.round_trip), the cost of each of the step's L + 2 exchanges; on a cloud VM it moves with where the
host puts the two vCPUs, and batch 1 with it (--pairs shows each triple's). Timing, the matmul and the
machine line come from benchmarks/harness.py, the model and the naive step from benchmarks/sections/wavenet.py,
as in benchmarks/run.py.

--vocoder: the LPCNet-style vocoder (`VOCODER`: 10 layers, 32/32/64, 80 mel bands at hop 200, output
"lpc_mixture" with 10 logistics around a 16-tap linear prediction) at batch 1 on one thread (torch's and the
fused step's), a 2-second clip (32,000 samples) from the log-mel frames of a flite recording, untrained
weights: the PyTorch queue loop vs the fused step, side by side and interleaved, medians of 3, each call's set-up
included (packing, the LPC coefficients, the upsampled mel). Rows beside them: the fused step at temperature
0.99, where it computes every code's mass (all 255 edges x 10 logistics) instead of bisecting over the codes
(temperature 1): what the bisection saves; bf16 weights; and the same network with the categorical output (what
the prediction and the interval mixture add to a step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import soundfile
import torch

from pixelwave.audio import features, log_mel
from pixelwave.data.audio import FLITE_SAMPLE
from pixelwave.fast import wavenet_step
from pixelwave.models import WaveNet
from pixelwave.models.wavenet.generation import WEIGHT_FORMATS

import harness
from sections.wavenet import naive_sample, standard_wavenet

MATMULS = 5  # 2048x2048 matmuls timed together per repeat
# The --vocoder model: the demo size with mel conditioning and the LPCNet-style output (docs/results.md's runs)
VOCODER = dict(layers=10, stacks=1, residual_channels=32, gate_channels=32, skip_channels=64, kernel_size=2,
               cond_channels=80, hop_length=200, output="lpc_mixture", mixtures=10, lpc_order=16, sample_rate=16000)


def _conditions(m: WaveNet, batch: int, steps: int):
    if m.cond_channels is None:
        return None, None
    mel = torch.randn(batch, m.cond_channels, -(-steps // m.hop_length), generator=torch.Generator().manual_seed(1))
    return torch.arange(batch) % m.num_speakers, mel


def _generate(m: WaveNet, batch: int, steps: int, fast: bool, weights: str = "float32", runs: list | None = None,
              march: str | None = None):
    """A generation to time; after each call of the fused step, its wavenet_step.last_run is added to `runs`.
    march: the fused step's build (wavenet_step.target), None this machine's (-march=native)."""
    spk, mel = _conditions(m, batch, steps)

    def run():
        with wavenet_step.target(march) if march else contextlib.nullcontext():
            m.generate(steps, batch=batch, speaker=spk, cond=mel, generator=torch.Generator().manual_seed(0),
                       backend="fused" if fast else "torch", weights=weights)
        if fast and runs is not None:
            runs.append(dict(wavenet_step.last_run))

    return run


def _fast_figures(run: dict, batch: int, steps: int) -> dict:
    """From one fused-step run's last_run: split share (batch 1 on two threads), samples per CPU-s, threads."""
    return {"split_share": run["split_steps"] / steps if run["threads"] == 2 and batch == 1 else None,
            "samples_per_cpu_s": batch * steps / run["cpu_s"] if run["cpu_s"] > 0 else None,
            "threads": run["threads"]}


def weight_bytes(m: WaveNet, weights: str) -> int:
    """The bytes of the matrices a batch-1 step reads once per sample in weight format `weights` (int8: its
    scales, and the output layer, which stays float32); the biases and the embedding row are noise beside them."""
    w = m.generation_weights(None, 1)
    mats = [w.conv_w, w.res_w, w.skip_w, w.h1_w]
    n = sum(t.numel() for t in mats if t is not None)
    if weights == "int8":
        return n + 4 * sum(t.shape[0] * (t.shape[1] if t.dim() > 2 else 1) for t in mats if t is not None) \
            + 4 * w.h2_w.numel()
    return wavenet_step.BYTES_PER_WEIGHT[weights] * (n + w.h2_w.numel())


def builds() -> list[tuple[str, str | None]]:
    """(label, march) of the fused step's builds to time: this machine's (-march=native), and on an x86-64 CPU
    that runs it, the AVX2 one (-march=x86-64-v3) when the native one is something else (an AVX-512 CPU)."""
    out = [(wavenet_step.isa() or "none", None)]
    if platform.machine() in ("x86_64", "AMD64") and out[0][0] != "avx2":
        with wavenet_step.target("x86-64-v3"):
            if wavenet_step.kernel() is not None and wavenet_step.isa() == "avx2" and _runs_avx2():
                out.append(("avx2 (x86-64-v3)", "x86-64-v3"))
    return out


def _runs_avx2() -> bool:
    flags = set(harness._cpuinfo().get("flags", "").split())
    return {"avx2", "fma", "bmi2", "f16c", "movbe"} <= flags


def measure(quick: bool = False, repeats: int | None = None, batch_big: int = 16, conditioned: bool = True,
            formats: tuple[str, ...] = WEIGHT_FORMATS, log=print) -> dict:
    """Every figure in one run. Returns {"machine", "builds", "matmul_gflops", "stream", "load_before",
    "load_after", "rows"}, rows being dicts with path, build, weights, batch, samples_per_s (median), rtf_16k,
    and for the fast path split_share, samples_per_cpu_s, threads and (batch 1) pct_of_stream_limit, (batch
    `batch_big`) products_per_s and pct_of_products. stream: {format: {"bytes", "passes_per_s"}}: the roofline
    (every weight read once per sample at batch 1, both threads each reading its half, as the split step does);
    products_per_s: the ceiling of the batch (its step's matrix products alone, wavenet_step.product_rate, timed
    between the repeats). quick: a few hundred steps per run, 1 repeat."""
    repeats = repeats or (1 if quick else 3)
    load_before = os.getloadavg()
    m = standard_wavenet().eval()
    mc = standard_wavenet(conditioned=True).eval() if conditioned else None
    fast_ok = wavenet_step.unsupported(m, torch.float32, torch.device("cpu")) is None
    s1, s16 = (400, 100) if quick else (16_000, 4_000)  # fast: 1 s of audio at batch 1, 4 s worth at 16
    c1, c16 = (100, 25) if quick else (1_500, 300)  # the PyTorch loop: ~1 s each
    # (path, batch) -> (steps, function to time, the fused step's last_run after each call or None, row info)
    configs = {("naive", 1): (1, naive_sample(m, 1), None, {}),
               ("naive", batch_big): (1, naive_sample(m, batch_big), None, {}),
               ("cached", 1): (c1, _generate(m, 1, c1, fast=False), None, {}),
               ("cached", batch_big): (c16, _generate(m, batch_big, c16, fast=False), None, {})}
    build_list = builds() if fast_ok else []
    if fast_ok:
        for label, march in build_list:
            for fmt in formats:
                if m.fused_unsupported(fmt) is not None:
                    continue
                for model, cond in [(m, False)] + ([(mc, True)] if mc is not None else []):
                    path = f"fast {fmt}{', speaker + mel' if cond else ''} [{label}]"
                    for batch, steps in ((1, s1),) + (() if cond else ((batch_big, s16),)):  # speaker + mel: the
                        # goal is its cost at batch 1
                        runs = []
                        configs[(path, batch)] = (steps, _generate(model, batch, steps, True, fmt, runs, march), runs,
                                                  {"build": label, "weights": fmt, "conditioned": cond})
                    _generate(model, 1, 20, True, fmt, None, march)()  # warm-up: builds the kernel (first use)
    else:
        log(f"fast path unavailable: {wavenet_step.unsupported(m, torch.float32, torch.device('cpu'))}")
    matmul, matmul_flops = harness.matmul_call()
    matmul()
    fns = {key: fn for key, (_, fn, _, _) in configs.items()}
    # 5 matmuls per repeat, between the others: the machine's rate over the same stretch of time
    fns["matmul"] = lambda: [matmul() for _ in range(MATMULS)]
    times = {key: [] for key in fns}
    stream = {fmt: {"bytes": weight_bytes(m, fmt), "passes_per_s": []} for fmt in formats} if fast_ok else {}
    round_trips = []
    # the ceiling of the batch rows: each build and format's step with its products alone (batch_big rows)
    ceiling = {(info["build"], info["weights"]): [] for (path, batch), (_, _, runs, info) in configs.items()
               if runs is not None and batch == batch_big}
    marches = dict(build_list)
    for rep in range(repeats):  # one repeat at a time, to log progress; interleaved within it
        for key, ts in harness.interleaved(fns, 0, 1).items():
            times[key] += ts
        for fig in stream.values():  # the roofline, in the same stretch of time
            fig["passes_per_s"].append(wavenet_step.stream_rate(fig["bytes"], 2, 0.1 if quick else 0.5))
        if fast_ok:
            round_trips.append(wavenet_step.round_trip(0.02 if quick else 0.1))
        for (label, fmt), rates in ceiling.items():
            with wavenet_step.target(marches[label]) if marches[label] else contextlib.nullcontext():
                rates.append(wavenet_step.product_rate(m.generation_weights(None, batch_big, fmt),
                                                       seconds=0.05 if quick else 0.3))
        log(f"  repeat {rep + 1}/{repeats} done")
    for fig in stream.values():
        fig["passes_per_s"] = statistics.median(fig["passes_per_s"])
    ceiling = {key: statistics.median(rates) if None not in rates else None for key, rates in ceiling.items()}
    rows = []
    for (path, batch), (steps, _, runs, info) in configs.items():
        row = {"path": path, "batch": batch, **info,
               "samples_per_s": batch * steps / harness.med(times[(path, batch)])}
        if runs is not None:
            figures = [_fast_figures(run, batch, steps) for run in runs]
            for key in figures[0]:
                vals = [f[key] for f in figures if f[key] is not None]
                row[key] = statistics.median(vals) if vals else None
            if batch == 1:
                row["pct_of_stream_limit"] = 100 * row["samples_per_s"] / stream[info["weights"]]["passes_per_s"]
            elif ceiling.get((info["build"], info["weights"])):
                row["products_per_s"] = ceiling[(info["build"], info["weights"])]
                row["pct_of_products"] = 100 * row["samples_per_s"] / row["products_per_s"]
        row["rtf_16k"] = row["samples_per_s"] / harness.AUDIO_RATE
        rows.append(row)
    return {"machine": harness.machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "builds": [label for label, _ in build_list],
            "matmul_gflops": MATMULS * matmul_flops / harness.med(times["matmul"]) / 1e9, "stream": stream,
            "round_trip_ns": [ns for ns in round_trips if ns is not None],
            "load_before": load_before, "load_after": os.getloadavg(), "repeats": repeats, "rows": rows}


def measure_pairs(pairs: int, batch_big: int = 16, log=print) -> dict:
    """--pairs N: batch 1, batch `batch_big`, batch 1 again, float32, N times per build, each triple's ratio
    (batch_big aggregate / the mean of the two batch-1 rates beside it): how the ratio moves when batch 1 alone
    changes speed (a shared host's state), which the medians of `measure` hide, with the cores' round trip
    (wavenet_step.round_trip) before and after each triple: what moves batch 1. Returns {"machine", "date",
    "rows"}, a row per triple: build, batch1 (the two rates), big, ratio, round_trip_ns (before, after)."""
    m = standard_wavenet().eval()
    rows = []
    for label, march in builds():
        one, big = _generate(m, 1, 16_000, True, march=march), _generate(m, batch_big, 4_000, True, march=march)
        one(), big()  # warm-up: builds the kernel (first use)
        for i in range(pairs):
            before = wavenet_step.round_trip()
            rates = [n / harness.timed(fn, 1)[0] for n, fn in ((16_000, one), (batch_big * 4_000, big), (16_000, one))]
            trips = [before, wavenet_step.round_trip()]
            rows.append({"build": label, "batch1": [rates[0], rates[2]], "big": rates[1],
                         "ratio": 2 * rates[1] / (rates[0] + rates[2]), "round_trip_ns": trips})
            log(f"  {label} {i + 1}/{pairs}: batch 1 {rates[0]:,.0f}, batch {batch_big} {rates[1]:,.0f}, batch 1 "
                f"{rates[2]:,.0f}: {rows[-1]['ratio']:.2f}x; round trip "
                + " / ".join("-" if ns is None else f"{ns:.0f}" for ns in trips) + " ns")
    return {"machine": harness.machine(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "batch_big": batch_big,
            "rows": rows}


def trip_state(trips: list, least: float) -> str:
    """A triple's cores: "near" when both its round trips are within 1.5x the run's least, "far" when both are
    beyond, else "mixed"; "unknown" without the figures (no kernel)."""
    if not trips or None in trips:
        return "unknown"
    near = [ns <= 1.5 * least for ns in trips]
    return "near" if all(near) else "far" if not any(near) else "mixed"


def pairs_table(res: dict) -> str:
    lines = [f"WaveNet generation, standard model (untrained), float32: batch 1, batch {res['batch_big']}, batch 1, "
             f"in turn -- {res['machine']}", f"{res['date']}", ""]
    least = min((ns for r in res["rows"] for ns in r["round_trip_ns"] if ns is not None), default=0.0)
    cells = []
    for label in dict.fromkeys(r["build"] for r in res["rows"]):
        every = [r for r in res["rows"] if r["build"] == label]
        groups = {"": every}
        for state in ("near", "far", "mixed"):  # by the cores' state, where the triples were not all in one
            rs = [r for r in every if trip_state(r["round_trip_ns"], least) == state]
            if rs and len(rs) < len(every):
                groups[f", cores {state}"] = rs
        for suffix, rs in groups.items():
            ones = [x for r in rs for x in r["batch1"]]
            ratios = [r["ratio"] for r in rs]
            ns = [x for r in rs for x in r["round_trip_ns"] if x is not None]
            cells.append([label + suffix, str(len(rs)), f"{min(ns):.0f}-{max(ns):.0f}" if ns else "",
                          f"{min(ones):,.0f}-{max(ones):,.0f}",
                          f"{min(r['big'] for r in rs):,.0f}-{max(r['big'] for r in rs):,.0f}",
                          f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                          f"{sum(x >= 3 for x in ratios)} of {len(ratios)}"])
    lines += harness.markdown_table(["build", "triples", "round trip ns", "batch 1 samples/s",
                                     f"batch {res['batch_big']} samples/s", "ratio, median (range)", "ratio >= 3x"],
                                    cells, "lrrrrrr")
    lines += ["", f"round trip: a cache line between the two cores and back, before and after each triple; cores "
                  f"near / far: both within / beyond 1.5x the run's least ({least:.0f} ns), mixed: one of each"]
    return "\n".join(lines)


def vocoder_mel(steps: int) -> torch.Tensor:
    """(1, 80, ceil(steps / 200)) log-mel frames of real speech: flite's slt, first sentence, repeated to length."""
    wave, rate = soundfile.read(FLITE_SAMPLE / "slt" / "000.flac", dtype="float32")
    assert rate == VOCODER["sample_rate"], rate
    wave = torch.from_numpy(wave).repeat(-(-steps // len(wave)))[:steps]
    return log_mel(wave, rate, VOCODER["cond_channels"], VOCODER["hop_length"], 4 * VOCODER["hop_length"])[None]


def measure_vocoder(quick: bool = False, repeats: int | None = None, log=print) -> dict:
    """The --vocoder rows: {"machine", "date", "steps", "load_before", "load_after", "repeats", "rows"}, rows
    being dicts with path and samples_per_s (median). quick: 2,000 samples, 1 repeat."""
    repeats = repeats or (1 if quick else 3)
    steps = 2_000 if quick else 32_000  # 2 s at 16 kHz
    torch.manual_seed(0)
    m = WaveNet(**VOCODER).eval()
    torch.manual_seed(0)
    categorical = WaveNet(**{**VOCODER, "output": "categorical"}).eval()
    mel = vocoder_mel(steps)

    def gen(model, backend, temperature=1.0, weights="float32"):
        return lambda: model.generate(steps, cond=mel, generator=torch.Generator().manual_seed(0), backend=backend,
                                      temperature=temperature, weights=weights)

    fns = {"PyTorch loop": gen(m, "torch")}
    if m.fused_unsupported() is None:
        fns["fused"] = gen(m, "fused")
        fns["fused, every code's mass (temperature 0.99)"] = gen(m, "fused", 0.99)
        if m.fused_unsupported("bf16") is None:
            fns["fused, bf16 weights"] = gen(m, "fused", weights="bf16")
        fns["fused, categorical output (same network)"] = gen(categorical, "fused")
    else:
        log(f"fast path unavailable: {m.fused_unsupported()}")
    load_before = os.getloadavg()
    saved = os.environ.get("PIXELWAVE_FAST_THREADS")
    os.environ["PIXELWAVE_FAST_THREADS"] = "1"  # the fused step on one thread, as torch below
    try:
        with harness.num_threads(1):
            machine = harness.machine()
            if "fused" in fns:  # builds the kernel (first use)
                m.generate(200, cond=mel[..., :1], backend="fused")
            times = {key: [] for key in fns}
            for rep in range(repeats):
                for key, ts in harness.interleaved(fns, 0, 1).items():
                    times[key] += ts
                log(f"  repeat {rep + 1}/{repeats} done")
    finally:
        if saved is None:
            del os.environ["PIXELWAVE_FAST_THREADS"]
        else:
            os.environ["PIXELWAVE_FAST_THREADS"] = saved
    rows = [{"path": key, "samples_per_s": steps / harness.med(ts)} for key, ts in times.items()]
    return {"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "steps": steps,
            "load_before": load_before, "load_after": os.getloadavg(), "repeats": repeats, "rows": rows}


def _kl_bits(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in bits per position from log-probabilities (..., codes), float64."""
    logp, logq = logp.double().log_softmax(-1), logq.double().log_softmax(-1)  # exact normalisation of each
    return (logp.exp() * (logp - logq)).sum(-1) / math.log(2)


def _log_tables(m: WaveNet, params: torch.Tensor, shift: torch.Tensor | None, chunk: int = 4096) -> torch.Tensor:
    """Every code's log-probability (N, levels) from output parameters (N, C) (and, for "lpc_mixture", each
    position's prediction shift (N,)), as the model's sampler computes them."""
    if shift is None:
        return params.double().log_softmax(-1)
    from pixelwave.distributions import interval_mixture_table

    edges = m.output.edges
    out = []
    for i in range(0, params.shape[0], chunk):  # (chunk, levels, K) at a time
        lo, hi = m.output._intervals(edges[None, :-1], edges[None, 1:], shift[i: i + chunk, None])
        out.append(interval_mixture_table(params[i: i + chunk].double(), lo, hi))
    return torch.cat(out)


def measure_kl(quick: bool = False, log=print) -> dict:
    """The KL of each weight format's output distributions from the float32 model's, in bits per sample, on the shipped
    trained models: pretrained:vocoder and pretrained:vocoder-lpc (re-speaking the first recording of each of
    flite-sample's four voices from its log-mel frames) and pretrained:accents (one clip per accent). Each format
    generates with its own weights (at the model card's temperature, as the CLI does) and records every step's
    distribution; the float32 PyTorch pass, teacher-forced on that same sequence, gives the reference distributions;
    the mean of KL(float32 || format) over every sample is the figure. The fused float32 step's own KL shows the
    floor (the float32 rounding of two summation orders). Also: the model's mean entropy (bits per sample), for
    scale."""
    import pixelwave as pw
    from pixelwave import pretrained

    steps = 1_000 if quick else 16_000
    rows = []
    for name in ("vocoder", "vocoder-lpc", "accents"):
        m = pw.load(f"pretrained:{name}").float().eval()
        temperature = pretrained.temperature(f"pretrained:{name}")
        batch, cond, up, spk = 4, None, None, None
        if m.cond_channels:  # the four voices' first sentences, to one length
            waves = [soundfile.read(sorted((FLITE_SAMPLE / v).glob("*.flac"))[0], dtype="float32")[0] for v in
                     ("slt", "rms", "awb", "kal16")]
            n = min(steps, *(len(w) for w in waves))
            steps = n // m.hop_length * m.hop_length
            mel = json.loads((Path(pretrained.resolve(f"pretrained:{name}")) / "data.json").read_text())["mel"]
            pitch = bool(mel.pop("pitch", False))  # a --pitch vocoder's frames carry pitch rows too
            cond = torch.stack([features(torch.from_numpy(w[:steps]), m.config.sample_rate, **mel, pitch_rows=pitch)
                                for w in waves])
            with torch.no_grad():
                up = m._local(cond, steps)  # (B, C, steps): the upsampled frames (and pitch source rows)
        if m.num_speakers:
            spk = torch.arange(batch) % m.num_speakers
        with torch.no_grad():
            sb = m._speaker_bias(spk)
        u = torch.rand(batch, steps, generator=torch.Generator().manual_seed(0))
        for fmt in WEIGHT_FORMATS:
            if m.fused_unsupported(fmt) is not None:
                log(f"{name} {fmt}: {m.fused_unsupported(fmt)}")
                continue
            params = torch.empty(steps, batch, m.output.channels(m.levels))
            codes = wavenet_step.run(m.generation_weights(sb, batch, fmt, cond, steps), steps, up, u, temperature,
                                     logits_out=params)
            with torch.no_grad():
                if m.output.needs_prediction:
                    reference, shift = m._output_params(codes, spk, cond)  # (B, C, T), (B, T)
                    shift = shift.reshape(-1)
                else:
                    reference, shift = m.logits(codes, spk, cond), None
            ref = _log_tables(m, reference.permute(0, 2, 1).reshape(-1, reference.shape[1]), shift)
            got = _log_tables(m, params.permute(1, 0, 2).reshape(-1, params.shape[2]), shift)
            kl = _kl_bits(ref, got)
            entropy = -(ref.exp() * ref).sum(-1).mean() / math.log(2)
            rows.append({"model": name, "weights": fmt, "kl_bits": float(kl.mean()), "kl_p99_bits":
                         float(kl.quantile(0.99)) if kl.numel() <= 16_000_000 else None,
                         "entropy_bits": float(entropy), "samples": kl.numel(), "temperature": temperature})
            log(f"  {name} {fmt}: KL {rows[-1]['kl_bits']:.2e} bits/sample")
    return {"machine": harness.machine(), "isa": wavenet_step.isa(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "rows": rows}


def kl_table(res: dict) -> str:
    lines = [f"KL(float32 || format) of the output distributions, shipped models, teacher-forced on each format's "
             f"own samples -- kernel {res['isa']}; {res['machine']}; {res['date']}", ""]
    cells = [[r["model"], r["weights"], f"{r['kl_bits']:.2e}", f"{r['kl_p99_bits']:.2e}", f"{r['entropy_bits']:.2f}",
              f"{r['samples']:,}"] for r in res["rows"]]
    lines += harness.markdown_table(["model", "weights", "KL bits/sample (mean)", "99th percentile",
                                     "entropy bits/sample", "samples"], cells, "llrrrr")
    return "\n".join(lines)


def vocoder_table(res: dict) -> str:
    base = res["rows"][0]["samples_per_s"]
    lines = [f"WaveNet lpc_mixture vocoder (10 layers, 32/32/64, 80 mels at hop 200, 10 logistics, LPC order 16), "
             f"untrained, batch 1, one thread, {res['steps']:,} samples -- {res['machine']}",
             f"{res['date']}; load average {res['load_before'][0]:.2f} before, {res['load_after'][0]:.2f} after; "
             f"medians of {res['repeats']}", ""]
    cells = [[r["path"], f"{r['samples_per_s']:,.0f}", f"{r['samples_per_s'] / harness.AUDIO_RATE:.3g}",
              f"{r['samples_per_s'] / base:.1f}x" if i else ""] for i, r in enumerate(res["rows"])]
    lines += harness.markdown_table(["path", "samples/s", "x real time (16 kHz)", "vs PyTorch loop"], cells, "lrrr")
    return "\n".join(lines)


def table(res: dict) -> str:
    rate = {(r["path"], r["batch"]): r["samples_per_s"] for r in res["rows"]}
    lines = [f"WaveNet generation, standard model (untrained) -- {res['machine']}",
             f"{res['date']}; fused step builds: {', '.join(res['builds']) or 'none'}; 2048x2048 fp32 matmul: "
             f"{res['matmul_gflops']:.0f} GFLOP/s (median, same run); load average {res['load_before'][0]:.2f} "
             f"before, {res['load_after'][0]:.2f} after; medians of {res['repeats']}"]
    for fmt, fig in res["stream"].items():
        lines.append(f"roofline, {fmt} weights: reading {fig['bytes'] / 1e6:.2f} MB with both threads (each its "
                     f"half): {fig['passes_per_s']:,.0f} passes/s ({fig['bytes'] * fig['passes_per_s'] / 1e9:.0f} "
                     f"GB/s) = the batch-1 limit in samples/s")
    if res.get("round_trip_ns"):
        ns = res["round_trip_ns"]
        lines.append(f"the cores' round trip (each of split mode's exchanges waits on one), between the repeats: "
                     f"median {statistics.median(ns):.0f} ns ({min(ns):.0f}-{max(ns):.0f})")
    lines.append("")
    cells = []
    for r in res["rows"]:
        cached = rate.get(("cached", r["batch"]))
        vs = f"{r['samples_per_s'] / cached:.1f}x" if cached and r["path"] != "cached" else ""
        vs = vs if not vs.startswith("0.0") else f"{r['samples_per_s'] / cached:.1g}x"
        cpu = f"{r['samples_per_cpu_s']:,.0f}" if r.get("samples_per_cpu_s") else ""
        split = f"{r['split_share']:.0%}" if r.get("split_share") is not None else ""
        roof = f"{r['pct_of_stream_limit']:.0f}%" if r.get("pct_of_stream_limit") is not None else ""
        if r.get("pct_of_products") is not None:
            roof = f"{r['pct_of_products']:.0f}% of products ({r['products_per_s']:,.0f})"
        sps = f"{r['samples_per_s']:,.0f}" if r["samples_per_s"] >= 100 else f"{r['samples_per_s']:.2g}"
        cells.append([r["path"], str(r["batch"]), sps, f"{r['rtf_16k']:.3g}", vs, cpu, split, roof])
    lines += harness.markdown_table(["path", "batch", "samples/s", "x real time (16 kHz)", "vs cached", "fast/CPU-s",
                                     "split share", "of roofline"], cells, "lrrrrrrr")
    lines.append("")
    fast = [r for r in res["rows"] if r.get("weights") and r["batch"] == 1]
    for r in fast:
        big = [b for b in res["rows"] if b["path"] == r["path"] and b["batch"] != 1]
        line = r["path"]
        if big:
            line += f": batch {big[0]['batch']} aggregate / batch 1 {big[0]['samples_per_s'] / r['samples_per_s']:.1f}x"
            if big[0].get("products_per_s"):
                line += f" (products alone: at most {big[0]['products_per_s'] / r['samples_per_s']:.1f}x)"
        if r["conditioned"]:
            plain = rate.get((r["path"].replace(", speaker + mel", ""), 1))
            if plain:
                line += f"; speaker + mel costs {1 - r['samples_per_s'] / plain:.0%} at batch 1"
        elif r["weights"] != "float32":
            f32 = rate.get((r["path"].replace(f"fast {r['weights']}", "fast float32"), 1))
            if f32:
                line += f"; {r['samples_per_s'] / f32:.2f}x float32 at batch 1"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_common_flags(ap, threads_default="torch's own")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-conditioned", action="store_true", help="skip the speaker + mel rows")
    ap.add_argument("--vocoder", action="store_true", help="the lpc_mixture vocoder's rows instead (one thread)")
    ap.add_argument("--kl", action="store_true", help="the KL of each weight format from float32 on the shipped "
                                                       "models instead")
    ap.add_argument("--pairs", type=int, default=0, help="instead: batch 1, 16, 1 in turn, N times per build, "
                                                          "float32, and each triple's ratio")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.threads:  # else torch's default, as before the flag existed
        torch.set_num_threads(args.threads)
    if args.pairs:
        res = measure_pairs(args.pairs)
        text = pairs_table(res)
    elif args.kl:
        res = measure_kl(quick=args.quick)
        text = kl_table(res)
    elif args.vocoder:
        res = measure_vocoder(quick=args.quick, repeats=args.repeats)
        text = vocoder_table(res)
    else:
        res = measure(quick=args.quick, repeats=args.repeats, conditioned=not args.no_conditioned)
        text = table(res)
    print(text)
    harness.write_out(args.out, text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
