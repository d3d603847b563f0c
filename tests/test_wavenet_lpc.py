"""WaveNet's "lpc_mixture" output: a logistic mixture around the linear prediction from the mel frames. Exact
(normalised over every sequence of a tiny space), causal, and naive == cached generation; the LPC itself is
stable and predicts real speech."""

import itertools
import math

import pytest
import torch

from pixelwave import lpc
from pixelwave.audio import log_mel, mu_law_decode, mu_law_encode
from pixelwave.models.wavenet import WaveNet


def tiny(levels=16, **kw):
    torch.manual_seed(0)
    m = WaveNet(**{**dict(layers=3, stacks=1, residual_channels=4, gate_channels=4, skip_channels=6, levels=levels,
                          cond_channels=8, hop_length=4, output="lpc_mixture", mixtures=2, lpc_order=3,
                          sample_rate=16000, prediction_inputs=True), **kw}).double()
    with torch.no_grad():  # away from the near-uniform initial mixture: a prediction shift then matters
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype))
    return m


def speech_like(frames: int, n_mels: int = 8, seed: int = 0) -> torch.Tensor:
    """Log-mel frames of a resonance that moves: (1, n_mels, frames)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float64)
    peak = 2 + 3 * (0.5 + 0.5 * torch.sin(t / 3))  # (F,)
    bands = torch.arange(n_mels, dtype=torch.float64)[:, None]
    return (-(bands - peak) ** 2 / 2 + 0.1 * torch.randn(n_mels, frames, generator=g, dtype=torch.float64))[None]


@pytest.mark.parametrize("prediction_inputs", [False, True])
def test_exact_normalisation_over_every_sequence(prediction_inputs):
    m = tiny(levels=8, prediction_inputs=prediction_inputs)
    steps = 3
    cond = speech_like(1)  # ceil(3 / 4) frames
    seqs = torch.tensor(list(itertools.product(range(8), repeat=steps)))  # (512, 3)
    with torch.no_grad():
        logp = m.log_prob(seqs, cond=cond.expand(len(seqs), -1, -1))
    assert abs(float(torch.logsumexp(logp, 0))) < 1e-10


def test_the_prediction_shifts_the_distribution():
    """The same network with the LPC turned off (zero coefficients) scores differently: the shift is used."""
    m = tiny()
    a = torch.randint(0, 16, (2, 12), generator=torch.Generator().manual_seed(1))
    cond = speech_like(3).expand(2, -1, -1)
    with torch.no_grad():
        with_lpc = m.log_prob(a, cond=cond, reduce=False)
        m._prediction_coefficients = lambda cond, steps: torch.zeros(2, steps, 3, dtype=torch.float64)
        without = m.log_prob(a, cond=cond, reduce=False)
    assert torch.equal(with_lpc[:, 0], without[:, 0])  # nothing before t = 0 to predict from
    assert not torch.allclose(with_lpc[:, 1:], without[:, 1:])


@pytest.mark.parametrize("prediction_inputs", [False, True])
def test_causal(prediction_inputs):
    m = tiny(prediction_inputs=prediction_inputs)
    steps, t0 = 16, 9
    a = torch.randint(0, 16, (1, steps), generator=torch.Generator().manual_seed(2))
    cond = speech_like(4)
    with torch.no_grad():
        base = m.log_prob(a, cond=cond, reduce=False)
        b = a.clone()
        b[0, t0] = (b[0, t0] + 5) % 16
        moved = m.log_prob(b, cond=cond, reduce=False)
    assert torch.equal(base[0, :t0], moved[0, :t0])  # nothing before t0 moves
    assert not torch.equal(base[0, t0 + 1:], moved[0, t0 + 1:])  # later ones do (network and prediction)


@pytest.mark.parametrize("prediction_inputs", [False, True])
def test_naive_cached_and_fused_generation_draw_the_same_codes(prediction_inputs):
    """float64: the naive pass, the PyTorch queue loop and the fused C++ step (where it can be built) draw the
    same codes, at temperature 1 (the kernel bisects over the codes) and below (it computes every code's mass)."""
    m = tiny(num_speakers=2, prediction_inputs=prediction_inputs)
    steps = 30
    cond = speech_like(8).expand(2, -1, -1).contiguous()

    def gen(backend, temperature=1.0):
        return m.generate(steps, batch=2, speaker=torch.tensor([0, 1]), cond=cond, backend=backend,
                          temperature=temperature, generator=torch.Generator().manual_seed(3))

    for temperature in (1.0, 0.7):
        naive = gen("naive", temperature)
        assert torch.equal(naive, gen("torch", temperature)) and torch.equal(naive, gen("auto", temperature))
        if m.fused_unsupported() is None:
            assert torch.equal(naive, gen("fused", temperature))


def test_generation_weights_carry_the_prediction():
    """The packed weights hold what the fused step needs for the prediction; without mel frames, a clear error."""
    m = tiny()
    cond = speech_like(3).expand(2, -1, -1)
    w = m.generation_weights(None, 2, cond=cond)
    assert w.mixtures == 2 and w.prediction.order == 3 and w.prediction.hop_length == 4
    assert torch.equal(w.prediction.coefficients, lpc.coefficients(cond, 16000, 3))  # (B, F, p) per frame
    assert w.prediction.edges.shape == (17,) and w.prediction.centres.dtype == torch.float64
    with pytest.raises(ValueError, match="pass cond"):
        m.generation_weights(None, 2)


@pytest.mark.parametrize("prediction_inputs", [False, True])
def test_generation_draws_from_the_scored_distribution(prediction_inputs):
    """One step at a time, the code drawn with uniform u is the inverse CDF of exp(log_prob) at that step."""
    m = tiny(prediction_inputs=prediction_inputs)
    cond = speech_like(2)
    codes = m.generate(6, cond=cond, backend="naive", generator=torch.Generator().manual_seed(4))
    u = torch.rand(1, 6, generator=torch.Generator().manual_seed(4))
    for t in range(6):
        with torch.no_grad():
            seqs = codes.repeat(16, 1)
            seqs[:, t] = torch.arange(16)  # every code at t; what follows cannot matter (causal)
            probs = m.log_prob(seqs, cond=cond.expand(16, -1, -1), reduce=False)[:, t].exp()
        assert abs(float(probs.sum()) - 1) < 1e-10
        assert int(codes[0, t]) == int((probs.cumsum(0) < u[0, t]).sum().clamp(max=15))


def test_lpc_of_a_resonance_predicts_it():
    """A decaying 1 kHz resonance: LPC from its own log-mel removes most of its energy; the filters are stable."""
    rate, hop = 16000, 200
    t = torch.arange(8000, dtype=torch.float64) / rate
    g = torch.Generator().manual_seed(5)
    x = torch.zeros(8000, dtype=torch.float64)
    for k in range(0, 8000, 100):  # a pulse train through a 1 kHz resonance, like a vowel at 160 Hz
        x[k:] += torch.exp(-300 * (t[: 8000 - k])) * torch.sin(2 * math.pi * 1000 * t[: 8000 - k])
    x = 0.5 * x / x.abs().max() + 1e-4 * torch.randn(8000, generator=g, dtype=torch.float64)
    coeffs = lpc.coefficients(log_mel(x.float(), rate, 80, hop, 800)[None], rate, 16)  # (1, F, 16)
    for frame in coeffs[0]:  # stable: every root of A(z) inside the unit circle
        roots = torch.from_numpy(__import__("numpy").roots([1.0, *frame.tolist()]))
        assert float(roots.abs().max()) < 1.0
    e = x - lpc.predict(x[None], lpc.per_sample(coeffs, 8000, hop))[0]
    assert 10 * math.log10(float(x.var() / e.var())) > 10  # > 10 dB of prediction gain


def test_silence_gives_no_prediction_and_config_checks():
    with pytest.raises(ValueError, match="prediction_inputs"):
        WaveNet(layers=2, stacks=1, levels=16, prediction_inputs=True)  # a categorical output has no prediction
    coeffs = lpc.coefficients(torch.full((1, 80, 3), math.log(1e-5)), 16000, 16)
    assert float(coeffs.abs().max()) < 1e-6
    with pytest.raises(ValueError, match="cond_channels"):
        WaveNet(output="lpc_mixture", sample_rate=16000)
    with pytest.raises(ValueError, match="sample_rate"):
        WaveNet(output="lpc_mixture", cond_channels=8, hop_length=4)


def test_mu_law_centres_match_the_codec():
    m = tiny(levels=256, lpc_order=4)
    codes = torch.arange(256)
    assert torch.allclose(m.output.centres.float(), mu_law_decode(codes), atol=1e-7)
    edges = m.output.edges
    inside = (edges[1:-1] + 1e-9)  # just above each inner edge: the code above it
    assert torch.equal(mu_law_encode(inside), torch.arange(1, 256))


def test_input_noise_only_in_training_and_still_causal():
    m = tiny(input_noise=2.0)
    a = torch.randint(0, 16, (2, 16), generator=torch.Generator().manual_seed(6))
    cond = speech_like(4).expand(2, -1, -1)
    with torch.no_grad():
        m.eval()
        exact = m.log_prob(a, cond=cond, reduce=False)
        assert torch.equal(exact, tiny().eval().log_prob(a, cond=cond, reduce=False))  # eval: no noise, exact
        m.train()
        torch.manual_seed(0)
        noisy = m.log_prob(a, cond=cond, reduce=False)
        assert not torch.allclose(noisy, exact)  # training sees a perturbed past
        b = a.clone()
        b[:, 9] = (b[:, 9] + 5) % 16
        torch.manual_seed(0)
        moved = m.log_prob(b, cond=cond, reduce=False)
    assert torch.equal(noisy[:, :9], moved[:, :9])  # the same noise: nothing before the change moves
    with pytest.raises(ValueError, match="input_noise"):
        tiny(input_noise=-1.0)


def test_the_network_sees_the_prediction_and_the_last_excitation():
    """LPCNet's inputs: each of the two embeddings (the prediction p_t's, the last excitation's) changes the
    output parameters."""
    m = tiny()
    a = torch.randint(0, 16, (2, 12), generator=torch.Generator().manual_seed(7))
    cond = speech_like(3).expand(2, -1, -1)
    with torch.no_grad():
        base = m.logits(a, cond=cond)
        for table in (m.prediction_embedding, m.excitation_embedding):
            saved = table.weight.clone()
            table.weight.add_(torch.randn(saved.shape, dtype=saved.dtype, generator=torch.Generator().manual_seed(8)))
            moved = m.logits(a, cond=cond)
            table.weight.copy_(saved)
            assert not torch.allclose(base, moved)
