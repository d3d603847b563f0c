"""PixelSNAIL: the attention mask is what keeps it causal, attention is what removes the blind spot, the cached
sampler's key/value cache draws what the naive sampler draws. (Causality per sub-pixel, exact normalisation,
cached == naive, completion and save/load for the family are in test_image_models.py, which runs PixelSNAIL
too.)"""

import itertools

import pytest
import torch
from test_image_models import all_images, dependency_matrix, order

import pixelwave as pw
from pixelwave.models import MODELS, PixelSNAIL, pixelsnail
from pixelwave.models.pixelsnail import PixelSNAILConfig, causal_mask, masked_attention


def snail(channels, levels=4, **kw):
    torch.manual_seed(0)
    defaults = dict(hidden=12, layers=2, kernel_size=3, resnets=1, key_channels=4, value_channels=6)
    defaults.update(kw)
    model = PixelSNAIL(channels=channels, levels=levels, **defaults).double()
    with torch.no_grad():  # larger weights than the initialisation, so every dependency shows in float64
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def later(n):
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # later[p, q]: q comes after p


def test_registered_under_its_cli_name():
    assert MODELS["pixelsnail"] is PixelSNAIL and pw.models.PixelSNAIL is PixelSNAIL


def test_causal_mask_is_strictly_lower_triangular():
    m = causal_mask(4)
    assert m.dtype == torch.bool
    assert torch.equal(m, torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool))


