"""Pitch conditioning of the WaveNet vocoder (`--pitch`): the tracker finds known periods, the sine source follows
f0 and the voicing, and a pitch model keeps the family's guarantees (exact, causal, naive == cached == fused) and
goes through the command line (train -> eval -> resynthesize)."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

import pixelwave as pw
from pixelwave import audio
from pixelwave.cli import main
from pixelwave.data.audio import load_audio
from pixelwave.models.wavenet import WaveNet
from pixelwave.models.wavenet.model import SOURCE_HARMONICS, pitch_source, source_voicing

RATE = 16000
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def voice(f0, seconds=0.5, harmonics=20, noise=0.002, seed=0):
    """A buzz at f0 (a scalar or a per-sample array in Hz): harmonics 1..20 falling as 1/k, and a little noise."""
    n = int(seconds * RATE)
    f = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1)) * 0.1
    return x + noise * np.random.default_rng(seed).standard_normal(n)


def hz(rows):
    return audio.PITCH_REF_HZ * np.exp(rows[0].numpy())


@pytest.mark.parametrize("f0", [65, 110, 180, 260, 390])
def test_the_tracker_finds_the_period_of_a_buzz(f0):
    rows = audio.pitch(voice(f0), RATE)
    assert rows.shape == (audio.PITCH_ROWS, -(-8000 // 200)) and rows.dtype == torch.float32
    inner = slice(4, -4)  # frames whose whole window is inside the signal
    assert np.abs(hz(rows)[inner] / f0 - 1).max() < 0.01  # not an octave off: within 1%
    assert rows[1][inner].min() > 0.9  # strongly voiced


def test_the_tracker_follows_a_glide_and_rejects_noise_and_silence():
    t = np.arange(RATE) / RATE
    glide = 100 + 100 * t  # 100 -> 200 Hz in one second
    rows = audio.pitch(voice(glide, seconds=1.0), RATE)
    frame_f0 = glide[::200]
    assert np.abs(hz(rows)[4:-4] - frame_f0[4:-4]).max() < 2.0
    noise = audio.pitch(0.1 * np.random.default_rng(1).standard_normal(RATE), RATE)
    assert float(noise[1].mean()) < 0.3  # white noise is unvoiced
    silent = audio.pitch(np.zeros(4000), RATE)
    assert torch.equal(silent[1], torch.zeros(20)) and torch.allclose(silent[0], torch.zeros(20))  # 100 Hz held
    # an unvoiced stretch holds the f0 of the voiced frame before it: a continuous contour for the source
    mixed = np.concatenate([voice(150, 0.3), np.zeros(3200)])
    rows = audio.pitch(mixed, RATE)
    assert float(rows[1][-5:].max()) == 0.0 and np.abs(hz(rows)[-5:] - 150).max() < 2


def test_tracker_and_features_bad_input():
    with pytest.raises(ValueError, match="mono"):
        audio.pitch(np.zeros((2, 100)), RATE)
    with pytest.raises(ValueError, match="too short"):
        audio.pitch(np.zeros(1000), RATE, n_fft=256)
    x = torch.from_numpy(voice(120)).float()
    both = audio.features(x, RATE, n_mels=20, pitch_rows=True)
    assert torch.equal(both[:20], audio.log_mel(x, RATE, n_mels=20))
    assert torch.equal(both[20:], audio.pitch(x.double().numpy(), RATE))


def test_the_tracker_measures_the_fundamentals_phase_and_the_source_keeps_it():
    """A gliding buzz with vibrato: the source's phase (from the frames alone) stays within a few hundredths of a
    radian of the true fundamental's, sample by sample; a source whose frames lie about the phase does not."""
    t = np.arange(RATE) / RATE
    f0 = 100 + 100 * t + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE + 0.7
    x = 0.3 * sum(np.cos(k * phase) * 0.5 ** k for k in range(1, 15))
    x = x + 0.003 * np.random.default_rng(2).standard_normal(RATE)
    rows = audio.pitch(x, RATE)
    src = pitch_source(rows[None].double(), RATE, 200, RATE)[0].numpy()

    def error(s):
        return np.abs(np.angle(np.exp(1j * (np.arctan2(s[1], s[0]) - phase))))[1000:-1000]

    assert np.median(error(src)) < 0.1 and np.percentile(error(src), 95) < 0.25
    lied = rows.clone()
    lied[2], lied[3] = 1.0, 0.0  # every frame claims phase 0
    assert np.median(error(pitch_source(lied[None].double(), RATE, 200, RATE)[0].numpy())) > 0.5


