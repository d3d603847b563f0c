"""The pitch-lag input of the WaveNet vocoder (`--pitch-lag`): every step also sees the decoded past one pitch
period back (a long-term predictor's tap, as speech codecs have), times the voicing. The lag follows the f0 of
the frames, the model stays exact and causal, the lag reaches past the receptive field only where voiced, and
every backend draws the same codes."""

import itertools
import json
import math

import pytest
import torch

import pixelwave as pw
from pixelwave import audio
from pixelwave.cli import main
from pixelwave.models.wavenet import WaveNet
from pixelwave.models.wavenet.model import pitch_lags

RATE = 16000
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def rows(f0, voicing=1.0):
    """Pitch rows (1, PITCH_ROWS, F) for frame f0s in Hz (a list), phase 0."""
    f0 = torch.tensor(f0, dtype=torch.float64)
    n = len(f0)
    return torch.stack([torch.log(f0 / audio.PITCH_REF_HZ), torch.full((n,), voicing, dtype=torch.float64),
                        torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)])[None]


def frames(n, f0=(1000, 2500), voicing=1.0, seed=0):
    """Mel rows of noise and pitch rows of a glide from f0[0] to f0[1] Hz: (1, 8 + PITCH_ROWS, n)."""
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(8, n, generator=g, dtype=torch.float64)
    pitch = rows(torch.linspace(*f0, n).tolist(), voicing)[0]
    return torch.cat([mel, pitch])[None]


def tiny(levels=16, **kw):
    torch.manual_seed(0)
    m = WaveNet(**{**dict(layers=3, stacks=1, residual_channels=4, gate_channels=4, skip_channels=6, levels=levels,
                          cond_channels=8 + audio.PITCH_ROWS, hop_length=4, sample_rate=RATE, pitch=True,
                          pitch_lag=True), **kw}).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype))
    return m


def test_the_lag_is_one_period_of_the_f0_between_frame_centres():
    hop = 200
    n, frac = pitch_lags(rows([100.0, 100.0, 200.0]), 3 * hop, hop, RATE)
    assert torch.equal(n[0, :hop], torch.full((hop,), 160))  # 16 kHz / 100 Hz
    assert torch.equal(frac[0, :hop], torch.zeros(hop, dtype=torch.float64))
    mid = hop + hop // 2  # halfway from 100 Hz to 200 Hz: 150 Hz, 106.67 samples
    assert int(n[0, mid]) == 106 and abs(float(frac[0, mid]) - 2 / 3) < 1e-9
    assert torch.equal(n[0, 2 * hop:], torch.full((hop,), 80))  # after the last centre: its f0
    n, _ = pitch_lags(rows([30000.0]), 10, hop, RATE)  # above the sample rate: never less than one sample back
    assert int(n.min()) == 1


def test_exact_normalisation_over_every_sequence():
    """Periods of ~2.5 samples, so that the lag reads inside a 4-step sequence."""
    m = tiny(levels=5)
    seqs = torch.tensor(list(itertools.product(range(5), repeat=4)))
    cond = frames(1, f0=(6400, 6400)).expand(len(seqs), -1, -1)
    with torch.no_grad():
        logp = m.log_prob(seqs, cond=cond)
        lag = m.log_prob(seqs, cond=cond, reduce=False)
        torch.nn.init.zeros_(m.lag_embedding.weight)
        none = m.log_prob(seqs, cond=cond, reduce=False)
    assert abs(float(torch.logsumexp(logp, 0))) < 1e-10
    assert not torch.allclose(lag[:, 2:], none[:, 2:])  # the lag moved the likelihood


