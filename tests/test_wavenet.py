"""WaveNet: receptive field, causality, exact normalisation, silence before t = 0, conditioning, and cached
generation equal to the naive parallel pass, all on tiny float64 models."""

import dataclasses
import itertools
import json
import warnings

import pytest
import torch

import pixelwave.models.wavenet as wavenet
from pixelwave.audio import silence_code
from pixelwave.checkpoint import model_config, read_tensors, write_tensors
from pixelwave.models.wavenet import WaveNet, WaveNetConfig

TINY = dict(layers=6, stacks=2, residual_channels=8, gate_channels=8, skip_channels=16, levels=16)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(TINY)
    args.update(kw)
    return WaveNet(**args).double()  # float64: cached and naive agree far beyond any CDF tie


def mel_for(m, batch, steps, seed=1):
    return torch.randn(batch, m.cond_channels, -(-steps // m.hop_length), dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))


def codes(batch, steps, levels=16, seed=2):
    return torch.randint(0, levels, (batch, steps), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------ structure
def test_standard_model_dilations_and_receptive_field():
    m = WaveNet()
    assert m.dilations == [2 ** i for i in range(10)] * 2
    assert m.receptive_field == 2047
    assert WaveNet(layers=30, stacks=3, kernel_size=3).receptive_field == 2 * 3 * 1023 + 1


@pytest.mark.parametrize("kw", [dict(), dict(kernel_size=3), dict(layers=4, stacks=1),
                                dict(num_speakers=2, cond_channels=3, hop_length=4)])
def test_receptive_field_measured_by_gradient(kw):
    """Back-propagate from the output at the last step: exactly the R inputs before it get a gradient."""
    m = tiny(**kw)
    field = m.receptive_field
    steps = field + 12
    captured = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["x"] = output  # (B, T, R): the embedded, shifted input; position p holds a[p - 1]

    m.embedding.register_forward_hook(keep)
    spk = torch.tensor([1]) if m.num_speakers else None
    cond = mel_for(m, 1, steps) if m.cond_channels else None
    logits = m.logits(codes(1, steps), spk, cond)  # (1, L, T)
    logits[0, :, -1].sum().backward()
    seen = (captured["x"].grad[0].abs().sum(1) > 0).nonzero().flatten()  # shifted positions with a gradient
    assert seen.tolist() == list(range(steps - field, steps))  # = a[T-1-R .. T-2]: R samples, ending at t-1


def test_causality_by_perturbation():
    m = tiny(kernel_size=3)
    field, steps, t0 = m.receptive_field, 80, 20
    a = codes(2, steps)
    b = a.clone()
    b[:, t0] = (b[:, t0] + 5) % m.levels
    la, lb = m.log_prob(a, reduce=False), m.log_prob(b, reduce=False)  # (B, T)
    assert torch.equal(la[:, :t0], lb[:, :t0])  # earlier log-probs are untouched
    # the distribution of a[t0] itself (its log-prob moves only because a different value is scored)
    assert torch.equal(m.logits(a)[:, :, : t0 + 1], m.logits(b)[:, :, : t0 + 1])
    moved = (la - lb).abs() > 1e-12
    assert moved[:, t0 + 1: t0 + 1 + field].all()  # every later step inside the receptive field moves
    assert not moved[:, t0 + 1 + field:].any()  # and nothing beyond it


def test_exactly_normalised_over_all_sequences():
    """sum over every sequence of p(a) is 1: fails if step t could see a[t]."""
    m = tiny(levels=4)
    seqs = torch.tensor(list(itertools.product(range(4), repeat=3)))  # (64, 3)
    total = m.log_prob(seqs).exp().sum()
    assert abs(float(total.detach()) - 1.0) < 1e-10
    probs = torch.softmax(m.logits(seqs), dim=1).sum(1)  # (64, T)
    assert torch.allclose(probs, torch.ones_like(probs))


@pytest.mark.parametrize("kw", [dict(), dict(num_speakers=3)])
def test_input_before_start_is_silence(kw):
    """log p(a) equals log p(a | a long stretch of silence before it), step for step."""
    m = tiny(**kw)
    a = codes(2, 30)
    pad = torch.full((2, m.receptive_field + 5), silence_code(m.levels))
    spk = torch.tensor([0, 2]) if m.num_speakers else None
    direct = m.log_prob(a, spk, reduce=False)
    after_silence = m.log_prob(torch.cat([pad, a], 1), spk, reduce=False)[:, pad.shape[1]:]
    assert torch.allclose(direct, after_silence, atol=1e-12)


def test_every_parameter_gets_a_gradient():
    """DDP needs it, and it shows speaker and mel conditioning are wired into the loss."""
    m = tiny(num_speakers=2, cond_channels=3, hop_length=4)
    a = codes(2, 24)
    (-m(a, torch.tensor([0, 1]), mel_for(m, 2, 24)).sum()).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("kw", [{}, dict(num_speakers=2), dict(cond_channels=3, hop_length=4),
                                dict(num_speakers=2, cond_channels=3, hop_length=4, cond_hidden=5)])
def test_bf16_autocast_trains_with_every_conditioning(kw):
    """`train --bf16`'s forward and backward: under bfloat16 autocast a layer's gate output can be float32 (the
    speaker's bias is added in float32) while the skip sum is bfloat16; the log-probs stay within bfloat16's
    rounding of float32's and every parameter gets a finite gradient."""
    m = tiny(**kw).float()
    a = codes(2, 24)
    spk = torch.tensor([0, 1]) if "num_speakers" in kw else None
    mel = mel_for(m, 2, 24).float() if "cond_channels" in kw else None
    ref = m.log_prob(a, spk, mel, reduce=False)  # (B, T) nats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = m.log_prob(a, spk, mel, reduce=False)
    assert lp.shape == ref.shape and (lp.float() - ref).abs().max() < 0.1  # bf16: ~3 significant digits
    (-lp.float().sum()).backward()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in m.parameters())


def test_training_steps_lower_the_loss():
    m = tiny()
    a = codes(4, 64)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = -m(a).mean().item()
    for _ in range(30):
        opt.zero_grad()
        loss = -m(a).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first


# ---------------------------------------------------------------------------------------------- conditioning
def test_speaker_changes_the_distribution():
    m = tiny(num_speakers=3)
    a = codes(1, 20).expand(3, -1)
    lp = m.log_prob(a, torch.tensor([0, 1, 2]), reduce=False)
    assert (lp[0] - lp[1]).abs().max() > 1e-3 and (lp[1] - lp[2]).abs().max() > 1e-3


def test_mel_changes_the_distribution_where_it_applies():
    m = tiny(cond_channels=3, hop_length=4)
    a = codes(1, 40)
    c1 = mel_for(m, 1, 40)
    c2 = c1.clone()
    c2[..., 9] += 1.0  # frame 9 sits around sample 36
    l1, l2 = m.log_prob(a, cond=c1, reduce=False), m.log_prob(a, cond=c2, reduce=False)
    changed = ((l1 - l2).abs() > 1e-12).nonzero()[:, 1]
    assert changed.numel() > 0
    # frame f reaches samples after (f - 2) * hop only (3-frame conv + linear interpolation), never earlier
    assert int(changed.min()) > (9 - 2) * 4


def test_mel_upsampler_is_linear_interpolation_at_init():
    up = wavenet.ConditionUpsampler(1, 4)
    with torch.no_grad():  # bypass the frame conv: identity
        up.frame_conv.weight.zero_()
        up.frame_conv.weight[0, 0, 1] = 1.0
        up.frame_conv.bias.zero_()
    out = up(torch.tensor([[[0.0, 4.0, 8.0]]]))  # frames centred on samples 0, 4, 8
    assert out.shape == (1, 1, 12)
    assert torch.allclose(out[0, 0, :9], torch.arange(9.0))  # a straight line between frame centres


def with_branch(seed=0):
    """A tiny mel-conditioned model with a frame-rate branch (`cond_hidden`) that is in use: its output conv, which
    starts at zero, drawn at random."""
    m = tiny(seed, cond_channels=3, hop_length=4, cond_hidden=5)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for p in m.upsampler.frame_net[-1].parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def test_cond_hidden_starts_as_the_linear_conditioning_and_learns():
    plain = tiny(cond_channels=3, hop_length=4)
    branched = tiny(cond_channels=3, hop_length=4, cond_hidden=5)
    missing, unexpected = branched.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("upsampler.frame_net.") for k in missing)
    a, c = codes(2, 40), mel_for(plain, 2, 40)
    assert torch.equal(plain.log_prob(a, cond=c, reduce=False), branched.log_prob(a, cond=c, reduce=False))
    (-branched(a, cond=c).sum()).backward()  # the zero output conv gets a gradient: the branch can start learning
    assert branched.upsampler.frame_net[-1].weight.grad.abs().sum() > 0


def test_cond_hidden_reaches_two_frames_each_way():
    """Two 3-frame convs: frame 12 moves the features of frames 10..14, so (with the interpolation) the samples
    after frame 9's centre; the linear conditioning alone reaches only those after frame 10's."""
    a = codes(1, 64)
    for m, first in ((with_branch(), (12 - 3) * 4), (tiny(cond_channels=3, hop_length=4), (12 - 2) * 4)):
        c1 = mel_for(m, 1, 64)
        c2 = c1.clone()
        c2[..., 12] += 1.0  # frame 12 is centred on sample 48
        changed = ((m.log_prob(a, cond=c1, reduce=False) - m.log_prob(a, cond=c2, reduce=False)).abs() > 1e-12)
        assert int(changed.nonzero()[:, 1].min()) == first + 1


def test_cond_hidden_generation_equals_naive():
    m = with_branch()
    cond = mel_for(m, 2, 30)
    want = m.generate(30, batch=2, cond=cond, generator=torch.Generator().manual_seed(3), backend="naive")
    for backend in ("torch", "auto"):
        got = m.generate(30, batch=2, cond=cond, generator=torch.Generator().manual_seed(3), backend=backend)
        assert torch.equal(got, want), backend


@pytest.mark.parametrize("branch", [False, True])
def test_a_crop_with_its_context_frames_is_conditioned_as_inside_the_utterance(branch):
    """Frames a .. a+F-1 of a 20-frame utterance, with cond_context frames each side: the crop's samples get the
    local conditioning the whole utterance gives them; one frame fewer (or none: the crop's zero padding) does not."""
    m = with_branch() if branch else tiny(cond_channels=3, hop_length=4)
    c, hop, a, n = m.cond_context, m.hop_length, 6, 5
    assert c == (3 if branch else 2)
    whole = mel_for(m, 1, 20 * hop)
    want = m._local(whole, 20 * hop)[..., a * hop: (a + n) * hop]
    got = m._local(whole[..., a - c: a + n + c], n * hop, c)
    assert torch.allclose(got, want, atol=1e-12)
    for k in range(c):
        short = m._local(whole[..., a - k: a + n + k], n * hop, k)
        assert not torch.allclose(short, want, atol=1e-6), k
    crop, ext = codes(1, n * hop), whole[..., a - c: a + n + c]
    lp = m.log_prob(crop, cond=ext, context=c, reduce=False)
    moved = ext.clone()
    moved[..., -1] += 1.0  # the last context frame reaches the crop's last hop, and nothing before it
    diff = (m.log_prob(crop, cond=moved, context=c, reduce=False) - lp).abs() > 1e-12
    assert diff.any() and int(diff.nonzero()[:, 1].min()) >= (n - 1) * hop
    with pytest.raises(ValueError, match=r"ceil\(T / hop_length\) \+ 2 context"):
        m.log_prob(crop, cond=ext[..., 1:], context=c)
    with pytest.raises(ValueError, match="context must be an int"):
        m.log_prob(crop, cond=ext, context=-1)


# ------------------------------------------------------------------------------------------------ generation
CASES = [dict(), dict(num_speakers=3), dict(cond_channels=3, hop_length=4),
         dict(kernel_size=3, num_speakers=2, cond_channels=2, hop_length=5)]


def conditions(m, batch, steps):
    spk = torch.arange(batch) % m.num_speakers if m.num_speakers else None
    cond = mel_for(m, batch, steps) if m.cond_channels else None
    return spk, cond


@pytest.mark.parametrize("kw", CASES)
def test_cached_generation_equals_naive(kw):
    m = tiny(**kw)
    steps = 2 * m.receptive_field + 7  # long enough for every queue to wrap several times
    spk, cond = conditions(m, 3, steps)

    def gen(cached, seed=5, temperature=1.0):
        return m.generate(steps, batch=3, speaker=spk, cond=cond, cached=cached, temperature=temperature,
                          generator=torch.Generator().manual_seed(seed))

    fast = gen(True)
    assert fast.shape == (3, steps) and fast.dtype == torch.long
    assert int(fast.min()) >= 0 and int(fast.max()) < m.levels
    assert torch.equal(fast, gen(False))
    assert torch.equal(gen(True, temperature=0.7), gen(False, temperature=0.7))
    assert not torch.equal(fast, gen(True, seed=6))  # the seed matters


class _Record(wavenet.CategoricalOutput):
    seen: list = []

    @staticmethod
    def sample(params, u, temperature):
        _Record.seen.append(params.clone())
        return wavenet.CategoricalOutput.sample(params, u, temperature)


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("cached", [True, False])
def test_generation_logits_equal_the_parallel_pass(kw, cached, monkeypatch):
    """Every step's logits equal the teacher-forced logits of the finished sequence (not just the draws)."""
    m = tiny(**kw)
    monkeypatch.setattr(m, "output", _Record)
    _Record.seen = []
    steps = m.receptive_field + 9
    spk, cond = conditions(m, 2, steps)
    a = m.generate(steps, batch=2, speaker=spk, cond=cond, cached=cached,
                   generator=torch.Generator().manual_seed(3))
    stepwise = torch.stack(_Record.seen, dim=2)  # (B, L, T)
    assert torch.allclose(stepwise, m.logits(a, spk, cond), atol=1e-10)


def test_generation_leaves_the_weights_alone():
    m = tiny(num_speakers=2, cond_channels=3, hop_length=4)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    spk, cond = conditions(m, 1, 30)
    m.generate(30, speaker=spk, cond=cond)
    m.generate(30, speaker=spk, cond=cond, cached=False)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_float32_cached_matches_naive_on_a_short_run():
    torch.manual_seed(0)
    m = WaveNet(**TINY)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(m.generate(40, generator=g()), m.generate(40, generator=g(), cached=False))


# -------------------------------------------------------------------------------------------- API and errors
def test_config_round_trips_through_a_checkpoint(tmp_path):
    m = tiny(num_speakers=2, cond_channels=3, hop_length=4, cond_hidden=5)
    meta = json.loads(json.dumps(model_config(m)))
    assert meta["model"] == "wavenet" and meta["config"] == dataclasses.asdict(m.config)
    write_tensors(tmp_path / "w.safetensors", m.state_dict())
    m2 = WaveNet(**meta["config"]).double()
    m2.load_state_dict(read_tensors(tmp_path / "w.safetensors"))
    spk, cond = conditions(m, 2, 16)
    a = codes(2, 16)
    assert torch.equal(m.log_prob(a, spk, cond), m2.log_prob(a, spk, cond))
    assert WaveNet.config_class is WaveNetConfig and WaveNet.data_kind == "audio"


def test_forward_is_log_prob_summed():
    m = tiny()
    a = codes(3, 12)
    assert m(a).shape == (3,)
    assert torch.allclose(m(a), m.log_prob(a, reduce=False).sum(1))


@pytest.mark.parametrize("kw, message", [
    (dict(layers=5, stacks=2), "equal stacks"),
    (dict(kernel_size=1), "kernel_size"),
    (dict(cond_channels=3), "go together"),
    (dict(hop_length=3), "go together"),
    (dict(levels=1), "levels"),
    (dict(num_speakers=0), "num_speakers"),
    (dict(output="mixture"), "output"),
    (dict(cond_hidden=4), "cond_hidden is a network on the mel frames"),
    (dict(cond_channels=3, hop_length=4, cond_hidden=-1), "cond_hidden must be an integer >= 0"),
])
def test_bad_config(kw, message):
    with pytest.raises(ValueError, match=message):
        WaveNet(**kw)


def test_bad_inputs():
    m = tiny(num_speakers=2, cond_channels=3, hop_length=4)
    a, spk = codes(2, 8), torch.tensor([0, 1])
    cond = mel_for(m, 2, 8)
    with pytest.raises(ValueError, match="integer"):
        m.log_prob(a.double(), spk, cond)
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        m.log_prob(a + 16, spk, cond)
    with pytest.raises(ValueError, match="pass speaker"):
        m.log_prob(a, None, cond)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        m.log_prob(a, torch.tensor([0, 2]), cond)
    with pytest.raises(ValueError, match="cond must be"):
        m.log_prob(a, spk, cond[..., :1])
    with pytest.raises(ValueError, match="pass cond"):
        m.generate(8, batch=2, speaker=spk)
    with pytest.raises(ValueError, match="temperature"):
        m.generate(8, batch=2, speaker=spk, cond=cond, temperature=0)
    plain = tiny()
    with pytest.raises(ValueError, match="without num_speakers"):
        plain.log_prob(a, spk)
    with pytest.raises(ValueError, match="without cond_channels"):
        plain.generate(8, batch=2, cond=cond)
    assert plain.generate(5, batch=2).shape == (2, 5)
    assert m.generate(8, batch=2, speaker=1, cond=cond).shape == (2, 8)  # an int speaker serves the batch


# -------------------------------------------------------------------------------------------- config and backends
def test_wavenet_takes_its_config_and_the_named_sizes():
    torch.manual_seed(0)
    a = WaveNet(WaveNetConfig(**TINY, num_speakers=2))
    torch.manual_seed(0)
    b = WaveNet(**TINY, num_speakers=2)
    assert a.config == b.config and a.num_speakers == 2 and a.levels == 16
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    std = WaveNetConfig.standard()
    assert (std.layers, std.stacks, std.residual_channels, std.gate_channels, std.skip_channels) == (
        20, 2, 64, 128, 256)
    assert WaveNet(WaveNetConfig.demo()).receptive_field == 1024
    assert WaveNetConfig.tiny(num_speakers=3).num_speakers == 3
    with pytest.raises(ValueError, match="mixtures"):
        WaveNetConfig(mixtures=0)


def test_backends_draw_the_same_codes_and_the_old_keywords_warn():
    m = tiny(num_speakers=2, cond_channels=3, hop_length=4)
    spk, cond = conditions(m, 2, 40)

    def gen(**kw):
        return m.generate(40, batch=2, speaker=spk, cond=cond, generator=torch.Generator().manual_seed(8), **kw)

    naive = gen(backend="naive")
    for backend in ("torch", "auto"):
        assert torch.equal(gen(backend=backend), naive)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached= is DESIGN.md's spelling: no warning
        assert torch.equal(gen(cached=False), gen(backend="naive"))
        assert torch.equal(gen(cached=True), gen(backend="auto"))
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert torch.equal(gen(fast=False), gen(backend="torch"))
    with pytest.raises(ValueError, match="backend must be"):
        gen(backend="gpu")
    with pytest.raises(ValueError, match="weights must be"):
        gen(weights="int4")
    with pytest.raises(ValueError, match="fused step's precision"):
        gen(backend="torch", weights="bf16")
    with pytest.raises(ValueError, match="not both"):
        gen(backend="torch", cached=True)


def test_the_queue_loop_runs_on_the_generation_weights():
    """One packing: generation_weights feeds the PyTorch loop (and the fused step), shapes as documented."""
    m = tiny(num_speakers=2, kernel_size=3)
    spk = m._speaker_bias(torch.tensor([0, 1]))
    w = m.generation_weights(spk, 2)
    cfg = m.config
    assert (w.layers, w.batch, w.residual_channels, w.gate_channels, w.skip_channels, w.out_channels) == (
        cfg.layers, 2, cfg.residual_channels, cfg.gate_channels, cfg.skip_channels, cfg.levels)
    assert w.static_bias.shape == (2, cfg.layers, 2 * cfg.gate_channels) and w.format == "float32"
    u = torch.rand(2, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        codes = wavenet.generation.generate_torch(w, 30, None, u, 1.0, m.output.sample)
        assert torch.equal(codes, m._generate_naive(30, spk, None, u, 1.0))
