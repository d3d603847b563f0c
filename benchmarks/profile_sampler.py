"""Where the time goes in a cached image sampler: torch.profiler op totals and cProfile's Python view.

    .venv/bin/python benchmarks/profile_sampler.py                       # Gated PixelCNN 10 x 64, n=16, binary 28x28
    .venv/bin/python benchmarks/profile_sampler.py --model pixelcnn --rows 8
    .venv/bin/python benchmarks/profile_sampler.py --channels 3 --levels 256 --size 32

Untrained weights (the cost does not depend on them). --rows R samples an R x W image instead of H x W: the cached
samplers' cost per row is the same for every row, so a few rows show the same profile faster.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

import torch
from torch.profiler import ProfilerActivity, profile

from pixelwave.models.gated_pixelcnn import GatedPixelCNN
from pixelwave.models.pixelcnn import PixelCNN


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["gated_pixelcnn", "pixelcnn"], default="gated_pixelcnn")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=None, help="default 10 (gated) / 8 (pixelcnn)")
    p.add_argument("--kernel-size", type=int, default=None, help="default 5 (gated) / 3 (pixelcnn)")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--rows", type=int, default=None, help="sample only this many rows (default: all)")
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    if args.model == "gated_pixelcnn":
        model = GatedPixelCNN(args.channels, args.levels, args.hidden, args.layers or 10, args.kernel_size or 5)
    else:
        model = PixelCNN(args.channels, args.levels, args.hidden, args.layers or 8, args.kernel_size or 3)
    model.eval()
    size = (args.rows or args.size, args.size)
    passes = args.channels * size[0] * size[1]

    def sample():
        return model.sample(args.n, size, generator=torch.Generator().manual_seed(0), cached=True)

    sample()  # warm-up
    t0 = time.perf_counter()
    sample()
    plain = time.perf_counter() - t0
    print(f"{args.model} {args.hidden}ch, n={args.n}, {args.channels}x{size[0]}x{size[1]}, levels {args.levels}: "
          f"cached sampler {plain:.2f} s, {passes} sub-pixel passes, {1e3 * plain / passes:.3f} ms per pass "
          f"({torch.get_num_threads()} threads)\n")

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        sample()
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events)
    print(f"torch.profiler: {calls:,} op calls ({calls / passes:.0f} per sub-pixel pass), "
          f"{total_self / 1e3:,.0f} ms self CPU in ops (profiler overhead inflates this)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))

    pr = cProfile.Profile()
    pr.enable()
    sample()
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(args.top)
    print("cProfile (tottime = time in the function itself, including the C ops it calls):")
    print(out.getvalue())


if __name__ == "__main__":
    main()
