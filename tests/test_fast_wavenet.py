"""The fused WaveNet generation step (pixelwave.fast.wavenet_step, C++ built at first use) draws the same codes
as the PyTorch paths (cached and naive) from the same seed: in float64 exactly, with and without speaker and mel
conditioning, for the categorical, logistic-mixture and lpc-mixture outputs, on one thread, on two threads
splitting one utterance, and on two threads splitting a batch; its logits equal the teacher-forced parallel
pass. Where it cannot run, the PyTorch path does.

Float64 makes exact equality a guarantee: the paths sum in different orders, so the logits differ by ~1e-15
and a draw could only flip if u fell that close to a CDF boundary. In float32 they differ by ~1e-6; the
float32 test checks the logits to 1e-5 and that, on its seed, no draw is within 1e-4 of a boundary, so the
codes must be (and are) equal too.
"""

import os

import pytest
import torch

import pixelwave.fast._build as build
import pixelwave.fast.wavenet_step as ws
from pixelwave.distributions import categorical_sample
from pixelwave.models.wavenet import WaveNet

TINY = dict(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, levels=16)
CASES = [dict(), dict(num_speakers=3), dict(cond_channels=3, hop_length=4),
         dict(residual_channels=5, gate_channels=7, skip_channels=11, num_speakers=2),  # no width fills a vector
         dict(kernel_size=3, num_speakers=2, cond_channels=2, hop_length=5),
         dict(output="logistic_mixture", mixtures=3, num_speakers=2),
         dict(output="lpc_mixture", mixtures=3, num_speakers=2, cond_channels=4, hop_length=4, lpc_order=5,
              sample_rate=16000),
         dict(output="lpc_mixture", mixtures=3, num_speakers=2, cond_channels=4, hop_length=4, lpc_order=5,
              sample_rate=16000, prediction_inputs=True)]
LPC = CASES[-1]

needs_kernel = pytest.mark.skipif(not ws.available(), reason=f"fast kernel unavailable: {build.build_error(ws.SOURCE)}")


