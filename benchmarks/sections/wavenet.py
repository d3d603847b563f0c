"""WaveNet generation with the standard model (untrained): the published wavenet_vocoder's where it is installed,
ours cached in float32 and bf16 at batch 1 and 16, the naive sampler's steady state, and a float64 check that
cached and naive generation draw the same codes. The same again at gate 64 per half."""

from __future__ import annotations

import torch

from pixelwave.models import WaveNet

from harness import AUDIO_RATE, Options, Rows, fmt_s, med, num_threads, peak_mib, reset_peak, timed

REPORTED_WAVENET_GEN = 800.0  # samples/s, open PyTorch WaveNets, batch 1 (issue 4; not measured here)


def standard_wavenet(gate: int = 128, conditioned: bool = False) -> WaveNet:
    """The standard model (20 layers = 2 stacks x 10, residual 64, gate `gate`, skip 256, kernel 2, 256 levels),
    from seed 0; conditioned: 4 speakers and 80 mel bands at hop 256."""
    torch.manual_seed(0)
    cond = dict(num_speakers=4, cond_channels=80, hop_length=256) if conditioned else {}
    return WaveNet(layers=20, stacks=2, residual_channels=64, gate_channels=gate, skip_channels=256, kernel_size=2,
                   **cond)


def wavenet_size(gate: int = 128) -> str:
    return f"20 layers, 2 stacks, 64/{gate}/256, k2"


def naive_sample(model: WaveNet, batch: int):
    """One naive sample at steady state (t >= receptive field), as a function to time: the parallel pass over the
    last receptive_field inputs plus the draw, exactly what the naive sampler does per sample once the window is
    full. Uses the private WaveNet._network (the pass without the loss)."""
    seq = torch.full((batch, model.receptive_field), model.silence, dtype=torch.long)
    u = torch.rand(batch)

    @torch.no_grad()
    def one_sample():
        params = model._network(seq, None, None)[:, :, -1]  # (B, C_out) at the last position
        model.output.sample(params, u, 1.0)

    return one_sample


