"""benchmarks/draw_noise.py: the spread it reports is that of the distribution the sampler draws from."""

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import draw_noise as dn  # noqa: E402

from pixelwave.distributions import categorical_sample  # noqa: E402


def test_spread_is_the_variance_of_the_floored_tempered_draw():
    levels = 16
    flat = torch.zeros(levels, 1)
    var, mean, logp = dn.spread(flat, torch.tensor([3]), 1.0, 0.0)
    assert math.isclose(float(var), (levels**2 - 1) / 12, rel_tol=1e-9)  # uniform over 0..15
    assert math.isclose(float(mean), 7.5) and math.isclose(float(logp), -4.0)  # log2(1/16)
    sharp = torch.full((levels, 1), -50.0)
    sharp[5] = 0.0
    var, mean, _ = dn.spread(sharp, torch.tensor([5]), 0.7, 0.002)
    assert float(var) < 1e-12 and math.isclose(float(mean), 5.0)
    # against draws from categorical_sample, the sampler eval uses: temperature and floor as it applies them
    logits = torch.randn(levels, 1, generator=torch.Generator().manual_seed(0)) * 2
    var, mean, _ = dn.spread(logits, torch.tensor([0]), 0.7, 0.03)
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(1))
    draws = categorical_sample(logits.t().expand(len(u), levels), u, 0.7, 0.03).double()
    assert abs(float(draws.mean()) - float(mean)) < 0.02
    assert abs(float(draws.var()) - float(var)) < 0.05 * float(var)
    assert not math.isclose(float(var), float(dn.spread(logits, torch.tensor([0]), 0.7, 0.0)[0]), rel_tol=1e-3)