def tiny(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    args = dict(TINY)
    args.update(kw)
    return vocoder_like(WaveNet(**args)).to(dtype).eval()


def vocoder_like(m):
    """An lpc-mixture model with narrow logistics, as a trained vocoder has: the excitation stays small and the
    signal follows the LPC filter (the untrained model's broad mixture drives it to the rails, where the mu-law
    codes of the prediction and the excitation saturate and a wrong prediction would go unnoticed)."""
    if m.output.needs_prediction:
        with torch.no_grad():
            m.head.output_conv.bias[2 * m.config.mixtures:] -= 3.0  # the log-scales
    return m


def speech_mel(batch, bands, frames, seed=0):
    """Log-mel frames of a resonance that moves (an LPC worth predicting with): (batch, bands, frames) float32."""
    g = torch.Generator().manual_seed(seed)
    peak = bands * (0.3 + 0.2 * torch.sin(torch.arange(frames) / 5.0))  # (F,)
    band = torch.arange(bands, dtype=torch.float32)[:, None]
    return -(band - peak) ** 2 / 8 + 0.1 * torch.randn(batch, bands, frames, generator=g)


def conditions(m, batch, steps, seed=1):
    spk = torch.arange(batch) % m.num_speakers if m.num_speakers else None
    cond = None
    frames = -(-steps // m.hop_length) if m.cond_channels else 0
    if m.output.needs_prediction:  # its LPC from speech-like frames
        cond = speech_mel(batch, m.cond_channels, frames, seed).to(next(m.parameters()).dtype)
    elif m.cond_channels:
        cond = torch.randn(batch, m.cond_channels, frames, generator=torch.Generator()
                           .manual_seed(seed)).to(next(m.parameters()).dtype)
    return spk, cond


def prepared(m, steps, batch, spk, cond, seed):
    """What WaveNet.generate hands to a generator: speaker biases, upsampled mel, the uniforms."""
    u = torch.rand(batch, steps, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sb = m._speaker_bias(spk)
        up = None if cond is None else m.upsampler(cond)[..., :steps]
    return sb, up, u


def torch_loop(m, steps, sb, up, u, temperature=1.0, cond=None):
    """The PyTorch queue loop on what `prepared` gives; cond: the mel frames, for the lpc-mixture output."""
    sample, inputs = m._sampler(cond, steps, u.shape[0])  # lpc_mixture: its _LinearPrediction
    with torch.no_grad():
        return m._generate_cached(steps, sb, up, u, temperature, sample, inputs, cond)


# ------------------------------------------------------------------------------------------ identical samples
@needs_kernel
@pytest.mark.parametrize("kw", CASES)
def test_fast_equals_cached_and_naive(kw):
    m = tiny(**kw)
    steps = 2 * m.receptive_field + 7  # every queue wraps several times
    spk, cond = conditions(m, 3, steps)

    def gen(steps=steps, **k):
        return m.generate(steps, batch=3, speaker=spk, cond=None if cond is None else cond[..., : -(-steps // (
            m.hop_length or 1))], generator=torch.Generator().manual_seed(5), **k)

    fast = gen(backend="fused")
    assert fast.shape == (3, steps) and fast.dtype == torch.long
    assert torch.equal(fast, gen(backend="torch"))
    assert torch.equal(gen(backend="fused", temperature=0.7), gen(backend="torch", temperature=0.7))
    short = m.receptive_field + 15  # the naive pass is slow: past the first full window is enough
    assert torch.equal(gen(short, backend="fused"), gen(short, backend="naive"))
    assert not torch.equal(fast, m.generate(steps, batch=3, speaker=spk, cond=cond, backend="fused",
                                            generator=torch.Generator().manual_seed(6)))  # the seed matters


@needs_kernel
@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("batch,threads", [(1, 1), (1, 2), (3, 1), (3, 2), (5, 4)])
def test_every_thread_layout_matches_the_pytorch_path(kw, batch, threads):
    """One thread; batch 1 split over two threads (forced to stay split); a batch split over threads."""
    m = tiny(**kw)
    steps = m.receptive_field + 40
    spk, cond = conditions(m, batch, steps)
    sb, up, u = prepared(m, steps, batch, spk, cond, seed=7)
    reference = torch_loop(m, steps, sb, up, u, cond=cond)
    codes = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, cond=cond)
    assert torch.equal(codes, reference)
    if batch == 1 and threads == 2:
        assert (ws.last_run["threads"], ws.last_run["split_steps"], ws.last_run["single_steps"]) == (2, steps, 0)


@needs_kernel
@pytest.mark.parametrize("kw", [dict(), dict(num_speakers=2, cond_channels=3, hop_length=4), LPC])
def test_chunks_and_hand_overs_between_two_threads_and_one(kw, monkeypatch):
    """Many kernel calls (the queues and the lpc-mixture's decoded past carry over), and split mode handing over
    to one thread mid-chunk and taking over again at the next chunk."""
    monkeypatch.setattr(ws, "_MAX_CHUNK", 23)  # kernel calls of 23 steps; the mel blocks (64) straddle them
    m = tiny(**kw)
    steps = 2 * m.receptive_field + 31
    spk, cond = conditions(m, 1, steps)
    sb, up, u = prepared(m, steps, 1, spk, cond, seed=9)
    reference = torch_loop(m, steps, sb, up, u, cond=cond)
    assert torch.equal(ws.generate(m, steps, sb, up, u, 1.0, threads=2, patience=-1, split_limit=5, cond=cond),
                       reference)
    assert ws.last_run["split_steps"] > 0 and ws.last_run["single_steps"] > 0
    assert torch.equal(ws.generate(m, steps, sb, up, u, 1.0, threads=1, cond=cond), reference)


@needs_kernel
@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("threads", [1, 2])
def test_fast_logits_equal_the_parallel_pass(kw, threads):
    """Every step's logits equal the teacher-forced logits of the finished sequence (not just the draws)."""
    m = tiny(**kw)
    steps = m.receptive_field + 9
    spk, cond = conditions(m, 1 if threads == 2 else 2, steps)
    batch = 1 if threads == 2 else 2
    sb, up, u = prepared(m, steps, batch, spk, cond, seed=3)
    logits = torch.empty(steps, batch, m.output.channels(m.levels), dtype=torch.float64)
    a = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, logits_out=logits, cond=cond)
    with torch.no_grad():
        parallel = m.logits(a, spk, cond)  # (B, L, T); lpc_mixture: with the prediction inputs of `a`
    assert torch.allclose(logits.permute(1, 2, 0), parallel, atol=1e-10, rtol=0)


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_float32_logits_and_codes(threads):
    """float32, a mid-sized model with speaker and mel: the logits are within 1e-5 of PyTorch's on the same
    sequence (they differ by ~3e-7), so the CDFs differ by ~1e-8, and float32's own rounding of a 256-term
    CDF is < 1e-6. On this seed every u lies > 1e-5 from every CDF boundary, so the codes must equal the
    PyTorch path's, and do."""
    torch.manual_seed(0)
    m = WaveNet(layers=10, stacks=2, residual_channels=32, gate_channels=64, skip_channels=128, levels=256,
                num_speakers=2, cond_channels=5, hop_length=8).eval()
    steps = 400
    spk, cond = conditions(m, 1, steps)
    sb, up, u = prepared(m, steps, 1, spk, cond, seed=28)
    logits = torch.empty(steps, 1, m.levels)
    a = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, logits_out=logits)
    with torch.no_grad():
        parallel = m.logits(a, spk, cond)[0].t()  # (T, levels): PyTorch's float32 logits of the same sequence
        cached = m._generate_cached(steps, sb, up, u, 1.0)
    assert (logits[:, 0] - parallel).abs().max() < 1e-5
    cdf = torch.softmax(parallel.double(), -1).cumsum(-1)
    margin = (cdf - u[0, :, None].double()).abs().min(-1).values  # each u's distance to the nearest boundary
    assert margin.min() > 1e-5
    assert torch.equal(categorical_sample(parallel, u[0]), a[0])  # PyTorch's draws from its own logits
    assert torch.equal(a, cached)


