"""p(class | the first sub-pixels): exact, checked against enumerating every completion of a tiny image."""

import itertools

import pytest
import torch

from pixelwave.models import MODELS
from pixelwave.posterior import class_posterior, raster_prefix

IMAGE_MODELS = [name for name, cls in MODELS.items() if cls.data_kind == "image" and not cls.is_bound]


def tiny(name: str, channels: int, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    cls = MODELS[name]
    return cls(cls.config_class.tiny(channels=channels, levels=2, num_classes=classes)).double()


def enumerated_posterior(model, x: torch.Tensor, keep: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """p(y | x_kept) = p(y) * sum over every completion r of the other sub-pixels of p(x_kept, r | y), normalised:
    the definition, by brute force (x: (C, H, W) binary, keep: (C, H, W))."""
    free = (~keep).nonzero().tolist()
    images = x.repeat(2 ** len(free), 1, 1, 1)  # (N, C, H, W): every completion of the free sub-pixels
    for n, bits in enumerate(itertools.product((0, 1), repeat=len(free))):
        for (c, i, j), bit in zip(free, bits, strict=True):
            images[n, c, i, j] = bit
    with torch.no_grad():
        joint = torch.stack([model.log_prob(images, torch.full((len(images),), y)).exp().sum()
                             for y in range(model.num_classes)])  # (K,) p(x_kept | y)
    return joint * prior / (joint * prior).sum()


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_the_prefix_posterior_equals_enumeration(name):
    model = tiny(name, channels=1).eval()
    x = torch.tensor([[[1, 0, 1], [1, 1, 0], [0, 1, 1]]])  # (1, 3, 3)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    for kept in (0, 2, 3, 5, 9):  # mid-row and whole-row prefixes, none and all of it
        keep = (torch.arange(9) < kept).view(1, 3, 3)
        got = class_posterior(model, x[None], keep, prior)[0]
        torch.testing.assert_close(got, enumerated_posterior(model, x, keep, prior), rtol=1e-9, atol=1e-12)
    assert torch.allclose(class_posterior(model, x[None], torch.zeros(3, 3, dtype=torch.bool), prior)[0], prior)


@pytest.mark.parametrize("name", ["pixelcnn", "gated_pixelcnn"])
def test_a_prefix_that_ends_inside_a_pixel_rgb(name):
    model = tiny(name, channels=3).eval()
    x = torch.tensor([[[1, 0]], [[0, 1]], [[1, 1]]])  # (3, 1, 2): two RGB pixels
    keep = torch.tensor([[[True, True]], [[True, False]], [[True, False]]])  # (C, 1, 2): pixel 0, then R of pixel 1
    assert raster_prefix(keep) == 4
    prior = torch.full((3,), 1 / 3, dtype=torch.float64)
    batch = torch.stack([x, 1 - x])  # (2, 3, 1, 2): a posterior per image
    got = class_posterior(model, batch, keep)
    for b in range(2):
        torch.testing.assert_close(got[b], enumerated_posterior(model, batch[b], keep, prior), rtol=1e-9, atol=1e-12)


def test_only_a_prefix_and_only_an_exact_conditional_likelihood():
    model = tiny("pixelcnn", channels=1)
    x = torch.zeros(1, 1, 3, 3, dtype=torch.long)
    left = torch.zeros(3, 3, dtype=torch.bool)
    left[:, 0] = True
    assert raster_prefix(left[None]) is None
    with pytest.raises(ValueError, match="raster order"):
        class_posterior(model, x, left)
    with pytest.raises(ValueError, match="num_classes"):
        class_posterior(MODELS["pixelcnn"](channels=1, levels=2, hidden=4, layers=1, kernel_size=3), x, left)
    vae = MODELS["pixelvae"](MODELS["pixelvae"].config_class.tiny(channels=1, levels=2, num_classes=3))
    with pytest.raises(ValueError, match="bound"):
        class_posterior(vae, x, ~left)
