"""benchmarks/vocoder_attribution.py: the hybrids it scores are what their names say (no recognizer needed)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import vocoder_attribution as va  # noqa: E402


def _band_energy(spec, lo, hi):
    m = (va.FREQS >= lo) & (va.FREQS < hi)
    return (np.abs(spec[m]) ** 2).sum(0)


def test_levels_are_the_targets_band_by_band_and_frame_by_frame():
    rng = np.random.default_rng(0)
    rec = np.convolve(rng.standard_normal(8000), [1, 0.9, 0.5], "same")  # coloured: bands differ from noise
    noise = rng.standard_normal(8000)
    r, g = va._spec(rec), va._spec(noise)
    fixed = va.with_levels(g, r, va.BANDS_24)
    for lo, hi in va.BANDS_24:
        if not ((va.FREQS >= lo) & (va.FREQS < hi)).any():
            continue  # a band narrower than the bins' spacing (100-120 Hz) holds no bin: nothing to scale
        np.testing.assert_allclose(_band_energy(fixed, lo, hi), _band_energy(r, lo, hi), rtol=1e-4)
        assert not np.allclose(_band_energy(g, lo, hi), _band_energy(r, lo, hi), rtol=0.1)  # it did change them
    # inside a band the fine structure stays the noise's: the bins' ratios are unchanged
    m = (va.FREQS >= 1000) & (va.FREQS < 2000)
    np.testing.assert_allclose(np.abs(fixed[m][0] / fixed[m][1]), np.abs(g[m][0] / g[m][1]), rtol=1e-6)


def test_hybrids_are_exact_where_nothing_is_swapped():
    rng = np.random.default_rng(1)
    rec, gen = rng.standard_normal(6000), rng.standard_normal(6000)
    h = va.hybrids(rec, gen, rng.standard_normal(6000))
    assert all(len(x) == len(rec) for x in h.values())
    np.testing.assert_array_equal(h["recording"], rec)
    # the STFT round trip is exact: a band swap of identical signals, and the recording's own levels, give it back
    same = va.hybrids(rec, rec, rng.standard_normal(6000))
    np.testing.assert_allclose(same["recording, re-spoken 1000-2000 Hz"], rec, atol=1e-9)
    np.testing.assert_allclose(same["re-spoken, levels fixed in 24 bands"], rec, atol=1e-6)
    np.testing.assert_allclose(same["|recording|, re-spoken phase"], rec, atol=1e-9)
    # a swapped band carries the re-spoken signal there and the recording elsewhere
    swapped = va._spec(h["recording, re-spoken 1000-2000 Hz"])
    inside, outside = (va.FREQS >= 1100) & (va.FREQS < 1900), va.FREQS < 800
    core = slice(4, -4)  # away from the ends, where the frames overlap fewer samples
    np.testing.assert_allclose(swapped[inside][:, core], va._spec(gen)[inside][:, core], atol=0.05 * np.abs(
        va._spec(gen)).max())
    np.testing.assert_allclose(swapped[outside][:, core], va._spec(rec)[outside][:, core], atol=0.05 * np.abs(
        va._spec(rec)).max())
