"""The machine's yardsticks, measured first: a 2048 x 2048 fp32 matmul and a 64 -> 64 3x3 conv2d, in GFLOP/s."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import Options, Rows, fmt_s, matmul_gflops, med, peak_mib, reset_peak, timed


def run(opts: Options) -> tuple[Rows, float | None, float | None]:
    """The rows, and the matmul and conv2d rates (None where one failed)."""
    rows = Rows("reference")
    rates = {}

    def matmul():
        reset_peak()
        rates["matmul"], ts = matmul_gflops(opts.q(5, 15))
        rows.add("matmul fp32", "2048 x 2048 @ 2048 x 2048", f"{rates['matmul']:,.1f} GFLOP/s",
                 f"median of {len(ts)} (min {fmt_s(min(ts))}, max {fmt_s(max(ts))})", peak_mib())

    def conv():
        x, w = torch.randn(16, 64, 28, 28), torch.randn(64, 64, 3, 3)
        flops = 2 * 16 * 28 * 28 * 64 * 64 * 9
        reset_peak()
        ts = timed(lambda: F.conv2d(x, w, padding=1), opts.q(5, 20), warmup=2)
        rates["conv"] = flops / med(ts) / 1e9
        vs = f"; {100 * rates['conv'] / rates['matmul']:.0f}% of matmul" if rates.get("matmul") else ""
        rows.add("conv2d fp32", "16x64x28x28, 64->64 3x3, pad 1", f"{rates['conv']:,.1f} GFLOP/s",
                 f"{flops / 1e9:.2f} GFLOP per call, median of {len(ts)}{vs}", peak_mib())

    rows.guarded("matmul fp32", matmul)
    rows.guarded("conv2d fp32", conv)
    return rows, rates.get("matmul"), rates.get("conv")
