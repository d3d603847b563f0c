"""Correctness of the image models: causality per sub-pixel, exact normalisation, sampling, save/load."""

import dataclasses
import itertools

import pytest
import torch

import pixelwave as pw
from pixelwave.models import GatedPixelCNN, PixelCNN, PixelSNAIL
from pixelwave.models.gated_pixelcnn import GatedPixelCNNConfig


def tiny(model_cls, channels, levels=4, **kw):
    torch.manual_seed(0)
    defaults = dict(hidden=24, layers=3, kernel_size=3)
    defaults.update(kw)
    return model_cls(channels=channels, levels=levels, **defaults).double()  # float64: exact sums below


def order(c, i, j, channels, width):
    """Position of sub-pixel (c, i, j) in the generation order: raster over pixels, then R -> G -> B."""
    return (i * width + j) * channels + c


def conditionals(model, x, y=None):
    """log p(x_q = v | x_<q) for every sub-pixel q and every value v: (C, L, H, W) for the first image."""
    return torch.log_softmax(model.logits(model.scale(x), y), dim=2)[0]


def dependency_matrix(model, x, y=None):
    """moved[p, q] is True when changing sub-pixel p changes the distribution of sub-pixel q (any value).

    x holds several images; a change counts if it shows for any of them (a ReLU can hide it for one input).
    """
    if x.shape[0] > 1:
        mats = [dependency_matrix(model, x[k:k + 1], None if y is None else y[k:k + 1]) for k in range(len(x))]
        return torch.stack(mats).any(0)
    b, channels, h, w = x.shape
    base = conditionals(model, x, y)  # (C, L, H, W)
    n = channels * h * w
    moved = torch.zeros(n, n, dtype=torch.bool)
    for c, i, j in itertools.product(range(channels), range(h), range(w)):
        x2 = x.clone()
        x2[0, c, i, j] = (x2[0, c, i, j] + 1) % model.levels
        delta = ((conditionals(model, x2, y) - base).abs() > 0).any(1)  # (C, H, W)
        p = order(c, i, j, channels, w)
        for c2, i2, j2 in zip(*torch.nonzero(delta, as_tuple=True), strict=True):
            moved[p, order(int(c2), int(i2), int(j2), channels, w)] = True
    return moved


MODELS = [PixelCNN, GatedPixelCNN, PixelSNAIL]


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_no_sub_pixel_sees_itself_or_the_future(model_cls, channels):
    model = tiny(model_cls, channels)
    x = torch.randint(0, 4, (3, channels, 4, 5), generator=torch.Generator().manual_seed(1))
    moved = dependency_matrix(model, x)
    n = moved.shape[0]
    later = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # later[p, q]: q comes after p
    assert not (moved & ~later).any(), "a sub-pixel's log-prob moved when itself or a later one changed"
    # Within a pixel: G depends on R, B on R and G (mask A at the centre, mask B after it -- not A twice).
    if channels == 3:
        for i, j in itertools.product(range(4), range(5)):
            r, g, b = (order(c, i, j, 3, 5) for c in range(3))
            assert moved[r, g] and moved[r, b] and moved[g, b], f"colour order broken at pixel {(i, j)}"


def test_gated_pixelcnn_sees_every_earlier_sub_pixel():
    """No blind spot: with 4 layers of kernel 3 every earlier sub-pixel of a 4x4 image moves every later one."""
    for channels in (1, 3):
        model = tiny(GatedPixelCNN, channels, layers=4)
        x = torch.randint(0, 4, (3, channels, 4, 4), generator=torch.Generator().manual_seed(2))
        moved = dependency_matrix(model, x)
        n = moved.shape[0]
        later = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        assert torch.equal(moved, later)


def test_pixelcnn_has_the_blind_spot():
    """Stacked mask-B 3x3 convs never see the row above more than 3 columns to the right (7x7 first layer)."""
    model = tiny(PixelCNN, 1, layers=6)
    h, w = 4, 9
    x = torch.randint(0, 4, (3, 1, h, w), generator=torch.Generator().manual_seed(3))
    moved = dependency_matrix(model, x)
    target = order(0, 3, 1, 1, w)  # pixel (3, 1)
    seen = {(i, j) for i in range(h) for j in range(w) if moved[order(0, i, j, 1, w), target]}
    assert {(3, 0), (2, 0), (2, 4), (1, 5), (0, 6)} <= seen
    blind = {(2, j) for j in range(5, w)} | {(1, j) for j in range(6, w)} | {(0, 7), (0, 8)}
    assert not (blind & seen), f"expected a blind spot at {sorted(blind)}"