@needs_kernel
@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_float32_logistic_mixture_draws(temperature):
    """float32, 256 levels, 10 logistics: the kernel's mixture parameters are within 1e-5 of PyTorch's on the
    same sequence, and its draws (the inverse CDF at the bin edges, summed over components) are what
    pixelwave.distributions draws from those parameters wherever u is not within 1e-5 of a bin boundary
    (float32 sums in another order); with no u that close, the codes equal the PyTorch cached path's."""
    from pixelwave.distributions import discretized_logistic_mixture_sample, discretized_logistic_mixture_table

    torch.manual_seed(0)
    m = WaveNet(layers=8, stacks=2, residual_channels=32, gate_channels=32, skip_channels=64, levels=256,
                output="logistic_mixture", mixtures=10, num_speakers=2).eval()
    steps = 500
    spk, _ = conditions(m, 2, steps)
    sb, up, u = prepared(m, steps, 2, spk, None, seed=5)
    params = torch.empty(steps, 2, 30)
    a = ws.generate(m, steps, sb, up, u, temperature, logits_out=params)
    with torch.no_grad():
        parallel = m.logits(a, spk, None)  # (B, 30, T)
    assert (params.permute(1, 2, 0) - parallel).abs().max() < 1e-5
    p = parallel.permute(0, 2, 1).reshape(-1, 30)  # (B*T, 30): one position each
    drawn = discretized_logistic_mixture_sample(p.double(), u.reshape(-1, 1).double(), 256, temperature)[:, 0]
    table = discretized_logistic_mixture_table(p.double(), drawn[:, None], 256, channel=0)  # (B*T, 256)
    cdf = torch.softmax(table / temperature, -1).cumsum(-1)
    clear = (cdf - u.reshape(-1, 1).double()).abs().min(-1).values > 1e-5  # u not at a bin boundary
    assert clear.float().mean() > 0.99
    assert torch.equal(drawn[clear], a.flatten()[clear])  # teacher-forced: each position on its own
    if clear.all():  # then free-running generation cannot have flipped a draw either
        with torch.no_grad():
            assert torch.equal(a, m._generate_cached(steps, sb, up, u, temperature))


