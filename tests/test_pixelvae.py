"""PixelVAE: the decoder is an exact autoregressive p(x | z); the model's log_prob is a bound on log p(x)."""

import itertools

import pytest
import torch

import pixelwave as pw
from pixelwave.models.pixelvae import PixelVAE


def tiny(**kw):
    torch.manual_seed(0)
    args = dict(channels=1, levels=2, hidden=8, layers=2, kernel_size=3, latent_channels=2, latent_stride=1,
                encoder_channels=8)
    args.update(kw)
    return PixelVAE(**args).double()


def all_binary(h, w):
    return torch.tensor(list(itertools.product(range(2), repeat=h * w))).view(-1, 1, h, w)


def test_decoder_is_normalised_for_any_latent():
    model = tiny()
    x = all_binary(3, 3)  # 512 images
    z = torch.randn(1, 2, 3, 3, dtype=torch.float64).expand(len(x), -1, -1, -1)
    total = model.decoder_log_prob(x, z).detach().exp().sum()
    assert abs(float(total) - 1) < 1e-6


def test_elbo_is_below_the_log_likelihood():
    """Over every image of a tiny space: sum exp(ELBO) < 1 = sum p(x), while the importance-weighted estimate
    of p(x) (unbiased for p(x)) sums to about 1, and is above the ELBO for every image."""
    model = tiny()
    model.eval()
    x = all_binary(2, 3)  # 64 images
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.log_prob(x) for _ in range(32)]).mean(0)  # (64,) MC estimate of the ELBO
        iw = model.importance_log_prob(x, samples=64, generator=torch.Generator().manual_seed(2))
    assert float(elbo.exp().sum()) < 0.99
    assert abs(float(iw.exp().sum()) - 1) < 0.03
    assert (iw > elbo).float().mean() > 0.95


def test_latent_changes_the_distribution_and_decoder_stays_causal():
    model = tiny()
    x = torch.randint(0, 2, (1, 1, 3, 3))
    z = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    assert not torch.allclose(model.decoder_log_prob(x, z), model.decoder_log_prob(x, z + 1))
    cond = model.upsampler(z)
    base = torch.log_softmax(model.decoder.logits(model.scale(x), cond=cond), 2)
    for i, j in itertools.product(range(3), range(3)):
        x2 = x.clone()
        x2[0, 0, i, j] ^= 1
        moved = (torch.log_softmax(model.decoder.logits(model.scale(x2), cond=cond), 2) - base).abs().amax((0, 1, 2))
        k = i * 3 + j
        assert (moved.flatten()[: k + 1] == 0).all(), f"pixel {(i, j)} moved itself or an earlier one"


def test_sampling_cached_equals_naive_and_reconstruct():
    model = tiny(latent_stride=2, num_classes=3)
    y = torch.tensor([0, 2])
    a = model.sample(2, (4, 4), y=y, generator=torch.Generator().manual_seed(3), cached=True)
    b = model.sample(2, (4, 4), y=y, generator=torch.Generator().manual_seed(3), cached=False)
    assert torch.equal(a, b) and a.shape == (2, 1, 4, 4)
    r = model.reconstruct(a, y, generator=torch.Generator().manual_seed(0))
    assert r.shape == a.shape
    with pytest.raises(ValueError, match="divisible"):
        model.sample(1, (5, 4), y=0)


def test_save_load_round_trip(tmp_path):
    model = tiny(latent_stride=2).float()
    pw.save(model, tmp_path / "vae")
    loaded = pw.load(tmp_path / "vae")
    assert loaded.config == model.config
    x = torch.randint(0, 2, (2, 1, 4, 4))
    z = torch.randn(2, 2, 2, 2)
    assert torch.equal(model.decoder_log_prob(x, z), loaded.decoder_log_prob(x, z))


def test_training_lowers_the_bound():
    model = tiny(latent_stride=2).float()
    x = torch.zeros(16, 1, 4, 4, dtype=torch.long)
    x[::2, :, :2] = 1  # two kinds of image: the latent can tell them apart
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    first = None
    for _ in range(40):
        loss = -model.log_prob(x).mean()
        first = first if first is not None else float(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first
