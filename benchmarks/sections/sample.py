"""Image sampling: n = 16 images naive vs cached from untrained models (the cost does not depend on the weights),
and a float64 check that both samplers draw identical images from the same seed. PixelSNAIL's rows sit next to
the Gated PixelCNN's: its cached sampler adds a key/value cache to the conv caches."""

from __future__ import annotations

import torch

from pixelwave.models import GatedPixelCNN, PixelCNN, PixelSNAIL

from harness import Options, Rows, fmt_s, med, num_threads, peak_mib, reset_peak, timed


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


def run(opts: Options) -> Rows:
    rows = Rows("sample")
    n = 16
    # (label, what, constructor, channels, size, naive sub-pixels timed (quick, full), goal)
    cases = [
        ("Gated PixelCNN 10 x 64, k5", "binary 28x28",
         lambda: GatedPixelCNN(1, 2, hidden=64, layers=10, kernel_size=5), 1, (28, 28), (2, 12), "goal >= 30x"),
        ("PixelSNAIL 2 x (2 resnets + attention) x 64, k3", "binary 28x28",
         lambda: PixelSNAIL(1, 2, hidden=64, layers=2, kernel_size=3, resnets=2), 1, (28, 28), (2, 12), ""),
        ("PixelCNN 8 x 64, k3", "binary 28x28",
         lambda: PixelCNN(1, 2, hidden=64, layers=8, kernel_size=3), 1, (28, 28), (8, 48), ""),
        ("Gated PixelCNN 10 x 64, k5", "RGB 32x32, 256 levels",
         lambda: GatedPixelCNN(3, 256, hidden=64, layers=10, kernel_size=5), 3, (32, 32), (1, 6), ""),
        ("PixelSNAIL 2 x (2 resnets + attention) x 64, k3", "RGB 32x32, 256 levels",
         lambda: PixelSNAIL(3, 256, hidden=64, layers=2, kernel_size=3, resnets=2), 3, (32, 32), (1, 6), ""),
        ("PixelCNN 8 x 64, k3", "RGB 32x32, 256 levels",
         lambda: PixelCNN(3, 256, hidden=64, layers=8, kernel_size=3), 3, (32, 32), (4, 24), ""),
    ]
    for label, what, make, channels, size, ks, goal in cases:
        def case(label=label, what=what, make=make, channels=channels, size=size, ks=ks, goal=goal):
            torch.manual_seed(0)
            model = make().eval()
            subpixels = channels * size[0] * size[1]
            # --quick samples the first `rows` rows only: the conv samplers cost the same for every row (W pixel
            # passes, and for the Gated PixelCNN one vertical-stack pass), so the time scales exactly. PixelSNAIL's
            # pixel p attends over p cached keys: later rows cost more, so it always samples the whole image.
            image_rows = size[0] if isinstance(model, PixelSNAIL) else opts.q(4, size[0])
            part = (image_rows, size[1])
            scale = size[0] / image_rows

            def cached_time():
                return scale * med(timed(lambda: model.sample(n, part, generator=torch.Generator().manual_seed(0),
                                                              cached=True), opts.q(1, 3)))

            how = f"median of {opts.q(1, 3)}" + ("" if image_rows == size[0] else f"; extrapolated from "
                                                                                 f"{image_rows} of {size[0]} rows")
            extrapolated = " (extrapolated)" if image_rows < size[0] else ""
            reset_peak()
            cached_s = cached_time()
            cached_peak = peak_mib()
            k = opts.q(*ks)
            reset_peak()
            per = naive_per_subpixel(model, n, channels, size, k, opts.q(1, 3))
            naive_peak = peak_mib()
            naive_s = per * subpixels
            setting = f"n={n}, {what} (untrained weights)"
            rows.add(f"{label}: cached", setting,
                     f"{fmt_s(cached_s)}{extrapolated} ({n * subpixels / cached_s:,.0f} sub-pixels/s)",
                     how, cached_peak)
            rows.add(f"{label}: naive", setting, f"{fmt_s(naive_s)} (extrapolated)",
                     f"extrapolated from {k} sub-pixels x {subpixels:,}: {fmt_s(per)} per sub-pixel "
                     f"(one full forward pass each)", naive_peak)
            rows.add(f"{label}: cached speedup", setting, f"{naive_s / cached_s:,.0f}x",
                     f"naive / cached, side by side in this run{'; ' + goal if goal else ''}")
            threads = torch.get_num_threads()
            if threads > 1:  # small per-pixel ops: threading them can cost more than it gives
                with num_threads(1):
                    reset_peak()
                    one_thread = cached_time()
                rows.add(f"{label}: cached, 1 thread", setting,
                         f"{fmt_s(one_thread)}{extrapolated} ({n * subpixels / one_thread:,.0f} sub-pixels/s)",
                         f"{how}; {naive_s / one_thread:,.0f}x the naive sampler at {threads} threads; "
                         f"{cached_s / one_thread:.1f}x the cached sampler at {threads} threads", peak_mib())

        rows.guarded(f"{label} {what}", case)

    def identical():
        checks = [
            ("Gated PixelCNN 3 x 16, k5, binary 7x6", lambda: GatedPixelCNN(1, 2, hidden=16, layers=3,
                                                                            kernel_size=5), (7, 6)),
            ("Gated PixelCNN 3 x 12, k3, RGB 16 levels 5x5", lambda: GatedPixelCNN(3, 16, hidden=12, layers=3,
                                                                                   kernel_size=3), (5, 5)),
            ("PixelCNN 3 x 16, k3, binary 7x6", lambda: PixelCNN(1, 2, hidden=16, layers=3, kernel_size=3), (7, 6)),
            ("PixelCNN 2 x 12, k3, RGB 16 levels 5x5", lambda: PixelCNN(3, 16, hidden=12, layers=2, kernel_size=3),
             (5, 5)),
            ("PixelSNAIL 2 x 16, k3, binary 7x6", lambda: PixelSNAIL(1, 2, hidden=16, layers=2, kernel_size=3), (7, 6)),
            ("PixelSNAIL 2 x 12, k3, RGB 16 levels 5x5", lambda: PixelSNAIL(3, 16, hidden=12, layers=2, kernel_size=3),
             (5, 5)),
        ]
        total = sum(check_identical(make, size) for _, make, size in checks)
        rows.add("cached == naive", "; ".join(name for name, _, _ in checks) + "; n=3, float64",
                 "identical", f"assert torch.equal on {total:,} sub-pixels, same generator seed")

    rows.guarded("cached == naive", identical)
    return rows
