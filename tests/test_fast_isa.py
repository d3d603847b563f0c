"""The fused WaveNet step built for every x86-64 level this compiler targets (x86-64-v2: SSE, 4 float lanes;
-v3: AVX2 + FMA, 8 lanes in 16 registers; -v4: AVX-512, 16 lanes in 32), each run where this CPU can: the
vector code is the one the level asks for, the codes equal the PyTorch generator's for the same seed (float64
exactly; float32 on a seed whose draws are clear of every CDF boundary) in every thread layout, and the bf16,
fp16 and int8 weight formats equal a float64 reference whose weights are rounded the way the format defines. ARM NEON:
tests/test_fast_arm.py (cross-compiled, run under qemu-user).

The builds are cached like any other (the flags are part of the cache key), so only a first run compiles.
"""

import os
import platform
import subprocess

import pytest
import torch
from fast_reference import generation_inputs, reference_logits, rounded

import pixelwave.fast._build as build
import pixelwave.fast.wavenet_step as ws
from pixelwave.models.wavenet import WaveNet

# level -> (the kernel's pw_isa() there, the /proc/cpuinfo flags a CPU needs to run it)
LEVELS = {"x86-64-v2": ("sse", {"ssse3", "sse4_1", "sse4_2", "popcnt"}),
          "x86-64-v3": ("avx2", {"avx", "avx2", "fma", "bmi2", "f16c", "movbe"}),
          "x86-64-v4": ("avx512", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})}


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compiler_targets(level: str) -> bool:
    cxx = build._compiler()
    if cxx is None:
        return False
    proc = subprocess.run([cxx, f"-march={level}", "-x", "c++", "-E", "-", "-o", os.devnull], input="",
                          capture_output=True, text=True)
    return proc.returncode == 0


def why_not(level: str) -> str | None:
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"not an x86-64 machine ({platform.machine()})"
    if build._compiler() is None:
        return "no C++ compiler"
    if not compiler_targets(level):
        return f"the compiler does not target -march={level}"
    missing = LEVELS[level][1] - cpu_flags()
    if missing:
        return f"this CPU cannot run {level} code (no {', '.join(sorted(missing))})"
    return None


@pytest.fixture(scope="module")
def prebuilt():
    """Every level this machine can run, compiled at once (each build is one compiler process: ~25 s)."""
    from concurrent.futures import ThreadPoolExecutor

    runnable = [lv for lv in LEVELS if why_not(lv) is None]
    with ThreadPoolExecutor(len(runnable) or 1) as pool:
        list(pool.map(lambda lv: build.load(ws.SOURCE, (f"-march={lv}",)), runnable))


@pytest.fixture(scope="module", params=list(LEVELS))
def level(request, prebuilt):
    """The kernel built with -march=LEVEL (after -march=native, which it overrides) for the tests of one level."""
    why = why_not(request.param)
    if why:
        pytest.skip(why)
    with ws.target(request.param):
        assert ws.kernel() is not None, build.build_error(ws.SOURCE, (f"-march={request.param}",))
        yield request.param


def model(dtype=torch.float32, **kw):
    torch.manual_seed(0)
    args = dict(layers=10, stacks=2, residual_channels=32, gate_channels=64, skip_channels=128, levels=256,
                num_speakers=2, cond_channels=6, hop_length=8)
    args.update(kw)
    return WaveNet(**args).to(dtype).eval()


def test_the_vector_code_is_the_levels(level):
    assert ws.isa() == LEVELS[level][0]


@pytest.mark.parametrize("batch,threads", [(1, 1), (1, 2), (3, 2), (9, 2)])
@pytest.mark.parametrize("output", [dict(), dict(output="logistic_mixture", mixtures=3)])
def test_float64_codes_equal_the_pytorch_generators(level, batch, threads, output):
    """float64: the same codes as the PyTorch queue loop from the same uniforms; batch 1 on two threads stays
    split (patience -1) and hands over to one thread and back (split_limit) mid-run."""
    m = model(torch.float64, layers=6, residual_channels=8, gate_channels=8, skip_channels=16, levels=16,
              cond_channels=3, hop_length=4, **output)
    steps = 2 * m.receptive_field + 7
    sb, up, u = generation_inputs(m, batch, steps)
    with torch.no_grad():
        reference = m._generate_cached(steps, sb, up, u, 1.0)
    assert torch.equal(ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1), reference)
    if batch == 1 and threads == 2:
        assert ws.last_run["split_steps"] == steps
        assert torch.equal(ws.generate(m, steps, sb, up, u, 1.0, threads=2, patience=-1, split_limit=5), reference)
        assert ws.last_run["split_steps"] > 0 and ws.last_run["single_steps"] > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_codes_equal_the_pytorch_generators(level, threads):
    """float32: the logits within 1e-5 of the float64 teacher-forced pass's; on this seed no u lies within 1e-5
    of a CDF boundary, so the codes must equal the PyTorch loop's, and do."""
    m = model()
    steps = 300
    sb, up, u = generation_inputs(m, 1, steps, seed=31)
    logits = torch.empty(steps, 1, m.levels)
    a = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, logits_out=logits)
    exact = reference_logits(m.generation_weights(sb, 1), a, up)[:, 0]  # (T, levels)
    assert (logits[:, 0] - exact).abs().max() < 1e-5
    cdf = torch.softmax(exact, -1).cumsum(-1)
    assert (cdf - u[0, :, None].double()).abs().min(-1).values.min() > 1e-5
    with torch.no_grad():
        assert torch.equal(a, m._generate_cached(steps, sb, up, u, 1.0))


# ------------------------------------------------------------------------------------------ weight formats
@pytest.mark.parametrize("fmt", ["float32", "bf16", "int8", "fp16"])
@pytest.mark.parametrize("batch,threads", [(1, 1), (1, 2), (3, 2), (9, 2)])
def test_weight_formats_equal_a_reference_rounded_the_same_way(level, fmt, batch, threads):
    """Each format's logits, teacher-forced on its own codes, are the float64 reference's with the weights
    rounded as the format defines, to float32's rounding of the sums (every logit within 1e-4; they differ by
    ~1e-6), and are measurably not the unrounded model's (median > 1e-4): the rounding is real and is the
    defined one (inputs, products and sums float32)."""
    m = model()
    steps = m.receptive_field + 80
    sb, up, u = generation_inputs(m, batch, steps)
    logits = torch.empty(steps, batch, m.levels)
    if fmt == "fp16" and not ws.fp16_supported():  # x86-64-v2 has no F16C: refused, with the reason
        assert "F16C" in m.fused_unsupported("fp16")
        assert ws.generate(m, steps, sb, up, u, 1.0, threads=threads, weights=fmt) is None
        return
    codes = ws.generate(m, steps, sb, up, u, 1.0, threads=threads, patience=-1, logits_out=logits, weights=fmt)
    if batch == 1 and threads == 2:
        assert ws.last_run["split_steps"] == steps
    w = m.generation_weights(sb, batch)
    off = (logits - reference_logits(w, codes, up)).abs()
    if fmt == "float32":
        assert off.max() < 1e-4
        return
    err = (logits - reference_logits(rounded(w, fmt), codes, up)).abs()
    assert err.max() < 1e-4, float(err.max())
    # fp16 keeps 3 more mantissa bits than bf16: its logits move ~8x less, still far beyond float32's sums
    assert off.median() > (1e-5 if fmt == "fp16" else 1e-4), float(off.median())
    assert off.median() > 10 * err.median(), (float(off.median()), float(err.median()))