def test_causal_and_the_lag_reaches_a_period_back_where_voiced():
    m = tiny()
    field, steps, t0 = m.receptive_field, 64, 10
    a = torch.randint(0, 16, (1, steps), generator=torch.Generator().manual_seed(2))
    b = a.clone()
    b[0, t0] = (b[0, t0] + 5) % 16
    for voicing in (1.0, 0.0):
        period = 16.5  # samples: beyond the field (8), and both taps weigh a half
        cond = frames(16, f0=(RATE / period, RATE / period), voicing=voicing)
        with torch.no_grad():
            base, moved = (m.log_prob(x, cond=cond, reduce=False)[0] for x in (a, b))
        assert torch.equal(base[:t0], moved[:t0])  # nothing before t0 moves
        assert not torch.equal(base[t0 + 1: t0 + field + 1], moved[t0 + 1: t0 + field + 1])  # the field does
        far = moved[t0 + field + 1:] != base[t0 + field + 1:]  # beyond the field: only through the lag
        if voicing:  # a[t0] is read by steps t0 + 16 (tap t - n) and t0 + 17 (t - n - 1), then through them
            assert far[15 - field] and far[16 - field]
            assert not far[: 15 - field].any()
        else:  # unvoiced, the lag input is zero: nothing beyond the field moves
            assert not far.any()


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("output", ["categorical", "logistic_mixture"])
def test_naive_cached_and_fused_generation_draw_the_same_codes(output, batch):
    m = tiny(num_speakers=2, output=output, mixtures=2)
    cond = torch.cat([frames(12, seed=1), frames(12, f0=(2000, 900), seed=2)])[:batch]
    fused = m.fused_unsupported() is None
    floor = dict(probability_floor=0.01) if output == "categorical" else {}

    def gen(backend, **kw):
        return m.generate(48, batch=batch, speaker=torch.tensor([0, 1])[:batch], cond=cond, backend=backend,
                          generator=torch.Generator().manual_seed(3), **kw)

    for kw in ({}, dict(temperature=0.7), dict(temperature=0.8, voiced_temperature=0.5, **floor)):
        naive = gen("naive", **kw)
        assert torch.equal(naive, gen("torch", **kw))
        if fused:
            assert torch.equal(naive, gen("fused", **kw))
    # the generators read the lag: without it they draw other codes
    with torch.no_grad():
        torch.nn.init.zeros_(m.lag_embedding.weight)
    assert not torch.equal(naive, gen("naive", **kw))
    if fused:
        assert not torch.equal(naive, gen("fused", **kw))


def test_config_checks():
    base = dict(layers=2, stacks=1, cond_channels=12, hop_length=4)
    with pytest.raises(ValueError, match="pitch_lag reads the past one period"):
        WaveNet(**base, pitch_lag=True)
    with pytest.raises(ValueError, match="output 'lpc_mixture' has its own prediction"):
        WaveNet(**base, pitch=True, sample_rate=RATE, output="lpc_mixture", pitch_lag=True)
    with pytest.raises(ValueError, match="pitch_lag must be true or false"):
        WaveNet(**base, pitch=True, sample_rate=RATE, pitch_lag=1)
    m = WaveNet(**base, pitch=True, sample_rate=RATE)
    assert m.lag_embedding is None and "lag_embedding.weight" not in m.state_dict()


def test_train_and_resynthesize_with_the_lag(tmp_path, capsys):
    out = tmp_path / "lag"
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--no-progress",
                 "--eval-every", "0", "--steps", "2", "--samples", "0", "--mel", "--pitch", "--pitch-lag",
                 "--unconditional", "--out", str(out)]) == 0
    assert pw.load(out).config.pitch_lag is True
    assert json.loads((out / "config.json").read_text())["config"]["pitch_lag"] is True
    wav = tmp_path / "in.wav"
    t = torch.arange(3200, dtype=torch.float64) / RATE
    audio.write_wav(wav, (0.3 * torch.sin(2 * math.pi * 140 * t)).float().numpy(), RATE)
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "re.wav")]) == 0
    capsys.readouterr()
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--mel",
                 "--pitch-lag", "--unconditional", "--out", str(tmp_path / "x")]) == 2
    assert "pitch_lag reads the past one period" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_fused_step_keeps_the_lag_when_split_between_two_threads_and_back(monkeypatch):
    """Batch 1 on two threads splits every step's layers (each thread its own copy of the decoded past); after a
    hand-over to one thread (split_limit) the next kernel call (chunks of 16 steps here) splits again from the
    copy brought up to date."""
    from pixelwave.fast import wavenet_step as ws

    monkeypatch.setattr(ws, "_MAX_CHUNK", 16)
    m = tiny()
    if m.fused_unsupported() is not None:
        pytest.skip(m.fused_unsupported())
    steps = 64
    cond = frames(16, f0=(900, 1500), seed=4)
    u = torch.rand(1, steps, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    up = m._local(cond, steps)
    with torch.no_grad():
        reference = m._generate_naive(steps, None, up, u, 1.0, *m._sampler(cond, steps, 1))
        for kw in (dict(threads=1), dict(threads=2, patience=-1), dict(threads=2, patience=-1, split_limit=5)):
            assert torch.equal(ws.generate(m, steps, None, up, u, 1.0, cond=cond, **kw), reference), kw
    assert ws.last_run["split_steps"] >= 4 * 5 and ws.last_run["single_steps"] > 0
    assert len(set(reference[0].tolist())) > 3
