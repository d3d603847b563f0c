"""Shaped draws (`draw_shaping` on WaveNet.generate, `--draw-shaping` on generate / resynthesize / say,
`--speech-draw-shaping` on eval): the uniforms of the inverse-CDF draws are each exactly uniform, anticorrelated
from step to step so that the draws' errors are high-passed; order 0 is the old independent draw; every backend
draws the same codes; bad values are refused."""

import json

import numpy as np
import pytest
import torch

from pixelwave import audio
from pixelwave.cli import main
from pixelwave.distributions import categorical_sample, shaped_uniforms
from pixelwave.models.wavenet import WaveNet

TINY = dict(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, levels=16)


def low_band_power(x: torch.Tensor) -> float:
    """Mean power of the rows of x (B, T) in the lowest eighth of the band, over their mean power (1 if white)."""
    x = x.double() - x.double().mean(1, keepdim=True)
    p = torch.fft.rfft(x, dim=1).abs().pow(2).mean(0)[1:]
    return float(p[: len(p) // 8].mean() / p.mean())


def test_order_0_is_the_independent_draw_of_before():
    assert torch.equal(shaped_uniforms(3, 50, 0, torch.Generator().manual_seed(5)),
                       torch.rand(3, 50, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("order, lag1, gauss_low, low", [(1, -1 / 2, 0.0257, 0.06), (2, -2 / 3, 0.0008, 0.025)])
def test_each_uniform_is_exactly_uniform_and_the_draws_error_is_high_passed(order, lag1, gauss_low, low):
    u = shaped_uniforms(8, 25_000, order, torch.Generator().manual_seed(order))
    assert u.dtype == torch.float32 and bool((u >= 0).all()) and bool((u < 1).all())
    # each value alone is uniform: the largest distance of the empirical CDF from the identity (Kolmogorov-
    # Smirnov; 1.36 / sqrt(n) = 0.003 is the 5% level; Gaussians left at variance C(2n, n) would give ~0.1)
    s = u.flatten().double().sort().values
    n = s.numel()
    assert float((torch.arange(1, n + 1, dtype=torch.float64) / n - s).abs().max()) < 0.006
    z = torch.special.ndtri(u.double())
    assert abs(float((z[:, 1:] * z[:, :-1]).mean()) - lag1) < 0.02  # neighbours anticorrelated as (1 - z^-1)^n
    # and their spectrum is |2 sin(w / 2)|^(2n) / C(2n, n): in the lowest eighth of the band 0.0257 (n = 1), 0.0008
    assert abs(low_band_power(z) / gauss_low - 1) < 0.2
    # a draw's error: inverse-CDF draws from one fixed distribution (16 values), minus their mean, in the lowest
    # eighth of the band: white for independent uniforms; shaped, what the 16 values' steps leave of it
    logits = torch.linspace(-2.0, 2.0, 16).pow(2).neg().expand(8, 25_000, 16)
    shaped = categorical_sample(logits, u).double()
    white = categorical_sample(logits, shaped_uniforms(8, 25_000, 0, torch.Generator().manual_seed(9))).double()
    assert 0.8 < low_band_power(white) < 1.2
    assert low_band_power(shaped) < low
    assert abs(float(shaped.mean() - white.mean())) < 0.02 and abs(float(shaped.var() / white.var()) - 1) < 0.03


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return WaveNet(**{**TINY, **kw}).double().eval()


@pytest.mark.parametrize("kw", [dict(), dict(num_speakers=2, cond_channels=3, hop_length=4),
                                dict(output="logistic_mixture", mixtures=2)])
def test_every_backend_draws_the_same_shaped_codes(kw):
    m = tiny(**kw)
    batch, steps = 2, 48
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(batch, 3, steps // 4, generator=g, dtype=torch.float64) if "cond_channels" in kw else None
    spk = torch.tensor([0, 1]) if "num_speakers" in kw else None

    def gen(backend, shaping):
        return m.generate(steps, batch=batch, speaker=spk, cond=cond, backend=backend, temperature=0.8,
                          draw_shaping=shaping, generator=torch.Generator().manual_seed(2))

    backends = ["naive", "torch"] + (["fused"] if m.fused_unsupported() is None else [])
    for shaping in (1, 2):
        codes = [gen(b, shaping) for b in backends]
        assert all(torch.equal(codes[0], c) for c in codes[1:]), shaping
        assert not torch.equal(codes[0], gen("naive", 0))  # the shaping is used
    assert torch.equal(gen("naive", 0), m.generate(steps, batch=batch, speaker=spk, cond=cond, backend="naive",
                                                   temperature=0.8, generator=torch.Generator().manual_seed(2)))


def test_bad_shapings_are_refused():
    for bad in (3, -1, True, 1.0):
        with pytest.raises(ValueError, match="draw shaping must be one of 0, 1, 2"):
            tiny().generate(8, draw_shaping=bad)


def test_the_cli_takes_a_shaping(tmp_path, capsys, tiny_vocoder):
    out, wav = tiny_vocoder
    for shaping in ("0", "2"):
        assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / f"s{shaping}.wav"),
                     "--draw-shaping", shaping, "--threads", "1"]) == 0
    a, b = (audio.read_audio(tmp_path / f"s{s}.wav")[0] for s in ("0", "2"))
    assert a.shape == b.shape and not np.array_equal(a, b)
    capsys.readouterr()
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "x.wav"),
                 "--draw-shaping", "3"]) == 2
    assert "argument --draw-shaping: invalid choice: 3" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()
    pytest.importorskip("pystoi")
    assert main(["eval", str(out), "--data", "flite-sample", "--speech-utterances", "1", "--speech-draw-shaping",
                 "1", "--json", "--threads", "1"]) == 0
    scores = json.loads(capsys.readouterr().out).get("speech_scores")
    assert scores is None or scores["draw_shaping"] == 1  # None: the speech-eval extra is missing
