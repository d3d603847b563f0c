"""The fused WaveNet step of another revision against this tree's, on the same CPU in the same run: a
no-regression check for a kernel change (issue 15: "no regression on AVX-512").

    python benchmarks/kernel_ab.py --old cb5ae1e^             # the kernel before the portable one
    python benchmarks/kernel_ab.py --old REV --rounds 5 --cpus 2,3 --formats float32 bf16

`--old REV`'s `src/` is taken by `git archive` into a temporary folder. Each round runs, in this order and each in a
fresh process (so each loads its own build of its own source), batch-1 generation of the standard model (untrained
weights: speed does not depend on them) with the old and the new kernel in float32, both as built for this CPU
(-march=native) and, on x86-64, as the AVX2 build (-march=x86-64-v3 appended through PIXELWAVE_FAST_CXXFLAGS, the
same override for both trees), then the new kernel's other `--formats`. A process warms up on 4,000 samples and
times `--calls` generations of 32,000 samples each; the table gives each row's median over all rounds and calls,
the new/old ratio of each build, and the machine line of benchmarks/harness.py. The fused step splits each sample
over two threads while both get a core (`--cpus` pins every process to the CPUs given, through taskset, where
it exists).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import machine

ROOT = Path(__file__).resolve().parent.parent
STEPS = 32_000
CHILD = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from pixelwave.models.wavenet import WaveNet, WaveNetConfig
torch.manual_seed(0)
model = WaveNet(WaveNetConfig.standard()).eval()
weights, calls, steps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = {} if weights == "float32" else {"weights": weights}  # a kernel before the formats takes none
generator = torch.Generator().manual_seed(0)
model.generate(4000, backend="fused", generator=generator, **options)  # build, load, warm
rates = []
for _ in range(calls):
    start = time.perf_counter()
    model.generate(steps, backend="fused", generator=generator, **options)
    rates.append(steps / (time.perf_counter() - start))
print(json.dumps(rates))
"""


def rates(src: Path, weights: str, calls: int, cpus: str | None, flags: str | None) -> list[float]:
    env = dict(os.environ)
    env.pop("PIXELWAVE_NO_FAST", None)
    if flags:
        env["PIXELWAVE_FAST_CXXFLAGS"] = flags
    cmd = [sys.executable, "-c", CHILD, str(src), weights, str(calls), str(STEPS)]
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode:
        raise SystemExit(f"kernel_ab: {src} {weights} {flags or 'native'} failed: {run.stderr.strip()[-600:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the git revision whose kernel to compare with this tree's")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3, help="timed generations per process (default 3)")
    ap.add_argument("--cpus", help="pin every process to these CPUs (taskset -c), e.g. 2,3")
    ap.add_argument("--formats", nargs="*", default=["bf16", "int8"], help="the new kernel's other weights")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    builds = [("native", None)] + ([("x86-64-v3", "-march=x86-64-v3")] if platform.machine() == "x86_64" else [])
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old, "src"], capture_output=True)
        if archive.returncode:
            raise SystemExit(f"kernel_ab: git archive {args.old} failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        old, new = Path(tmp) / "src", ROOT / "src"
        rows = [(f"old float32 {b}", old, "float32", f) for b, f in builds]
        rows += [(f"new float32 {b}", new, "float32", f) for b, f in builds]
        rows += [(f"new {w} {b}", new, w, f) for w in args.formats for b, f in builds]
        results: dict[str, list[float]] = {name: [] for name, *_ in rows}
        for r in range(args.rounds):
            for name, src, weights, flags in rows:
                results[name] += rates(src, weights, args.calls, args.cpus, flags)
            print(f"round {r + 1}/{args.rounds}: "
                  + ", ".join(f"{n} {statistics.median(v):,.0f}" for n, v in results.items()), flush=True)
    median = {name: statistics.median(v) for name, v in results.items()}
    print(f"\n{machine()}; --old {args.old}; standard model, batch 1, {STEPS:,} samples per call, medians of "
          f"{args.rounds} x {args.calls}\n\n| kernel | build | samples/s | new / old |\n|---|---|---:|---:|")
    for name, value in median.items():
        who, weights, build = name.split()
        ratio = median[f"new float32 {build}"] / median[f"old float32 {build}"] if who == "new" \
            and weights == "float32" else None
        print(f"| {who} {weights} | {build} | {value:,.0f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "old": args.old, "samples_per_s": results,
                                               "median": median}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
