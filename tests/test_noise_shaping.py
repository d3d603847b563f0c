"""benchmarks/noise_shaping.py: its weighting filter is the one it says, undone exactly (no recognizer needed)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import noise_shaping as ns  # noqa: E402

from pixelwave import lpc  # noqa: E402


def _coeffs(frames: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return lpc.coefficients(torch.randn(1, ns.N_MELS, frames, generator=g) * 2, ns.RATE, ns.ORDER)[0].numpy()


def test_weight_is_the_time_varying_fir_sample_by_sample():
    rng = np.random.default_rng(0)
    steps, gamma = 1100, 0.9  # 1100 / 200: frames 0..5, the last one half used
    coeffs = _coeffs(6, 0)
    x = rng.standard_normal(steps)
    frame = [min((t + ns.HOP // 2) // ns.HOP, len(coeffs) - 1) for t in range(steps)]
    naive = [x[t] + sum(coeffs[frame[t], k - 1] * gamma ** k * x[t - k] for k in range(1, ns.ORDER + 1) if t >= k)
             for t in range(steps)]
    np.testing.assert_allclose(ns.weight(x, coeffs, gamma), naive, rtol=0, atol=1e-12)
    assert not np.allclose(ns.weight(x, coeffs, gamma), x, atol=0.1)  # it filters


def test_unweight_undoes_weight_and_the_noise_reaches_the_output():
    rng = np.random.default_rng(1)
    coeffs = _coeffs(11, 1)
    x = rng.standard_normal(2000)
    for gamma in (0.5, 0.9):
        np.testing.assert_allclose(ns.unweight(ns.weight(x, coeffs, gamma), coeffs, gamma), x, atol=1e-9)
    # the coding alone (no noise) keeps a tone; code noise changes it
    t = np.arange(4000)
    tone = 0.3 * np.sin(2 * np.pi * 440 * t / ns.RATE)
    c = _coeffs(21, 2)
    quiet = ns.coded(tone, c, 0.85, 0.9, 0.0, np.random.default_rng(0))
    assert np.abs(quiet - tone).max() < 0.02
    noisy = ns.coded(tone, c, 0.85, 0.9, 3.0, np.random.default_rng(0))
    assert np.abs(noisy - tone).std() > 2 * np.abs(quiet - tone).std()
