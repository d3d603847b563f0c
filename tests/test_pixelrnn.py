"""PixelRNN (Row LSTM, Diagonal BiLSTM): causality per sub-pixel, receptive fields, the right-to-left shift,
exact normalisation, sampling, save/load."""

import itertools

import pytest
import torch

import pixelwave as pw
from pixelwave.models import MODELS, DiagonalBiLSTMPixelRNN, RowLSTMPixelRNN
from pixelwave.models.pixelrnn import skew, unskew

KINDS = [RowLSTMPixelRNN, DiagonalBiLSTMPixelRNN]


def tiny(model_cls, channels, levels=4, hidden=12, layers=2, **kw):
    torch.manual_seed(0)
    model = model_cls(channels=channels, levels=levels, hidden=hidden, layers=layers, **kw).double()
    for layer in model.lstm_layers:  # class biases start at zero; make the class matter
        if layer.class_bias is not None:
            torch.nn.init.normal_(layer.class_bias.weight)
    return model


def order(c, i, j, channels, width):
    """Position of sub-pixel (c, i, j) in the generation order: raster over pixels, then R -> G -> B."""
    return (i * width + j) * channels + c


def dependency_matrix(model, x):
    """moved[p, q]: changing sub-pixel p changes the distribution of sub-pixel q, for any of the images in x.

    All single-sub-pixel perturbations of an image go through the model as one batch (an RNN pays per pass).
    In float64 a change counts above 1e-12: rows of one batch may round differently in a batched matrix
    product (the Diagonal BiLSTM's recurrence; 2e-16 seen), while the real dependencies here are > 1e-8.
    """
    _, channels, h, w = x.shape
    n = channels * h * w
    moved = torch.zeros(n, n, dtype=torch.bool)
    subpixels = list(itertools.product(range(channels), range(h), range(w)))
    for img in x:
        batch = img.repeat(n + 1, 1, 1, 1)  # (n + 1, C, H, W): row 0 unchanged
        for k, (c, i, j) in enumerate(subpixels, start=1):
            batch[k, c, i, j] = (batch[k, c, i, j] + 1) % model.levels
        logp = torch.log_softmax(model.logits(model.scale(batch)), dim=2)  # (n + 1, C, L, H, W)
        delta = ((logp[1:] - logp[:1]).abs() > 1e-12).any(2)  # (n, C, H, W)
        for k, (c, i, j) in enumerate(subpixels):
            p = order(c, i, j, channels, w)
            for c2, i2, j2 in zip(*torch.nonzero(delta[k], as_tuple=True), strict=True):
                moved[p, order(int(c2), int(i2), int(j2), channels, w)] = True
    return moved


def later_than(n):
    return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # [p, q]: q comes after p