def test_the_source_rings_at_f0_and_only_where_voiced():
    frames, hop = 40, 200
    rows = torch.zeros(1, audio.PITCH_ROWS, frames, dtype=torch.float64)
    rows[0, 0] = math.log(125 / audio.PITCH_REF_HZ)
    rows[0, 1, :20] = 1.0  # voiced, then unvoiced
    theta = 2 * math.pi * 125 * torch.arange(frames, dtype=torch.float64) * hop / RATE  # a steady 125 Hz
    rows[0, 2], rows[0, 3] = torch.cos(theta), torch.sin(theta)
    src = pitch_source(rows, frames * hop, hop, RATE)  # (1, 2H, steps)
    assert src.shape == (1, 2 * SOURCE_HARMONICS, frames * hop)
    first = src[0, 0, : 19 * hop]  # sin(phi) over the voiced frames
    crossings = int(((first[:-1] < 0) & (first[1:] >= 0)).sum())
    assert abs(crossings - 125 * 19 * hop / RATE) <= 1  # 125 cycles a second
    strength = (src[0, 0] ** 2 + src[0, 1] ** 2).sqrt()  # the voicing ramp, whatever the phase
    assert torch.allclose(strength[: 19 * hop + 1], torch.ones(19 * hop + 1, dtype=torch.float64), atol=1e-12)
    fade = strength[19 * hop: 20 * hop + 1]  # between the last voiced frame's centre and the next one's
    assert bool((fade.diff() <= 1e-12).all()) and 0 < float(fade[hop // 4]) < 1 and float(fade[-1]) == 0
    assert float(src[0, :, 20 * hop:].abs().max()) == 0.0
    third = src[0, 4, : 19 * hop]  # harmonic 3 turns three times as fast
    assert abs(int(((third[:-1] < 0) & (third[1:] >= 0)).sum()) - 3 * 125 * 19 * hop / RATE) <= 1


def tiny(levels=16, **kw):
    torch.manual_seed(0)
    m = WaveNet(**{**dict(layers=3, stacks=1, residual_channels=4, gate_channels=4, skip_channels=6, levels=levels,
                          cond_channels=8 + audio.PITCH_ROWS, hop_length=4, output="lpc_mixture", mixtures=2,
                          lpc_order=3, sample_rate=RATE, pitch=True), **kw}).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype))
    return m


