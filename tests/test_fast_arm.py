"""The fused WaveNet step on ARM: the kernel cross-compiled for aarch64 (NEON: 4 float lanes, 32 registers) with
Debian's g++-aarch64-linux-gnu, inside a small driver (tests/fast_kernel_driver.cpp), and run under qemu-user's
qemu-aarch64: the vector code is NEON, the float64 codes equal the PyTorch generator's for the same uniforms
(one thread, two threads splitting a sample, a batch over two threads), and the float32, bf16, fp16 and int8 weight
formats equal the float64 reference with the weights rounded as each defines (tests/fast_reference.py).

`make arm-test` installs the two packages (as root, with apt-get) and runs this file; elsewhere these tests skip,
saying which tool is missing. The driver is built once per source and flags into the kernel cache folder.
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from fast_reference import generation_inputs, reference_logits, rounded

import pixelwave.fast._build as build
from pixelwave.fast import wavenet_step
from pixelwave.models.wavenet import WaveNet

CXX, QEMU, SYSROOT = "aarch64-linux-gnu-g++", "qemu-aarch64", "/usr/aarch64-linux-gnu"
FLAGS = ["-O2", "-std=gnu++17", "-ffp-contract=fast", "-pthread", "-march=armv8-a"]
HERE = Path(__file__).resolve().parent
DRIVER = HERE / "fast_kernel_driver.cpp"
KERNEL = HERE.parent / "src" / "pixelwave" / "fast" / "wavenet_kernel.cpp"

missing = [t for t in (CXX, QEMU) if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"no {' or '.join(missing)} (apt-get install "
                                                      f"g++-aarch64-linux-gnu qemu-user, or `make arm-test`)")


@pytest.fixture(scope="module")
def driver() -> Path:
    key = hashlib.sha256(DRIVER.read_bytes() + KERNEL.read_bytes() + " ".join(FLAGS).encode()).hexdigest()[:16]
    out = build.cache_dir() / f"wavenet_driver-aarch64-{key}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        proc = subprocess.run([CXX, *FLAGS, str(DRIVER), "-o", str(tmp)], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        tmp.replace(out)
    return out


def run_arm(driver: Path, tmp_path: Path, w, steps: int, up, u, threads: int):
    """The codes (B, steps), logits (steps, B, C), statistics and vector code of the aarch64 kernel on
    GenerationWeights w (categorical or logistic mixture), under qemu."""
    dtype = w.conv_w.dtype
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    L, R, G, S, C, B = w.layers, w.residual_channels, w.gate_channels, w.skip_channels, w.out_channels, w.batch
    cm = 0 if up is None else up.shape[1]
    fmt = wavenet_step.FORMATS[w.format]  # the kernel's code of the weight format
    header = [0 if dtype == torch.float32 else 1, fmt, L, R, G, S, C, w.kernel_size, B, threads, w.initial_code,
              w.levels, w.mixtures, cm, steps, -1]  # patience -1: two threads stay split (qemu is slow)
    arrays = [w.embedding[: w.levels], w.conv_w, w.res_w, w.res_b, w.skip_w, w.skip_b, w.h1_w, w.h1_b, w.h2_w,
              w.h2_b, w.init_states, w.static_bias]
    if cm:
        arrays += [w.cond_w, w.cond_b, up]
    arrays.append(u)
    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    with open(inp, "wb") as f:
        f.write(np.asarray(header, np.int64).tobytes() + np.asarray(w.dilations, np.int64).tobytes())
        for a in arrays:
            f.write(a.detach().to(dtype).contiguous().numpy().astype(np_dtype).tobytes())
    proc = subprocess.run([QEMU, "-L", SYSROOT, str(driver), str(inp), str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    raw = out.read_bytes()
    codes = np.frombuffer(raw, np.int64, B * steps)
    logits = np.frombuffer(raw, np_dtype, steps * B * C, offset=8 * B * steps)
    stats = np.frombuffer(raw, np.int64, 4, offset=8 * B * steps + logits.nbytes)
    return (torch.from_numpy(codes.copy()).view(B, steps), torch.from_numpy(logits.copy()).view(steps, B, C),
            stats.tolist(), proc.stdout.strip())


@pytest.mark.parametrize("output", [dict(), dict(output="logistic_mixture", mixtures=3)])
@pytest.mark.parametrize("batch,threads", [(1, 1), (1, 2), (3, 2)])
def test_neon_float64_codes_equal_the_pytorch_generators(driver, tmp_path, output, batch, threads):
    torch.manual_seed(0)
    m = WaveNet(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, levels=16,
                num_speakers=2, cond_channels=3, hop_length=4, **output).double().eval()
    steps = 2 * m.receptive_field + 7
    sb, up, u = generation_inputs(m, batch, steps)
    codes, _, stats, isa = run_arm(driver, tmp_path, m.generation_weights(sb, batch), steps, up, u, threads)
    assert isa == "neon"
    with torch.no_grad():
        assert torch.equal(codes, m._generate_cached(steps, sb, up, u, 1.0))
    if batch == 1 and threads == 2:
        assert stats[:3] == [2, steps, 0]  # split across the two threads throughout


@pytest.mark.parametrize("fmt", ["float32", "bf16", "int8", "fp16"])
@pytest.mark.parametrize("batch,threads", [(1, 2), (3, 1)])
def test_neon_weight_formats_equal_a_reference_rounded_the_same_way(driver, tmp_path, fmt, batch, threads):
    """As tests/test_fast_isa.py's test of the same name on x86: every logit within 1e-4 of the float64 pass
    with the format's rounded weights, and (bf16, int8) measurably off the unrounded model's."""
    torch.manual_seed(0)
    m = WaveNet(layers=6, stacks=2, residual_channels=16, gate_channels=32, skip_channels=32, levels=64,
                num_speakers=2, cond_channels=6, hop_length=8).eval()
    steps = m.receptive_field + 40
    sb, up, u = generation_inputs(m, batch, steps)
    w = m.generation_weights(sb, batch, fmt)
    codes, logits, _, _ = run_arm(driver, tmp_path, w, steps, up, u, threads)
    err = (logits - reference_logits(rounded(w, fmt) if fmt != "float32" else w, codes, up)).abs()
    assert err.max() < 1e-4, float(err.max())
    if fmt != "float32":  # fp16 moves the logits ~8x less than bf16 (3 more mantissa bits)
        off = (logits - reference_logits(w, codes, up)).abs()
        assert off.median() > (1e-5 if fmt == "fp16" else 1e-4), float(off.median())
        assert off.median() > 10 * err.median(), (float(off.median()), float(err.median()))
