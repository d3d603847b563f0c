"""The probability floor of the categorical draw (LPCNet's sampling; `probability_floor` on WaveNet.generate,
`--probability-floor` on resynthesize / say, `--speech-probability-floor` on eval): every code's probability
less the floor, negatives to zero, renormalised; the same codes from every backend; refused where it does not
apply."""

import json

import pytest
import torch

from pixelwave.cli import main
from pixelwave.distributions import categorical_sample
from pixelwave.models.wavenet import WaveNet

TINY = dict(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, levels=16)


def test_the_floor_takes_its_mass_from_every_code_and_renormalises():
    p = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.01], dtype=torch.float64)
    floor = 0.05
    want = (p - floor).clamp(min=0)
    want = want / want.sum()  # [0.45, 0.25, 0.10, 0, 0] / 0.8
    u = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000  # the inverse CDF on a fine grid of u
    codes = categorical_sample(p.log().expand(u.shape[0], -1), u, floor=floor)
    freq = torch.bincount(codes, minlength=5).double() / u.shape[0]
    assert torch.allclose(freq, want, atol=1e-4) and freq[3] == 0 and freq[4] == 0
    # the temperature comes first: the floor is taken from softmax(logits / T)
    hot = torch.softmax(p.log() / 2.0, 0)
    want = (hot - floor).clamp(min=0)
    freq = torch.bincount(categorical_sample(p.log().expand(u.shape[0], -1), u, 2.0, floor), minlength=5).double()
    assert torch.allclose(freq / u.shape[0], want / want.sum(), atol=1e-4)
    assert torch.equal(categorical_sample(p.log().expand(u.shape[0], -1), u, floor=0.0),
                       categorical_sample(p.log().expand(u.shape[0], -1), u))
    for bad in (-0.01, 0.2, 1.0, True):  # 0.2 = 1 / 5 could leave no mass at all
        with pytest.raises(ValueError, match="probability floor must be in"):
            categorical_sample(p.log(), torch.tensor(0.5), floor=bad)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return WaveNet(**{**TINY, **kw}).double().eval()


@pytest.mark.parametrize("kw", [dict(), dict(num_speakers=2, cond_channels=3, hop_length=4)])
def test_every_backend_draws_the_same_codes_with_a_floor(kw):
    m = tiny(**kw)
    batch, steps = 2, 48
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(batch, 3, steps // 4, generator=g, dtype=torch.float64) if kw else None
    spk = torch.tensor([0, 1]) if kw else None

    def gen(backend, floor, temperature=0.8):
        return m.generate(steps, batch=batch, speaker=spk, cond=cond, backend=backend, temperature=temperature,
                          probability_floor=floor, generator=torch.Generator().manual_seed(2))

    backends = ["naive", "torch"] + (["fused"] if m.fused_unsupported() is None else [])
    for floor in (0.02, 0.06):
        codes = [gen(b, floor) for b in backends]
        assert all(torch.equal(codes[0], c) for c in codes[1:]), floor
        assert not torch.equal(codes[0], gen("naive", 0.0))  # the floor is used


def test_the_fused_step_in_float32_follows_the_same_rule():
    m = tiny().float()
    if m.fused_unsupported() is not None:
        pytest.skip(f"fused step unavailable: {m.fused_unsupported()}")
    a = m.generate(200, backend="fused", temperature=0.3, probability_floor=0.03,
                   generator=torch.Generator().manual_seed(4))
    logits = m.logits(a).double()  # (1, levels, T): the distribution each code was drawn from, at T = 0.3
    p = torch.softmax(logits[0].t() / 0.3, -1)
    assert bool((p.gather(1, a[0, :, None]) > 0.03 - 1e-5).all())  # never a code under the floor
    assert (p < 0.03).any()  # and there were such codes to avoid


def test_the_floor_is_refused_where_it_does_not_apply():
    mixture = tiny(output="logistic_mixture", mixtures=2)
    with pytest.raises(ValueError, match="categorical output's draw"):
        mixture.generate(8, probability_floor=0.01)
    with pytest.raises(ValueError, match=r"probability floor must be in \[0, 1/16\)"):
        tiny().generate(8, probability_floor=0.07)


def test_the_cli_takes_a_floor_for_a_categorical_vocoder(tmp_path, capsys, tiny_vocoder):
    out, wav = tiny_vocoder
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "f.wav"),
                 "--probability-floor", "0.002", "--threads", "1"]) == 0
    assert (tmp_path / "f.wav").exists()
    capsys.readouterr()
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "g.wav"),
                 "--probability-floor", "0.01", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "--probability-floor: the probability floor must be in [0, 1/256)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.wav").exists()
    assert main(["resynthesize", "pretrained:vocoder-lpc", "--input", str(wav), "--out", str(tmp_path / "h.wav"),
                 "--probability-floor", "0.002", "--threads", "1"]) == 2
    assert "is the categorical output's draw" in capsys.readouterr().err and not (tmp_path / "h.wav").exists()
    pytest.importorskip("pystoi")
    assert main(["eval", str(out), "--data", "flite-sample", "--speech-utterances", "1", "--speech-probability-floor",
                 "0.002", "--json", "--threads", "1"]) == 0
    scores = json.loads(capsys.readouterr().out).get("speech_scores")
    assert scores is None or scores["probability_floor"] == 0.002  # None: the speech-eval extra is missing