def all_images(channels, h, w, levels):
    values = torch.tensor(list(itertools.product(range(levels), repeat=channels * h * w)))
    return values.view(-1, channels, h, w)


@pytest.mark.parametrize("model_cls", MODELS)
@pytest.mark.parametrize("num_classes", [None, 3])
def test_exact_normalisation_over_all_binary_rgb_2x2_images(model_cls, num_classes):
    model = tiny(model_cls, 3, levels=2, num_classes=num_classes)
    x = all_images(3, 2, 2, 2)  # all 4,096 images
    y = torch.full((len(x),), 2) if num_classes else None
    total = model.log_prob(x, y).detach().exp().sum()
    assert abs(float(total) - 1.0) < 1e-5
    if num_classes:  # a different class is a different, also normalised, distribution
        other = model.log_prob(x, torch.zeros(len(x), dtype=torch.long))
        assert abs(float(other.detach().exp().sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("model_cls", MODELS)
def test_exact_normalisation_gray_three_levels(model_cls):
    model = tiny(model_cls, 1, levels=3)
    x = all_images(1, 2, 3, 3)  # 729 images
    assert abs(float(model.log_prob(x).detach().exp().sum()) - 1.0) < 1e-5


def test_class_conditioning_changes_the_distribution():
    model = tiny(GatedPixelCNN, 1, levels=2, num_classes=3)
    torch.nn.init.normal_(model.layers[0].class_proj.weight)
    x = torch.randint(0, 2, (1, 1, 3, 3))
    assert not torch.allclose(model.log_prob(x, torch.tensor([0])), model.log_prob(x, torch.tensor([1])))


def test_spatial_conditioning_map():
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=1, levels=2, hidden=8, layers=2, kernel_size=3, cond_channels=2).double()
    x = torch.randint(0, 2, (2, 1, 3, 3))
    cond = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    lp = model.log_prob(x, cond=cond)
    assert not torch.allclose(lp, model.log_prob(x, cond=cond + 1))
    with pytest.raises(ValueError, match="cond must be"):
        model.log_prob(x)
    total = model.log_prob(all_images(1, 3, 3, 2), cond=cond[:1].expand(512, -1, -1, -1)).exp().sum()
    assert abs(float(total.detach()) - 1) < 1e-5


@pytest.mark.parametrize("model_cls", MODELS)
def test_same_seed_same_samples_and_cached_equals_naive(model_cls):
    model = tiny(model_cls, 3, num_classes=2)
    y = torch.tensor([0, 1, 1])

    def draw(seed, cached):
        return model.sample(3, (3, 4), y=y, generator=torch.Generator().manual_seed(seed), cached=cached)

    a, b = draw(7, True), draw(7, True)
    assert torch.equal(a, b)
    assert torch.equal(a, draw(7, False))
    assert not torch.equal(a, draw(8, True))
    assert a.shape == (3, 3, 3, 4) and a.min() >= 0 and a.max() < 4


@pytest.mark.parametrize("model_cls", MODELS)
def test_completion_keeps_the_given_sub_pixels(model_cls):
    model = tiny(model_cls, 3)
    known = torch.randint(0, 4, (2, 3, 4, 4), generator=torch.Generator().manual_seed(4))
    keep = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    keep[:, :, :2] = True  # top half
    keep[1, 0, 3, 3] = True  # and one lone sub-pixel: later ones are still sampled around it
    out = model.sample(2, x=known, mask=keep, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[keep], known[keep])
    again = model.sample(2, x=known, mask=keep, generator=torch.Generator().manual_seed(0), cached=False)
    assert torch.equal(out, again)


def test_sampler_follows_the_model_distribution():
    """Empirical frequencies of 2x1 binary samples match the exact p(x) (chi-square-style bound)."""
    model = tiny(GatedPixelCNN, 1, levels=2)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    xs = all_images(1, 2, 1, 2)  # 4 images
    p = model.log_prob(xs).exp()
    s = model.sample(4000, (2, 1), generator=torch.Generator().manual_seed(0), cached=False)
    freq = torch.stack([(s.view(4000, -1) == xs.view(4, -1)[k]).all(1).double().mean() for k in range(4)])
    assert torch.allclose(freq, p, atol=0.03), (freq, p)


@pytest.mark.parametrize("model_cls", MODELS)
def test_save_load_round_trip(model_cls, tmp_path):
    model = tiny(model_cls, 3, num_classes=2).float()
    pw.save(model, tmp_path / "ckpt")
    loaded = pw.load(tmp_path / "ckpt")
    assert type(loaded) is model_cls and loaded.config == model.config
    x = torch.randint(0, 4, (2, 3, 4, 4))
    y = torch.tensor([0, 1])
    assert torch.equal(model.log_prob(x, y), loaded.log_prob(x, y))
    assert not list(tmp_path.glob("ckpt/*.pt")) and not list(tmp_path.glob("ckpt/*.pkl"))


def test_bad_inputs_raise_one_line_errors():
    model = tiny(PixelCNN, 1, levels=2, num_classes=3)
    x = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="class labels"):
        model.log_prob(x, torch.tensor([3]))
    with pytest.raises(ValueError, match="values must be"):
        model.log_prob(x + 2, torch.tensor([0]))
    with pytest.raises(ValueError, match="class-conditional"):
        model.log_prob(x)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        PixelCNN(channels=2)
    with pytest.raises(ValueError, match="levels"):
        GatedPixelCNN(levels=1)