def frames(n, seed=0, voicing=1.0):
    """Mel rows of a moving resonance and pitch rows of a voiced glide: (1, 8 + PITCH_ROWS, n)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float64)
    bands = torch.arange(8, dtype=torch.float64)[:, None]
    mel = -(bands - 2 - 3 * (0.5 + 0.5 * torch.sin(t / 3))) ** 2 / 2 + 0.1 * torch.randn(8, n, generator=g,
                                                                                          dtype=torch.float64)
    f0 = torch.log(torch.linspace(1000, 2500, n, dtype=torch.float64) / audio.PITCH_REF_HZ)  # a few samples a period
    theta = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    return torch.cat([mel, f0[None], torch.full((1, n), voicing, dtype=torch.float64), torch.cos(theta)[None],
                      torch.sin(theta)[None]])[None]


@pytest.mark.parametrize("output", ["lpc_mixture", "categorical"])
def test_exact_normalisation_over_every_sequence(output):
    m = tiny(levels=6, output=output)
    seqs = torch.tensor(list(itertools.product(range(6), repeat=3)))
    with torch.no_grad():
        logp = m.log_prob(seqs, cond=frames(1).expand(len(seqs), -1, -1))
    assert abs(float(torch.logsumexp(logp, 0))) < 1e-10


def test_a_crop_with_context_gets_the_utterances_source_and_prediction():
    """Pitch rows and LPC coefficients of a crop's samples, given its cond_context frames each side, are those of
    the same samples in the whole utterance (the source and the prediction read the frame after the last too)."""
    m = tiny(cond_hidden=6)
    hop, a, n = m.hop_length, 5, 4
    whole, c = frames(16), m.cond_context
    steps = 16 * hop
    ext = whole[..., a - c: a + n + c]
    assert torch.allclose(m._local(ext, n * hop, c), m._local(whole, steps)[..., a * hop: (a + n) * hop],
                          atol=1e-12)
    coeffs = m._prediction_coefficients(whole, steps)[:, a * hop: (a + n) * hop]
    assert torch.allclose(m._prediction_coefficients(ext[..., c:], n * hop), coeffs, atol=1e-12)
    assert not torch.allclose(m._prediction_coefficients(whole[..., a: a + n], n * hop), coeffs)


def test_causal_and_the_source_is_used():
    m = tiny()
    steps, t0 = 16, 9
    a = torch.randint(0, 16, (1, steps), generator=torch.Generator().manual_seed(2))
    cond = frames(4)
    with torch.no_grad():
        base = m.log_prob(a, cond=cond, reduce=False)
        b = a.clone()
        b[0, t0] = (b[0, t0] + 5) % 16
        moved = m.log_prob(b, cond=cond, reduce=False)
        unvoiced = m.log_prob(a, cond=frames(4, voicing=0.0), reduce=False)
        # the same upsampled frames, only the source silenced: the source itself reaches every step
        m.config.pitch = False  # _local then returns the upsampler's channels alone; pad the source with zeros
        up = m.upsampler(cond)[..., :steps]
        m.config.pitch = True
        silent = lambda c, n, context=0: torch.cat([up, torch.zeros(1, 2 * SOURCE_HARMONICS, n, dtype=up.dtype)], 1)  # noqa: E731,E501
        m._local = silent
        no_source = m.log_prob(a, cond=cond, reduce=False)
    assert torch.equal(base[0, :t0], moved[0, :t0])  # nothing before t0 moves
    assert not torch.equal(base[0, t0 + 1:], moved[0, t0 + 1:])  # later ones do
    assert not torch.allclose(base, unvoiced) and not torch.allclose(base, no_source)


@pytest.mark.parametrize("harmonics", [SOURCE_HARMONICS, 12])
def test_naive_cached_and_fused_generation_draw_the_same_codes(harmonics):
    m = tiny(num_speakers=2, source_harmonics=harmonics)
    cond = torch.cat([frames(8, seed=1), frames(8, seed=2)])

    def gen(backend, temperature=1.0):
        return m.generate(30, batch=2, speaker=torch.tensor([0, 1]), cond=cond, backend=backend,
                          temperature=temperature, generator=torch.Generator().manual_seed(3))

    for temperature in (1.0, 0.7):
        naive = gen("naive", temperature)
        assert torch.equal(naive, gen("torch", temperature))
        if m.fused_unsupported() is None:
            assert torch.equal(naive, gen("fused", temperature))


def voicing_frames(n, seed=0):
    """frames() whose voicing runs from unvoiced (0) to fully voiced (1) and back."""
    f = frames(n, seed=seed)
    f[0, 8 + 1] = torch.sin(torch.linspace(0, math.pi, n, dtype=torch.float64))
    return f


@pytest.mark.parametrize("output", ["lpc_mixture", "categorical"])
def test_voiced_temperature_draws_alike_everywhere_and_follows_the_voicing(output):
    m = tiny(output=output)
    steps = 40  # 10 frames of 4 samples

    def gen(backend, cond, **kw):
        return m.generate(steps, cond=cond, backend=backend, generator=torch.Generator().manual_seed(5), **kw)

    backends = ["naive", "torch"] + (["fused"] if m.fused_unsupported() is None else [])
    glide = voicing_frames(10)
    codes = [gen(b, glide, temperature=0.5, voiced_temperature=0.25) for b in backends]
    assert all(torch.equal(codes[0], c) for c in codes[1:])  # a temperature per draw, the same in every backend
    assert not torch.equal(codes[0], gen("naive", glide, temperature=0.5))  # and it is used
    # where the frames are unvoiced the draw is at `temperature`, where fully voiced at `voiced_temperature`
    for voicing, scalar in ((0.0, 0.5), (1.0, 0.25)):
        cond = frames(10, voicing=voicing)
        for b in backends:
            assert torch.equal(gen(b, cond, temperature=0.5, voiced_temperature=0.25),
                               gen(b, cond, temperature=scalar))
    v = source_voicing(glide[:, -audio.PITCH_ROWS:], steps, 4)
    assert v.shape == (1, steps) and float(v.min()) == 0.0 and float(v.max()) == 1.0
    assert torch.equal(v[0] > 0, (pitch_source(glide[:, -audio.PITCH_ROWS:], steps, 4, RATE)[0, 0:2] != 0).any(0))


def test_voiced_temperature_checks():
    m = tiny()
    with pytest.raises(ValueError, match="voiced_temperature must be > 0"):
        m.generate(8, cond=frames(2), voiced_temperature=0.0)
    plain = WaveNet(layers=2, stacks=1, cond_channels=8, hop_length=4, sample_rate=RATE)
    with pytest.raises(ValueError, match="no pitch rows"):
        plain.generate(8, cond=torch.zeros(1, 8, 2), voiced_temperature=0.5)


def test_a_temperature_per_draw_is_the_same_as_one_draw_at_a_time():
    from pixelwave.distributions import categorical_sample

    g = torch.Generator().manual_seed(0)
    logits, u = torch.randn(64, 9, generator=g), torch.rand(64, generator=g)
    temps = torch.rand(64, generator=g) + 0.1
    rows = torch.stack([categorical_sample(logits[i], u[i], float(temps[i])) for i in range(64)])
    assert torch.equal(categorical_sample(logits, u, temps), rows)
    with pytest.raises(ValueError, match="> 0 everywhere"):
        categorical_sample(logits, u, temps - 1.0)


def test_more_harmonics_fall_silent_at_half_the_rate_and_keep_the_first_four():
    frames_, hop = 10, 200
    rows = torch.zeros(1, audio.PITCH_ROWS, frames_, dtype=torch.float64)
    rows[0, 0] = math.log(125 / audio.PITCH_REF_HZ)
    rows[0, 1] = 1.0
    theta = 2 * math.pi * 125 * torch.arange(frames_, dtype=torch.float64) * hop / RATE  # a steady 125 Hz
    rows[0, 2], rows[0, 3] = torch.cos(theta), torch.sin(theta)
    many = pitch_source(rows, frames_ * hop, hop, RATE, harmonics=80)  # (1, 160, steps)
    assert torch.equal(many[:, : 2 * SOURCE_HARMONICS], pitch_source(rows, frames_ * hop, hop, RATE))
    loud = many[0].abs().amax(1).view(80, 2).amax(1)  # (80,) per harmonic
    assert (loud[:63] > 0.99).all() and (loud[63:] == 0).all()  # 63 x 125 = 7,875 Hz; 64 x 125 = 8,000 Hz
    m = WaveNet(layers=2, stacks=1, cond_channels=12, hop_length=4, pitch=True, sample_rate=RATE,
                source_harmonics=12)
    assert m.config.local_channels == 12 + 24 == m.blocks[0].cond_proj.in_channels
    with pytest.raises(ValueError, match="source_harmonics are the pitch source's"):
        WaveNet(layers=2, stacks=1, cond_channels=12, hop_length=4, source_harmonics=12)
    with pytest.raises(ValueError, match="source_harmonics must be an integer >= 1"):
        WaveNet(layers=2, stacks=1, cond_channels=12, hop_length=4, pitch=True, sample_rate=RATE,
                source_harmonics=0)


def test_config_checks():
    with pytest.raises(ValueError, match="pitch conditioning rides on the mel frames"):
        WaveNet(layers=2, stacks=1, pitch=True)
    with pytest.raises(ValueError, match="pitch conditioning rides on the mel frames"):
        WaveNet(layers=2, stacks=1, cond_channels=12, hop_length=4, pitch=True)  # no sample_rate
    m = WaveNet(layers=2, stacks=1, cond_channels=12, hop_length=4, pitch=True, sample_rate=RATE)
    assert m.config.mel_bands == 8 and m.config.local_channels == 12 + 2 * SOURCE_HARMONICS
    assert m.blocks[0].cond_proj.in_channels == m.config.local_channels


def test_the_data_carries_the_pitch_rows():
    ds = load_audio("flite-sample", split="test", crop=2000, with_mel=True, pitch=True)
    assert ds.pitch and ds.cond_channels == 80 + audio.PITCH_ROWS and ds.info()["mel"]["pitch"] is True
    u = ds.utterance(0)
    wave = ds.recording(0)
    frames_ = u["cond"].shape[-1]
    want = audio.features(torch.from_numpy(wave), RATE, 80, 200, 800, pitch_rows=True)[:, :frames_]
    assert torch.equal(u["cond"][0], want)
    plain = load_audio("flite-sample", split="test", crop=2000, with_mel=True)
    assert "pitch" not in plain.info()["mel"] and plain.cond_channels == 80
    with pytest.raises(Exception, match="pitch needs with_mel"):
        load_audio("flite-sample", split="test", pitch=True)


def test_train_eval_and_resynthesize_with_pitch(tmp_path, capsys):
    out = tmp_path / "pitch"
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--no-progress",
                 "--eval-every", "0", "--steps", "2", "--samples", "0", "--mel", "--pitch", "--output",
                 "lpc_mixture", "--unconditional", "--source-harmonics", "6", "--out", str(out)]) == 0
    assert json.loads((out / "data.json").read_text())["mel"]["pitch"] is True
    assert pw.load(out).config.source_harmonics == 6
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "flite-sample", "--no-speech-scores", "--json"]) == 0
    assert 0 < json.loads(capsys.readouterr().out)["bits_per_sample"] < 9
    wav = tmp_path / "in.wav"
    audio.write_wav(wav, voice(140, 0.3).astype(np.float32), RATE)
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "re.wav")]) == 0
    import soundfile as sf

    assert sf.info(str(tmp_path / "re.wav")).frames == 4800  # 24 whole frames of 200 samples
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "vt.wav"), "--temperature",
                 "0.8", "--voiced-temperature", "0.5"]) == 0
    assert sf.info(str(tmp_path / "vt.wav")).frames == 4800
    capsys.readouterr()
    assert main(["resynthesize", "pretrained:vocoder-lpc", "--input", str(wav), "--out", str(tmp_path / "no.wav"),
                 "--voiced-temperature", "0.5"]) == 2
    assert "has no pitch rows" in capsys.readouterr().err and not (tmp_path / "no.wav").exists()
    capsys.readouterr()
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--pitch",
                 "--out", str(tmp_path / "x")]) == 2
    assert "add --mel" in capsys.readouterr().err


def test_a_window_too_short_for_the_pitch_frames_is_a_one_line_error(tmp_path, capsys):
    need = audio.pitch_min_fft(RATE)
    assert need == 535  # two periods of 60 Hz at 16 kHz, and one sample
    with pytest.raises(ValueError, match="too short"):
        audio.pitch(voice(140, 0.1), RATE, n_fft=need - 1)
    assert audio.pitch(voice(140, 0.1), RATE, n_fft=need).shape[0] == audio.PITCH_ROWS
    out = tmp_path / "short"
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--mel", "--pitch",
                 "--n-fft", "400", "--hop-length", "100", "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--n-fft 400 is too short for the pitch frames" in err and "535" in err and "Traceback" not in err
    assert not out.exists()
