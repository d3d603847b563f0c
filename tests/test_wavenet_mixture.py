"""WaveNet with the discretized logistic mixture output (the implementation PixelCNN++ uses)."""

import torch

import pixelwave as pw


def tiny(**kw):
    torch.manual_seed(0)
    args = dict(layers=4, stacks=2, residual_channels=8, gate_channels=8, skip_channels=8, levels=256,
                output="logistic_mixture", mixtures=3)
    args.update(kw)
    return pw.models.WaveNet(**args).double()


def test_every_step_is_normalised_over_the_levels():
    model = tiny()
    prefix = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(1))
    a = torch.cat([prefix.expand(256, -1), torch.arange(256)[:, None]], 1)  # every value at t = 7
    logp = model.log_prob(a, reduce=False)  # (256, 8)
    assert abs(float(logp[:, -1].exp().sum()) - 1) < 1e-9
    assert torch.allclose(logp[:, :-1], logp[:1, :-1].expand(256, -1))  # the prefix's terms do not see t = 7


def test_causal_and_generation_cached_equals_naive():
    model = tiny(num_speakers=2)
    a = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(2))
    spk = torch.tensor([1])
    base = model.log_prob(a, spk, reduce=False)
    a2 = a.clone()
    a2[0, 12] = (a2[0, 12] + 100) % 256
    moved = (model.log_prob(a2, spk, reduce=False) - base).abs()[0]
    assert (moved[:12] == 0).all() and (moved[13:] > 0).any()
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    cached = model.generate(60, batch=2, speaker=torch.tensor([0, 1]), generator=g(), cached=True)
    naive = model.generate(60, batch=2, speaker=torch.tensor([0, 1]), generator=g(), cached=False)
    assert torch.equal(cached, naive)


def test_save_load_and_the_cli_flag(tmp_path, capsys):
    model = tiny().float()
    pw.save(model, tmp_path / "w")
    loaded = pw.load(tmp_path / "w")
    assert loaded.config.output == "logistic_mixture" and loaded.config.mixtures == 3
    a = torch.randint(0, 256, (2, 30))
    assert torch.equal(model.log_prob(a), loaded.log_prob(a))
    from pixelwave.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--model", "wavenet", "--data", "speech-sample", "--preset", "tiny", "--output",
               "logistic_mixture", "--mixtures", "4", "--steps", "2", "--crop", "1000", "--eval-every", "0",
               "--samples", "0", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert pw.load(out).config.mixtures == 4