def random_images(channels, h, w, seed, count=3, levels=4):
    return torch.randint(0, levels, (count, channels, h, w), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_cls", KINDS)
@pytest.mark.parametrize("channels", [1, 3])
def test_no_sub_pixel_sees_itself_or_the_future(model_cls, channels):
    model = tiny(model_cls, channels, hidden=8 * channels)  # 8 units per colour: ReLUs rarely hide a path
    moved = dependency_matrix(model, random_images(channels, 4, 5, seed=1))
    assert not (moved & ~later_than(len(moved))).any(), "a sub-pixel moved when itself or a later one changed"
    if channels == 3:  # within a pixel G depends on R, B on R and G: masks A then B carried through the LSTM
        for i, j in itertools.product(range(4), range(5)):
            r, g, b = (order(c, i, j, 3, 5) for c in range(3))
            assert moved[r, g] and moved[r, b] and moved[g, b], f"colour order broken at pixel {(i, j)}"


@pytest.mark.parametrize("channels", [1, 3])
def test_diagonal_bilstm_sees_every_earlier_sub_pixel(channels):
    """No blind spot, and one layer is enough: left-to-right covers up-left, the shifted right-to-left up-right."""
    model = tiny(DiagonalBiLSTMPixelRNN, channels, layers=1)
    moved = dependency_matrix(model, random_images(channels, 4, 6, seed=2))
    assert torch.equal(moved, later_than(len(moved)))


def test_diagonal_bilstm_without_the_down_shift_leaks():
    """The shift is what keeps it causal: without it pixel (i, j) sees (i, j+1), (i, j+2), ... in its row."""
    model = tiny(DiagonalBiLSTMPixelRNN, 1)
    x = random_images(1, 3, 4, seed=3)
    assert not (dependency_matrix(model, x) & ~later_than(12)).any()
    for layer in model.lstm_layers:
        layer._shift_right_to_left = False
    moved = dependency_matrix(model, x)
    assert (moved & ~later_than(12)).any(), "removing the shift should leak the future"
    assert moved[order(0, 1, 3, 1, 4), order(0, 1, 2, 1, 4)], "(1, 3) should leak into (1, 2) without the shift"


def test_diagonal_bilstm_right_to_left_needs_its_own_pixel():
    """The paper's layer has one gap: no hidden map at (i, j) holds pixel (i, j) (mask A first), so the last
    pixel of a row reaches the next row only through the 7x7 conv, 3 columns. Reading the image in the
    right-to-left input-to-state (safe: that direction is used one row down) closes it."""
    model = tiny(DiagonalBiLSTMPixelRNN, 1)
    for layer in model.lstm_layers:
        layer._right_to_left_sees_its_pixel = False
    moved = dependency_matrix(model, random_images(1, 3, 6, seed=2))
    assert not (moved & ~later_than(18)).any()
    missed = {(p, q) for p, q in (later_than(18) & ~moved).nonzero().tolist()}
    assert missed == {(order(0, i, 5, 1, 6), order(0, i + 1, j, 1, 6)) for i in (0, 1) for j in (0, 1)}


def test_row_lstm_receptive_field_is_a_triangle():
    """Target (i, j) sees row i-d up to column j+d+2 (7x7 mask A reaches 3 right one row up, then each row
    up through the 1x3 state-to-state widens by one) and nothing to the right of that; the left is all seen."""
    model = tiny(RowLSTMPixelRNN, 1, layers=2)
    h, w, (ti, tj) = 5, 10, (4, 2)
    moved = dependency_matrix(model, random_images(1, h, w, seed=4))
    target = order(0, ti, tj, 1, w)
    seen = {(i, j) for i in range(h) for j in range(w) if moved[order(0, i, j, 1, w), target]}
    triangle = {(i, j) for i in range(ti) for j in range(w) if j <= tj + (ti - i) + 2} | {(ti, j) for j in range(tj)}
    assert seen == triangle
    assert (3, 6) not in seen and (0, 9) not in seen and (0, 8) in seen  # the edge of the triangle


@pytest.mark.parametrize("model_cls", KINDS)
@pytest.mark.parametrize("num_classes", [None, 3])
def test_exact_normalisation_over_all_binary_rgb_2x2_images(model_cls, num_classes):
    model = tiny(model_cls, 3, levels=2, num_classes=num_classes)
    x = torch.tensor(list(itertools.product(range(2), repeat=12))).view(-1, 3, 2, 2)  # all 4,096 images
    y = torch.full((len(x),), 2) if num_classes else None
    total = model.log_prob(x, y).detach().exp().sum()
    assert abs(float(total) - 1.0) < 1e-5
    if num_classes:  # another class: another distribution, also normalised
        other = model.log_prob(x, torch.zeros(len(x), dtype=torch.long)).detach()
        assert abs(float(other.exp().sum()) - 1.0) < 1e-5
        assert not torch.allclose(other, model.log_prob(x, y).detach())


@pytest.mark.parametrize("model_cls", KINDS)
def test_exact_normalisation_gray_three_levels_on_a_wide_image(model_cls):
    model = tiny(model_cls, 1, levels=3)
    x = torch.tensor(list(itertools.product(range(3), repeat=6))).view(-1, 1, 2, 3)  # all 729 images
    assert abs(float(model.log_prob(x).detach().exp().sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("model_cls", KINDS)
def test_same_seed_same_samples_and_cached_equals_naive(model_cls):
    model = tiny(model_cls, 3, num_classes=2)
    torch.manual_seed(1)
    for p in model.parameters():  # sharper conditionals than at init, so a sampler bug changes the draws
        torch.nn.init.normal_(p, std=0.5)
    y = torch.tensor([0, 1, 1])

    def draw(seed, cached, **kw):
        return model.sample(3, (3, 4), y=y, generator=torch.Generator().manual_seed(seed), cached=cached, **kw)

    a = draw(7, True)
    assert torch.equal(a, draw(7, True))
    assert torch.equal(a, draw(7, False))
    assert not torch.equal(a, draw(8, True))
    assert a.shape == (3, 3, 3, 4) and a.min() >= 0 and a.max() < 4
    known = random_images(3, 3, 4, seed=5)
    keep = torch.rand(3, 3, 3, 4, generator=torch.Generator().manual_seed(6)) < 0.3  # scattered known sub-pixels
    done = draw(7, True, x=known, mask=keep)
    assert torch.equal(done[keep], known[keep])
    assert torch.equal(done, draw(7, False, x=known, mask=keep))


@pytest.mark.parametrize("model_cls", KINDS)
def test_save_load_round_trip(model_cls, tmp_path):
    model = tiny(model_cls, 3, num_classes=2).float()
    pw.save(model, tmp_path / "ckpt")
    loaded = pw.load(tmp_path / "ckpt")
    assert type(loaded) is model_cls and loaded.config == model.config
    assert MODELS[model_cls.model_name] is model_cls
    x = random_images(3, 4, 4, seed=7, count=2)
    y = torch.tensor([0, 1])
    assert torch.equal(model.log_prob(x, y), loaded.log_prob(x, y))


@pytest.mark.parametrize("model_cls", KINDS)
def test_a_few_steps_of_training_fit_one_image(model_cls):
    model = tiny(model_cls, 1, levels=2).float()
    x = random_images(1, 5, 5, seed=8, count=1, levels=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(-model(x).detach())
    for _ in range(30):
        opt.zero_grad()
        (-model(x).mean()).backward()
        opt.step()
    assert float(-model(x).detach()) < 0.3 * first


def test_skew_and_unskew():
    x = torch.arange(2 * 3 * 4, dtype=torch.float64).view(1, 2, 3, 4)
    s = skew(x)  # (1, 2, 3, 6)
    assert s.shape == (1, 2, 3, 6) and torch.equal(unskew(s), x)
    assert torch.equal(s[0, 0, 2, 2:6], x[0, 0, 2]) and not s[0, 0, 2, :2].any()


def test_bad_config_raises():
    with pytest.raises(ValueError, match="layers must be >= 1"):
        RowLSTMPixelRNN(layers=0)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        DiagonalBiLSTMPixelRNN(channels=2)