@needs_kernel
@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_float32_lpc_mixture_draws(temperature):
    """float32, 256 levels, 10 logistics around a 16-tap prediction: teacher-forced on the kernel's own codes,
    its mixture parameters are within 1e-5 of PyTorch's (which predict from the same decoded past), and its
    draws are what PredictiveMixtureOutput draws from those parameters and predictions wherever u is not within
    1e-5 of a CDF boundary. There a float32 draw may flip (the kernel bisects over the codes' CDF, PyTorch sums
    log-masses), and a flip changes every later sample, so the free-running codes are compared with the PyTorch
    loop's only when no u is that close."""
    from pixelwave.distributions import interval_mixture_table

    torch.manual_seed(0)
    m = vocoder_like(WaveNet(layers=8, stacks=2, residual_channels=32, gate_channels=32, skip_channels=64,
                             levels=256, output="lpc_mixture", mixtures=10, lpc_order=16, num_speakers=2,
                             cond_channels=20, hop_length=40, sample_rate=16000, prediction_inputs=True)).eval()
    steps = 500
    spk, _ = conditions(m, 2, steps)
    cond = speech_mel(2, 20, -(-steps // 40))
    sb, up, u = prepared(m, steps, 2, spk, cond, seed=5)
    params = torch.empty(steps, 2, 30)
    a = ws.generate(m, steps, sb, up, u, temperature, logits_out=params, cond=cond)
    with torch.no_grad():
        parallel, shift = m._output_params(a, spk, cond)  # (B, 30, T), (B, T) float64
    assert (params.permute(1, 2, 0) - parallel).abs().max() < 1e-5
    p, shift = parallel.permute(0, 2, 1).reshape(-1, 30).double(), shift.reshape(-1)  # one position each
    drawn = m.output.sample(p, u.reshape(-1).double(), temperature, shift)
    lo, hi = m.output._intervals(m.output.edges[None, :-1], m.output.edges[None, 1:], shift[:, None])
    cdf = torch.softmax(interval_mixture_table(p, lo, hi) / temperature, -1).cumsum(-1)  # (B*T, 256)
    clear = (cdf - u.reshape(-1, 1).double()).abs().min(-1).values > 1e-5  # u not at a CDF boundary
    assert clear.float().mean() > 0.99
    assert torch.equal(drawn[clear], a.flatten()[clear])
    assert (drawn == a.flatten()).float().mean() > 0.99  # near a boundary too, most draws agree (here: all)
    assert len(drawn.unique()) > 20  # the draws are spread over the codes, not stuck at the tails
    if clear.all():
        assert torch.equal(a, torch_loop(m, steps, sb, up, u, temperature, cond))


@needs_kernel
def test_float32_batch_split_over_threads():
    """A batch split over threads: the same codes (row blocks of another size only reorder sums)."""
    torch.manual_seed(0)
    m = WaveNet(layers=4, stacks=1, residual_channels=16, gate_channels=32, skip_channels=32, levels=64).eval()
    sb, up, u = prepared(m, 300, 5, None, None, seed=2)
    one, two = torch.empty(300, 5, 64), torch.empty(300, 5, 64)
    a = ws.generate(m, 300, sb, up, u, 1.0, threads=1, logits_out=one)
    b = ws.generate(m, 300, sb, up, u, 1.0, threads=2, logits_out=two)
    assert torch.equal(a, b) and (one - two).abs().max() < 1e-5
    assert (ws.last_run["threads"], ws.last_run["split_steps"], ws.last_run["single_steps"]) == (2, 0, 300)


# ------------------------------------------------------------------------------------------ bf16
def mid_model(**kw):
    torch.manual_seed(0)
    args = dict(layers=10, stacks=2, residual_channels=32, gate_channels=64, skip_channels=128, levels=256)
    args.update(kw)
    return WaveNet(**args).eval()


def bf16_logits(m, steps, batch, threads, seed=11):
    """bf16 generation's codes, its logits and the float32 parallel pass's logits of the same sequence."""
    spk, cond = conditions(m, batch, steps)
    sb, up, u = prepared(m, steps, batch, spk, cond, seed=seed)
    logits = torch.empty(steps, batch, m.levels)
    codes = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, logits_out=logits, bf16=True)
    with torch.no_grad():
        parallel = m.logits(codes, spk, cond).permute(2, 0, 1)  # (T, B, levels)
    return codes, logits, parallel


@needs_kernel
@pytest.mark.parametrize("batch,threads,mels", [(1, 1, 6), (1, 2, 5), (5, 2, 6), (9, 1, 5)])
def test_bf16_logits_follow_the_float32_model_to_bfloat16_precision(batch, threads, mels):
    """bf16 generation, teacher-forced: every step's log-probabilities are within bfloat16's reach of the
    float32 model's on the same sequence (bfloat16 keeps 8 significant bits: ~0.4% per weight), and
    measurably not equal to them (the weights really are rounded; tests/test_fast_isa.py checks the rounding
    itself). Batch 9 on one thread runs the 8-row and 1-row microkernels; batch 1 on two threads the split
    layout; even and odd mel band counts."""
    m = mid_model(num_speakers=2, cond_channels=mels, hop_length=8)
    codes, logits, parallel = bf16_logits(m, m.receptive_field + 60, batch, threads)
    err = (logits.log_softmax(-1) - parallel.log_softmax(-1)).abs()
    assert err.max() < 0.05, float(err.max())
    assert err.mean() > 1e-5, float(err.mean())  # float32 products would agree to ~1e-7
    if batch == 1 and threads == 2:
        assert ws.last_run["split_steps"] == codes.shape[1]


@needs_kernel
def test_bf16_with_the_mixture_output_and_odd_gate_halves():
    """bf16 with the logistic-mixture output; gate 6 (halves of 3 units: not pairs) runs on one thread."""
    m = mid_model(gate_channels=6, output="logistic_mixture", mixtures=4)
    steps = m.receptive_field + 40
    sb, up, u = prepared(m, steps, 1, None, None, seed=4)
    params = torch.empty(steps, 1, 12)
    codes = ws.generate(m, steps, sb, up, u, 1.0, threads=2, logits_out=params, bf16=True)
    assert ws.last_run["threads"] == 1
    with torch.no_grad():
        parallel = m.logits(codes, None, None).permute(2, 0, 1)  # (T, 1, 12)
    err = (params - parallel).abs()
    assert 1e-6 < err.max() < 0.05, float(err.max())


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
def test_bf16_with_the_lpc_mixture_output(threads):
    """bf16 products with the lpc-mixture output (its prediction stays float64, its draw float32): teacher-forced,
    the mixture parameters follow the float32 model's to bfloat16's precision; generate(weights="bf16") runs."""
    m = vocoder_like(mid_model(output="lpc_mixture", mixtures=4, lpc_order=8, cond_channels=6, hop_length=8,
                               sample_rate=16000))
    steps = m.receptive_field + 40
    cond = speech_mel(1, 6, -(-steps // 8))
    sb, up, u = prepared(m, steps, 1, None, cond, seed=4)
    params = torch.empty(steps, 1, 12)
    codes = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, logits_out=params, bf16=True,
                        cond=cond)
    with torch.no_grad():
        parallel = m.logits(codes, None, cond).permute(2, 0, 1)  # (T, 1, 12)
    err = (params - parallel).abs()
    assert 1e-6 < err.max() < 0.05, float(err.max())
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    # batch 2: rows per thread, reproducible (batch 1 may hand over from two threads to one at any step on a busy
    # machine, and the two sum the residuals in another order)
    cond = speech_mel(2, 6, 38)  # 300 samples
    a = m.generate(300, batch=2, cond=cond, generator=g(), weights="bf16")
    assert a.shape == (2, 300) and torch.equal(a, m.generate(300, batch=2, cond=cond, generator=g(), weights="bf16"))


@needs_kernel
def test_bf16_generation_is_reproducible_and_draws_from_its_own_logits():
    m = mid_model()
    a, logits, _ = bf16_logits(m, 300, 2, 1)
    b, _, _ = bf16_logits(m, 300, 2, 1)
    assert torch.equal(a, b)
    u = prepared(m, 300, 2, None, None, seed=11)[2]
    assert torch.equal(categorical_sample(logits.transpose(0, 1), u), a)


@needs_kernel
def test_bf16_through_generate_and_its_errors():
    m = mid_model(layers=4, stacks=1)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    a = m.generate(500, batch=2, generator=g(), weights="bf16")
    assert a.shape == (2, 500) and torch.equal(a, m.generate(500, batch=2, generator=g(), weights="bf16"))
    assert not torch.equal(a, m.generate(500, batch=2, generator=g()))  # rounding flips some draws, then all
    with pytest.raises(ValueError, match="cached=True"):
        m.generate(5, bf16=True, cached=False)
    with pytest.raises(ValueError, match="cached=True"):
        m.generate(5, bf16=True, fast=False)
    with pytest.raises(ValueError, match="float32 model"):
        tiny().generate(5, weights="bf16")
    with pytest.raises(ValueError, match="even channel counts; residual_channels"):
        mid_model(layers=2, residual_channels=7).generate(5, weights="bf16")


# ------------------------------------------------------------------------------------------ int8
@needs_kernel
def test_int8_through_generate_and_its_errors():
    """weights="int8" runs through WaveNet.generate in every layout (batch 2 on rows, batch 1 split), is
    reproducible, and is not float32 (the formats' arithmetic against a rounded reference: test_fast_isa.py)."""
    m = mid_model(layers=4, stacks=1, num_speakers=2)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    a = m.generate(500, batch=2, speaker=1, generator=g(), weights="int8")
    assert a.shape == (2, 500) and torch.equal(a, m.generate(500, batch=2, speaker=1, generator=g(), weights="int8"))
    assert m.generate(300, speaker=0, generator=g(), weights="int8", backend="fused").shape == (1, 300)
    sb, up, u = prepared(m, 100, 1, torch.tensor([0]), None, seed=1)
    logits = {fmt: torch.empty(100, 1, m.levels) for fmt in ("int8", "float32")}
    for fmt, out in logits.items():
        ws.generate(m, 100, sb, up, u, 1.0, logits_out=out, weights=fmt)
    assert 1e-6 < (logits["int8"] - logits["float32"]).abs().max() < 0.05  # rounded weights, not float32's
    with pytest.raises(ValueError, match="float32 model"):
        tiny().generate(5, weights="int8")
    with pytest.raises(ValueError, match="weights must be one of float32, bf16, int8"):
        m.generate(5, weights="int4")
    with pytest.raises(ValueError, match="fused step's precision"):
        m.generate(5, weights="int8", backend="torch")


@needs_kernel
def test_weights_flag_on_the_cli(tmp_path, capsys):
    """--weights int8 on resynthesize (the shipped vocoder); --bf16 is --weights bf16; conflicting and
    --naive combinations are one-line errors."""
    from pixelwave.cli import main
    from pixelwave.data.audio import FLITE_SAMPLE

    args = ["resynthesize", "pretrained:vocoder", "--input", str(FLITE_SAMPLE / "slt" / "000.flac"), "--seconds",
            "0.05", "--force", "--out", str(tmp_path / "a.wav")]
    assert main([*args, "--weights", "int8"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("samples/s, int8)")
    assert main([*args, "--bf16"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("samples/s, bf16)")
    for extra, message in ((["--bf16", "--weights", "int8"], "cannot be combined with --weights int8"),
                           (["--weights", "int8", "--naive"], "--weights int8 runs in the fused CPU step")):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pixelwave: error:") and len(err.strip().splitlines()) == 1 and message in err, err


@needs_kernel
def test_the_kernel_names_its_vector_code_and_streams():
    """isa() is the compile target's vector code; stream_rate() is a positive rate that falls as the buffer
    grows past the caches (the roofline's denominator)."""
    assert ws.isa() in ("avx512", "avx2", "avx", "neon", "sse", "generic")
    small, big = ws.stream_rate(64_000, 1, 0.05), ws.stream_rate(64_000_000, 1, 0.1)
    assert small > 0 and big > 0 and small > 10 * big


@needs_kernel
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_round_trip_times_the_cores_exchange():
    """round_trip() (split mode's other yardstick in the benchmark): nanoseconds for a cache line between two
    threads on two cores and back. With the process held to one CPU the two threads take turns on it, each wait
    running out of spins and yielding, so the same call takes far longer: it times the threads' exchange."""
    two = ws.round_trip(0.02)
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        one = ws.round_trip(0.02)
    finally:
        os.sched_setaffinity(0, cpus)
    assert 0 < two < 1e5 and one > 10 * two, (two, one)


@needs_kernel
def test_product_rate_times_a_batch_steps_products():
    """product_rate() (the batch rows' ceiling in the benchmark): samples/s of a step's products alone, for a batch
    on two threads or one row on one; None for batch 1 split over two threads (its bound is the roofline). It
    times the products: a network with eight times the layers (five times the multiply-adds) runs them at well
    under half the rate."""
    small = WaveNet(layers=4, stacks=2, residual_channels=32, gate_channels=32, skip_channels=64).float().eval()
    big = WaveNet(layers=32, stacks=2, residual_channels=32, gate_channels=32, skip_channels=64).float().eval()
    rate = {m: ws.product_rate(m.generation_weights(None, 4), threads=2, seconds=0.1) for m in (small, big)}
    assert rate[small] > 0 and rate[big] > 0 and rate[small] > 2 * rate[big]
    assert ws.product_rate(small.generation_weights(None, 1), threads=1, seconds=0.05) > 0
    assert ws.product_rate(small.generation_weights(None, 1), threads=2) is None


# ------------------------------------------------------------------------------------------ fallback
def test_no_fast_env_runs_the_pytorch_path(monkeypatch):
    m = tiny(num_speakers=2)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    expected = m.generate(50, speaker=1, generator=g(), backend="torch")
    monkeypatch.setenv("PIXELWAVE_NO_FAST", "1")
    assert not ws.available()
    called = []
    monkeypatch.setattr(m, "_generate_cached", lambda *a: called.append(1) or type(m)._generate_cached(m, *a))
    assert torch.equal(m.generate(50, speaker=1, generator=g()), expected)
    assert called  # the PyTorch cached path ran
    with pytest.raises(RuntimeError, match="PIXELWAVE_NO_FAST"):
        m.generate(5, speaker=1, backend="fused")


def test_without_a_compiler_it_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "_LOADED", {})
    monkeypatch.setattr(build, "_ERRORS", {})
    monkeypatch.setattr(build, "_compiler", lambda: None)
    monkeypatch.setattr(ws, "_lib_checked", {})
    monkeypatch.setenv("PIXELWAVE_CACHE", str(tmp_path))
    m = tiny()
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="no C.. compiler"):
        a = m.generate(40, generator=g())
    assert not ws.available() and "compiler" in ws.unsupported(m, torch.float64, torch.device("cpu"))
    assert torch.equal(a, m.generate(40, generator=g(), backend="torch"))
    with pytest.raises(RuntimeError, match="compiler"):
        m.generate(5, backend="fused")


def test_other_output_distributions_take_the_pytorch_path(monkeypatch):
    import pixelwave.models.wavenet as wavenet

    class Other(wavenet.CategoricalOutput):
        pass

    m = tiny()
    monkeypatch.setattr(m, "output", Other)
    assert "categorical" in ws.unsupported(m, torch.float64, torch.device("cpu"))
    assert ws.generate(m, 5, None, None, torch.rand(1, 5), 1.0) is None
    assert m.generate(5).shape == (1, 5)


@pytest.mark.skipif(build._compiler() is None, reason="no C++ compiler")
def test_builds_from_the_source_into_an_empty_cache(monkeypatch, tmp_path):
    """A fresh machine: the kernel compiles from the package's own source into the cache folder and loads."""
    monkeypatch.setattr(build, "_LOADED", {})
    monkeypatch.setattr(build, "_ERRORS", {})
    monkeypatch.setenv("PIXELWAVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))  # the fallback folder too
    assert not build.built(ws.SOURCE)  # what the CLI announces before compiling
    lib = build.load(ws.SOURCE)
    assert lib is not None and lib.pw_abi_version() == ws._ABI
    built = list((tmp_path / "cache").glob("wavenet_kernel-*.so"))
    assert len(built) == 1 and not list((tmp_path / "cache").glob(".*tmp"))
    monkeypatch.setattr(build, "_LOADED", {})
    assert build.built(ws.SOURCE)  # found on disk: a new process would not compile again


def test_python_m_pixelwave_fast_builds_ahead_or_says_why_not(monkeypatch, tmp_path, capsys):
    """`python -m pixelwave.fast` (run by `make` after installing): builds the kernel, or, without a compiler,
    says that the PyTorch path will run; neither is an error (exit 0)."""
    from pixelwave.fast.__main__ import main

    assert main() == 0
    out = capsys.readouterr()
    assert ("kernel ready" in out.out) is ws.available()
    monkeypatch.setattr(build, "_LOADED", {})
    monkeypatch.setattr(build, "_ERRORS", {})
    monkeypatch.setattr(build, "_compiler", lambda: None)
    monkeypatch.setattr(ws, "_lib_checked", {})
    monkeypatch.setenv("PIXELWAVE_CACHE", str(tmp_path))
    with pytest.warns(RuntimeWarning):
        assert main() == 0
    assert "PyTorch path" in capsys.readouterr().err


@needs_kernel
def test_backend_and_weights_keywords():
    """backend="fused" equals "torch"; weights="bf16" is bf16=True; the old keywords warn and do the same."""
    m = mid_model(layers=4, stacks=1)
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    fused = m.generate(200, batch=2, generator=g(), backend="fused")
    assert torch.equal(fused, m.generate(200, batch=2, generator=g(), backend="torch"))
    bf16 = m.generate(200, batch=2, generator=g(), weights="bf16")
    assert torch.equal(bf16, m.generate(200, batch=2, generator=g(), backend="fused", weights="bf16"))
    with pytest.warns(DeprecationWarning, match="bf16=True"):
        assert torch.equal(bf16, m.generate(200, batch=2, generator=g(), bf16=True))
    with pytest.warns(DeprecationWarning, match="fast=True"):
        assert torch.equal(fused, m.generate(200, batch=2, generator=g(), fast=True))
    with pytest.raises(ValueError, match="float32 model"):
        tiny().generate(5, weights="bf16")


def test_the_fused_binding_does_not_import_the_models():
    import ast
    from pathlib import Path

    for path in Path(build.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("pixelwave.models") for n in names), path
