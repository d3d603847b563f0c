"""Held-out bits/dim each image model reaches in a fixed training-time budget on mnist-sample-binary.

Own loop: Adam at a fixed lr 1e-3, batch 32, shuffled epochs, no warm-up / clipping / EMA; the clock counts the
training steps only. Then pixelwave.training.evaluate (float32): exact sum over the held-out images. The bf16 row
trains the same model from the same seed on the same batches under bf16 autocast: what the faster steps buy in
held-out bits/dim."""

from __future__ import annotations

import time

import torch

from pixelwave import training
from pixelwave.models import GatedPixelCNN, PixelCNN

from harness import Options, Rows, binary_mnist, fmt_s, peak_mib, reset_peak, train_step


def run(opts: Options) -> Rows:
    rows = Rows("budget")
    train_set, test_set = binary_mnist("train"), binary_mnist("test")
    seconds = opts.budget_seconds if opts.budget_seconds is not None else opts.q(10.0, 120.0)
    eval_batches = opts.q(1, None)  # quick: 50 of the 500 held-out images
    clock = time.perf_counter if opts.budget_clock == "wall" else time.process_time
    batch = 32

    def gated():
        return GatedPixelCNN(1, 2, hidden=64, layers=10, kernel_size=5)

    models = [("PixelCNN 8 x 64, k3", lambda: PixelCNN(1, 2, hidden=64, layers=8, kernel_size=3), False),
              ("Gated PixelCNN 10 x 64, k5", gated, False),
              ("Gated PixelCNN 10 x 64, k5, bf16 autocast", gated, True)]  # same seed, same batches
    for label, make, bf16 in models:
        def case(label=label, make=make, bf16=bf16):
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
                loss = train_step(model, opt, {"x": x}, bf16, dims=train_set.dims)  # loss in bits/dim
                spent += clock() - t0
                cpu += time.process_time() - c0
                steps += 1
            t0 = time.perf_counter()
            ev = training.evaluate(model, test_set, batch_size=50, max_batches=eval_batches)
            ev_s = time.perf_counter() - t0
            held = f"{ev['examples']} of {len(test_set)} held-out images"
            rows.add(label, f"{seconds:g} s ({opts.budget_clock} clock) of training, batch {batch}",
                     f"{ev['bits_per_dim']:.4f} bits/dim",
                     f"{steps} steps ({steps * batch / len(train_set):.2f} epochs), {cpu:,.0f} CPU-s; {held} "
                     f"(evaluation {fmt_s(ev_s)}); last train batch {loss.item():.4f}", peak_mib())

        rows.guarded(label, case)
    return rows
