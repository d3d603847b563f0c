"""pixelwave speed benchmarks: every figure side by side in one process, one markdown table.

    .venv/bin/python benchmarks/run.py                 # the full run (tens of minutes on a 2-core CPU)
    .venv/bin/python benchmarks/run.py --quick         # everything shrunk: < 2 minutes, for checking the script
    .venv/bin/python benchmarks/run.py --only sample   # one section (the reference rates always run)
    .venv/bin/python benchmarks/run.py --write-docs    # also replace the results block of docs/benchmarks.md

Sections, one module each in benchmarks/sections/ (docs/benchmarks.md says what every figure means):
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
import dataclasses
import datetime
import json
import os
import sys
import time

import torch

from pixelwave import runtime

import harness
from sections import SECTIONS, budget, reference, sample, train, wavenet

DOCS = harness.ROOT / "docs" / "benchmarks.md"
RUNS = {"train": train.run, "budget": budget.run, "sample": sample.run, "wavenet": wavenet.run}


def header(opts: harness.Options, started: datetime.datetime, seconds: float, load_start: str,
           conv_gflops: float | None, matmul_end: float) -> list[str]:
    mode = "quick (--quick: shrunk, for checking the script)" if opts.quick else "full"
    return [
        f"- Machine: {harness.machine()}",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; run: {mode}; {seconds:,.0f} s in all; "
        f"1-minute load average {load_start} at the start, {harness.load_average()} at the end "
        f"(above 0 means other work shared the CPU)",
        "- glibc malloc keeps freed memory for reuse (`pixelwave.runtime.reuse_freed_memory`, as `pixelwave "
        "train` does), in this process and in the children that run the versus-reference pairs",
        f"- Reference rates this run: matmul {opts.matmul_gflops or float('nan'):,.1f} GFLOP/s, "
        f"conv2d {conv_gflops or float('nan'):,.1f} GFLOP/s; the matmul again at the end of the run: "
        f"{matmul_end:,.1f} GFLOP/s (a large difference means the machine's load changed during the run)",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_flags(p, SECTIONS)
    p.add_argument("--budget-seconds", type=float, default=None,
                   help="training time per model in the budget section (default 120; 10 with --quick)")
    p.add_argument("--budget-clock", choices=["wall", "process"], default="wall",
                   help="what the budget counts: wall-clock seconds of training steps (default) or process CPU "
                        "seconds (all threads summed)")
    p.add_argument("--write-docs", action="store_true",
                   help=f"replace the results block of {DOCS.relative_to(harness.ROOT)}")
    p.add_argument("--note", default="", help="words added to the results block's label (with --write-docs)")
    p.add_argument("--pair", choices=train.PAIRS, help=argparse.SUPPRESS)  # internal: one versus-reference child
    p.add_argument("--matmul", type=float, default=0.0, help=argparse.SUPPRESS)  # the parent's matmul rate
    args = p.parse_args(argv)
    only = harness.parse_only(p, args.only, SECTIONS)  # the reference rates always run
    opts = harness.Options(quick=args.quick, threads=args.threads, budget_seconds=args.budget_seconds,
                           budget_clock=args.budget_clock, matmul_gflops=args.matmul or None)

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    runtime.reuse_freed_memory()  # as `pixelwave train` does, so that steps do not re-fault their memory
    if args.pair:  # a child of train.versus_in_child: the rows as JSON lines on stdout
        for row in train.run_pair(opts, args.pair):
            print(json.dumps(dataclasses.asdict(row)))
        return 0
    started = datetime.datetime.now(datetime.UTC)
    t0, load_start = time.perf_counter(), harness.load_average()
    print(f"pixelwave benchmarks ({'quick' if args.quick else 'full'}): {', '.join(only)}"
          f" -- progress on stderr, the table on stdout", file=sys.stderr)

    rows, matmul, conv = reference.run(opts)
    opts = dataclasses.replace(opts, matmul_gflops=matmul)
    for name in only:
        if name != "reference":
            rows += RUNS[name](opts)

    matmul_end = harness.matmul_gflops(opts.q(5, 15))[0]
    lines = [*header(opts, started, time.perf_counter() - t0, load_start, conv, matmul_end), "",
             *harness.rows_table(rows)]
    print("\n".join(lines))
    harness.write_out(args.out, "\n".join(lines))
    if args.write_docs:
        kind = "quick run" if args.quick else "full run"
        note = f", {args.note}" if args.note else ""
        harness.replace_block(DOCS, lines, f"{kind}{note}, {started:%Y-%m-%d}, {harness.cpu_model()} "
                                           f"({os.cpu_count()} cores)")
    return 1 if harness.failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