def run(opts: Options) -> Rows:
    rows = Rows("wavenet")
    try:
        models = {g: standard_wavenet(g).eval() for g in (128, 64)}
        model = models[128]
    except Exception as e:  # noqa: BLE001
        rows.add("WaveNet generation", "", "n/a", f"{type(e).__name__}: {e}"[:160])
        return rows
    settings = {128: f"{wavenet_size(128)}, 256 levels (untrained)",
                64: f"{wavenet_size(64)}, 256 levels (untrained; wavenet_vocoder's gate_channels=128)"}
    setting = settings[128]
    rates = {}

    def cached(batch, threads=None, bf16=False, gate=128):
        def run():
            steps = opts.q(300, 16_000 if batch == 1 else 4_000)  # one second of 16 kHz audio per stream at batch 1
            reset_peak()
            with num_threads(threads or torch.get_num_threads()):
                ts = timed(lambda: models[gate].generate(steps, batch, generator=torch.Generator().manual_seed(0),
                                                         weights="bf16" if bf16 else "float32"), opts.q(1, 3))
            rate = batch * steps / med(ts)
            rtf = f"{steps:,} steps, median of {len(ts)}; real-time factor {rate / AUDIO_RATE:.2f} at 16 kHz"
            if bf16:
                from pixelwave.fast import wavenet_step

                rates[("bf16", batch, gate)] = rate
                how = f"widened to float32 in registers, kernel {wavenet_step.isa()}"
                detail = f"{rtf}; bfloat16 weights ({how}); {rate / rates[('cached', batch, gate)]:.2f}x float32"
                if batch != 1 and ("bf16", 1, gate) in rates:
                    detail += f"; {rate / rates[('bf16', 1, gate)]:.1f}x the bf16 batch-1 aggregate"
                rows.add(f"generation cached bf16, batch {batch}", settings[gate], f"{rate:,.0f} samples/s", detail,
                         peak_mib())
                return
            if threads is not None:
                rows.add(f"generation cached, batch {batch}, {threads} thread", settings[gate],
                         f"{rate:,.0f} samples/s", f"{rtf}; {rate / rates[('cached', batch, gate)]:.1f}x the same at "
                         f"{torch.get_num_threads()} threads", peak_mib())
                return
            rates[("cached", batch, gate)] = rate
            detail = rtf
            if batch == 1:
                detail += "; goal >= 24,000 samples/s (1.5x real time)"
                if ("published", gate) in rates:
                    detail += f"; {rate / rates[('published', gate)]:,.0f}x wavenet_vocoder's incremental_forward"
            elif ("cached", 1, gate) in rates:
                detail += f"; {rate / rates[('cached', 1, gate)]:.1f}x the batch-1 aggregate (goal >= 8x)"
            rows.add(f"generation cached, batch {batch}", settings[gate], f"{rate:,.0f} samples/s", detail,
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
            steps = opts.q(50, 400)
            reset_peak()
            with torch.no_grad():
                ts = timed(lambda: net.incremental_forward(T=steps), opts.q(1, 3), warmup=1)
            rate = steps / med(ts)
            rates[("published", gate)] = rate
            rows.add(f"wavenet_vocoder {version} incremental_forward, batch 1", settings[gate],
                     f"{rate:,.0f} samples/s",
                     f"the published code's cached generation (weight norm folded by its make_generation_fast_; "
                     f"softmax, then a categorical draw), {steps:,} steps, median of {len(ts)}; issue 4 reports "
                     f"~{REPORTED_WAVENET_GEN:g} samples/s for open PyTorch WaveNets", peak_mib())
        return run

    def naive(batch):
        def run():
            reset_peak()
            ts = timed(naive_sample(model, batch), opts.q(2, 5) if batch == 1 else opts.q(1, 3), warmup=1)
            rate = batch / med(ts)
            rates[("naive", batch)] = rate
            detail = (f"steady state, extrapolated from {len(ts)} samples: one parallel pass over the "
                      f"{model.receptive_field:,}-sample receptive field each ({fmt_s(med(ts))})")
            rows.add(f"generation naive, batch {batch}", setting, f"{rate:,.1f} samples/s", detail, peak_mib())
            if ("cached", batch, 128) in rates:
                rows.add(f"cached speedup, batch {batch}", setting,
                         f"{rates[('cached', batch, 128)] / rate:,.0f}x", "cached / naive (steady state), this run")
        return run

    rows.guarded("wavenet_vocoder generation", published(128), optional=True)
    for batch in (1, 16):
        rows.guarded(f"generation cached, batch {batch}", cached(batch), optional=True)
        rows.guarded(f"generation naive, batch {batch}", naive(batch), optional=True)
        if torch.get_num_threads() > 1 and ("cached", batch, 128) in rates:
            rows.guarded(f"generation cached, batch {batch}, 1 thread", cached(batch, 1), optional=True)
        if ("cached", batch, 128) in rates:
            rows.guarded(f"generation cached bf16, batch {batch}", cached(batch, bf16=True), optional=True)
    # gate 64 per half: wavenet_vocoder's gate_channels=128, the size issue 4's reference figures fit
    rows.guarded("wavenet_vocoder generation, gate 64", published(64), optional=True)
    for batch in (1, 16):
        rows.guarded(f"generation cached, batch {batch}, gate 64", cached(batch, gate=64), optional=True)
        if ("cached", batch, 64) in rates:
            rows.guarded(f"generation cached bf16, batch {batch}, gate 64", cached(batch, bf16=True, gate=64),
                         optional=True)

    def identical():
        torch.manual_seed(0)
        small = WaveNet(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, kernel_size=2,
                        levels=16).double()
        s1 = small.generate(60, 2, generator=torch.Generator().manual_seed(1), cached=False)
        s2 = small.generate(60, 2, generator=torch.Generator().manual_seed(1), cached=True)
        assert torch.equal(s1, s2), f"cached and naive WaveNet samples differ ({(s1 != s2).sum().item()} samples)"
        rows.add("cached == naive", "6 layers, 2 stacks, 8/8/16, 16 levels; batch 2 x 60 steps, float64",
                 "identical", "assert torch.equal, same generator seed")

    rows.guarded("cached == naive", identical, optional=True)
    return rows