def test_masked_attention_is_softmax_over_the_earlier_positions_and_zero_for_the_first():
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    q.requires_grad_(True)
    out = masked_attention(q, k, v, causal_mask(5))  # (2, 3, 5, 6)
    assert torch.equal(out[:, :, 0], torch.zeros(2, 3, 6))  # the first position attends to nothing: zeros, not NaN
    for j in range(1, 5):
        w = torch.softmax(q[:, :, j:j + 1] @ k[:, :, :j].transpose(-1, -2) / 2.0, dim=-1)  # (2, 3, 1, j)
        torch.testing.assert_close(out[:, :, j], (w @ v[:, :, :j])[:, :, 0], rtol=1e-12, atol=1e-12)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_one_pixel_image_has_finite_likelihood_and_gradients(channels):
    """A 1x1 image: every attention query has no key. The likelihood and every gradient stay finite."""
    model = snail(channels, num_classes=2)
    x = torch.randint(0, 4, (3, channels, 1, 1))
    lp = model.log_prob(x, torch.tensor([0, 1, 1]))
    assert torch.isfinite(lp).all()
    (-lp.sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    total = model.log_prob(all_images(channels, 1, 1, 4), torch.zeros(4 ** channels, dtype=torch.long)).exp().sum()
    assert abs(float(total.detach()) - 1.0) < 1e-9


@pytest.mark.parametrize("channels", [1, 3])
def test_sub_pixels_see_only_the_past_with_classes(channels):
    """The perturbation test, class-conditional, kernel 5, on a 3x4 image; with RGB, G sees R and B sees both."""
    model = snail(channels, num_classes=3, kernel_size=5)
    x = torch.randint(0, 4, (3, channels, 3, 4), generator=torch.Generator().manual_seed(1))
    moved = dependency_matrix(model, x, torch.tensor([0, 2, 1]))
    assert torch.equal(moved, later(moved.shape[0])), "not exactly the earlier sub-pixels"


@pytest.mark.parametrize("channels", [1, 3])
def test_the_attention_mask_is_what_keeps_it_causal(channels, monkeypatch):
    """With the mask removed, later pixels leak into earlier conditionals; with the pixel itself allowed (i <= j),
    a sub-pixel sees itself and the colours after it, because a key reads every colour of its pixel."""
    model = snail(channels)
    x = torch.randint(0, 4, (3, channels, 3, 3), generator=torch.Generator().manual_seed(2))
    n = channels * 9
    assert torch.equal(dependency_matrix(model, x), later(n))  # the real mask: exactly the past

    monkeypatch.setattr(pixelsnail, "causal_mask",
                        lambda size, device=None: torch.ones(size, size, dtype=torch.bool, device=device))
    moved = dependency_matrix(model, x)
    assert (moved & ~later(n)).any(), "no leak without the mask: the test cannot see what the mask does"
    last, first = order(channels - 1, 2, 2, channels, 3), order(0, 0, 0, channels, 3)
    assert moved[last, first], "the last sub-pixel should leak into the first one's distribution"

    monkeypatch.setattr(pixelsnail, "causal_mask",
                        lambda size, device=None: torch.ones(size, size, dtype=torch.bool, device=device).tril())
    moved = dependency_matrix(model, x)
    assert moved.diagonal().any(), "with i <= j allowed, a sub-pixel should see itself"
    assert (moved & ~later(n)).sum() >= n // 2, "with i <= j allowed, most pixels should leak into themselves"
    if channels == 3:  # the last colour of a pixel leaks into its first
        assert any(moved[order(2, i, j, 3, 3), order(0, i, j, 3, 3)] for i, j in itertools.product(range(3), range(3)))


@pytest.mark.parametrize("channels", [1, 3])
def test_no_blind_spot_and_attention_is_what_removes_it(channels, monkeypatch):
    """One block of 3x3 convs sees a pixel's 3x3 neighbourhood; attention reaches every earlier sub-pixel of a
    3x7 image. Replacing the mask by one that allows nothing leaves only the convs: a blind spot appears."""
    model = snail(channels, layers=1, resnets=1)
    x = torch.randint(0, 4, (3, channels, 3, 7), generator=torch.Generator().manual_seed(3))
    moved = dependency_matrix(model, x)
    assert torch.equal(moved, later(moved.shape[0]))
    far, target = order(0, 0, 6, channels, 7), order(0, 2, 0, channels, 7)  # up and right: the blind spot's wedge
    assert moved[far, target]

    monkeypatch.setattr(pixelsnail, "causal_mask",
                        lambda size, device=None: torch.zeros(size, size, dtype=torch.bool, device=device))
    blind = dependency_matrix(model, x)
    assert not blind[far, target] and not torch.equal(blind, later(moved.shape[0]))
    assert not (blind & ~later(moved.shape[0])).any()  # and still causal


@pytest.mark.parametrize("channels", [1, 3])
def test_cached_sampler_equals_naive_with_completion_kernel_5_and_temperature(channels):
    model = snail(channels, levels=3, kernel_size=5, layers=2, resnets=2, num_classes=2)
    y = torch.tensor([1, 0])
    known = torch.randint(0, 3, (2, channels, 5, 6), generator=torch.Generator().manual_seed(4))
    keep = torch.rand(2, channels, 5, 6, generator=torch.Generator().manual_seed(1)) < 0.3  # scattered known

    def draw(cached, **kw):
        return model.sample(2, (5, 6), y=y, generator=torch.Generator().manual_seed(5), cached=cached, **kw)

    plain = draw(True)
    assert torch.equal(plain, draw(False))
    assert torch.equal(draw(True, temperature=0.7), draw(False, temperature=0.7))
    completed = draw(True, x=known, mask=keep)
    assert torch.equal(completed, draw(False, x=known, mask=keep))
    assert torch.equal(completed[keep], known[keep]) and not torch.equal(completed, plain)


def pixel_by_pixel_logits(model, x):
    """The cached sampler's step run at every pixel of a known image in raster order: (n, C, L, H, W)."""
    n, _, height, width = x.shape
    steps = model._pixel_steps(x, None, None)
    p = steps.padding
    x_map = torch.nn.functional.pad(model.scale(x), (p, p, p, p))  # (n, C, H + 2p, W + 2p)
    out = torch.zeros(n, model.channels, model.levels, height, width, dtype=x_map.dtype)
    with torch.no_grad():
        for i, j in itertools.product(range(height), range(width)):
            out[:, :, :, i, j] = steps.step(x_map, i, j)
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_the_cached_step_equals_the_parallel_pass_and_reads_every_cached_key(channels, monkeypatch):
    """Stepping the cached network through a known image gives the parallel pass's logits at every pixel; with
    the oldest cached key dropped from each softmax it does not (the key/value cache is read, all of it)."""
    model = snail(channels, layers=2, resnets=2, kernel_size=5)
    x = torch.randint(0, 4, (2, channels, 4, 5), generator=torch.Generator().manual_seed(6))
    parallel = model.logits(model.scale(x)).detach()  # (2, C, L, 4, 5)
    torch.testing.assert_close(pixel_by_pixel_logits(model, x), parallel, rtol=1e-10, atol=1e-10)

    real_softmax = torch.softmax

    def forget_first(t, dim):
        if t.shape[-1] > 1:  # a cached query's weights over the p > 1 earlier pixels: the first one forgotten
            t = torch.cat([torch.full_like(t[..., :1], float("-inf")), t[..., 1:]], dim=-1)
        return real_softmax(t, dim=dim)

    monkeypatch.setattr(torch, "softmax", forget_first)
    forgetful = pixel_by_pixel_logits(model, x)
    torch.testing.assert_close(forgetful[..., 0, :2], parallel[..., 0, :2], rtol=1e-10, atol=1e-10)  # <= 1 key
    assert not torch.allclose(forgetful[..., 0, 2:], parallel[..., 0, 2:])


def test_class_conditioning_changes_the_distribution_and_each_is_normalised():
    model = snail(1, levels=2, num_classes=3)
    x = all_images(1, 2, 3, 2)  # 64 images
    lps = [model.log_prob(x, torch.full((64,), c)).detach() for c in range(3)]
    assert not torch.allclose(lps[0], lps[1]) and not torch.allclose(lps[1], lps[2])
    for lp in lps:
        assert abs(float(lp.exp().sum()) - 1.0) < 1e-9


def test_dropout_acts_in_training_only():
    model = snail(1, levels=2, dropout=0.5)
    x = torch.randint(0, 2, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    model.train()
    assert not torch.equal(model.log_prob(x), model.log_prob(x))
    model.eval()
    assert torch.equal(model.log_prob(x), model.log_prob(x))
    assert sum(isinstance(m, pw.nn.Dropout) and m.p == 0.5 for m in model.modules()) == 2  # one per residual block


def test_save_load_keeps_the_whole_config(tmp_path):
    model = PixelSNAIL(channels=3, levels=4, hidden=12, layers=1, kernel_size=5, resnets=1, key_channels=3,
                       value_channels=5, dropout=0.25, num_classes=2)
    pw.save(model, tmp_path / "snail")
    loaded = pw.load(tmp_path / "snail")
    assert type(loaded) is PixelSNAIL and loaded.config == model.config
    x, y = torch.randint(0, 4, (2, 3, 4, 4)), torch.tensor([0, 1])
    assert torch.equal(model.eval().log_prob(x, y), loaded.eval().log_prob(x, y))


@pytest.mark.parametrize("kw, message", [
    (dict(layers=0), "layers must be >= 1"),
    (dict(resnets=-1), "resnets must be >= 0"),
    (dict(key_channels=0), "key_channels must be >= 1"),
    (dict(value_channels=0), "value_channels must be >= 1"),
    (dict(dropout=1.0), "dropout must be in"),
    (dict(kernel_size=4), "kernel_size must be odd"),
    (dict(channels=3, hidden=4), "hidden must be at least 6"),
    (dict(levels=1), "levels must be in"),
])
def test_bad_configs_raise_one_line_errors(kw, message):
    with pytest.raises(ValueError, match=message) as e:
        PixelSNAIL(**kw)
    assert "\n" not in str(e.value)


def test_bad_inputs_raise_one_line_errors():
    model = PixelSNAIL(PixelSNAILConfig.tiny(num_classes=3))
    x = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="class-conditional"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="class labels"):
        model.sample(1, (2, 2), y=torch.tensor([3]))
    with pytest.raises(ValueError, match="x must be"):
        model.log_prob(torch.zeros(1, 3, 2, 2, dtype=torch.long), torch.tensor([0]))