def test_bits_per_dim():
    lp = torch.tensor([-784 * 0.6931471805599453, -2 * 784 * 0.6931471805599453])
    assert torch.isclose(pw.bits_per_dim(lp, 784), torch.tensor(1.5, dtype=lp.dtype))


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_cached_sampler_equals_naive_with_kernel_5_and_a_spatial_map(channels):
    torch.manual_seed(0)
    model = GatedPixelCNN(channels=channels, levels=3, hidden=24, layers=4, kernel_size=5, num_classes=2,
                          cond_channels=2).double()
    cond = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    y = torch.tensor([1, 0])
    known = torch.randint(0, 3, (2, channels, 5, 6))
    keep = torch.rand(2, channels, 5, 6, generator=torch.Generator().manual_seed(1)) < 0.3  # scattered known

    def draw(cached, **kw):
        return model.sample(2, (5, 6), y=y, cond=cond, generator=torch.Generator().manual_seed(5), cached=cached,
                            **kw)

    assert torch.equal(draw(True), draw(False))
    assert torch.equal(draw(True, x=known, mask=keep), draw(False, x=known, mask=keep))


# ---- configs: models take their config; keyword construction keeps working ----
def test_models_take_their_config_and_the_keywords_alike():
    from pixelwave.models import MODELS

    for cls in MODELS.values():
        if cls.data_kind != "image":
            continue
        cfg = cls.config_class.tiny(channels=3, levels=4)
        torch.manual_seed(0)
        a = cls(cfg)
        torch.manual_seed(0)
        b = cls(**dataclasses.asdict(cfg))
        assert a.config == b.config == cfg and (a.channels, a.levels, a.num_classes) == (3, 4, None)
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    gated = GatedPixelCNN(GatedPixelCNNConfig.demo(num_classes=10))
    assert (gated.config.hidden, gated.config.layers, gated.config.kernel_size, gated.num_classes) == (32, 6, 5, 10)
    assert GatedPixelCNN(1, 2, hidden=8, layers=2).config == GatedPixelCNNConfig(1, 2, 8, 2)  # positional fields
    with pytest.raises(TypeError, match="GatedPixelCNNConfig"):
        GatedPixelCNN(GatedPixelCNNConfig(), hidden=8)
    with pytest.raises(ValueError, match="kernel_size must be >= 3"):
        GatedPixelCNNConfig(kernel_size=1)  # the config checks itself, before any model is built
    with pytest.raises(ValueError, match="no size"):
        GatedPixelCNNConfig.named("huge")
