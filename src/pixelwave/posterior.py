"""p(class | the first sub-pixels of an image), exactly, from a class-conditional image model.

An autoregressive model gives the likelihood of a prefix in its order exactly, Π_{i<k} p(x_i | x_<i, y), because
nothing before position k depends on what comes after it. Bayes then gives the class posterior with no
approximation: p(y | x_<k) ∝ p(y) p(x_<k | y). For kept pixels that are not a prefix (say the left half) the same
sum would condition on pixels that are unknown, and the exact answer would need a sum over all of them.
"""

from __future__ import annotations

import torch


def raster_prefix(keep: torch.Tensor) -> int | None:
    """The number of sub-pixels `keep` (C, H, W) marks if they are the first ones in the models' order (raster,
    then R -> G -> B inside a pixel), else None."""
    order = keep.permute(1, 2, 0).flatten()  # (H * W * C,) in the order the models factorise in
    k = int(order.sum())
    return k if bool(order[:k].all()) else None


@torch.no_grad()
def class_posterior(model, x: torch.Tensor, keep: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """p(y | the kept sub-pixels of x) for each image: (B, num_classes), each row summing to 1.

    x: (B, C, H, W) levels, of which only the kept ones are read (the others may hold anything); keep: (C, H, W)
    or (H, W) bool, True where x is known, and a prefix in the models' order (`raster_prefix`), e.g. the top
    rows; prior: (num_classes,) class probabilities, e.g. the training labels' frequencies (default uniform).
    ValueError if the model is not class-conditional, its log_prob is a bound (PixelVAE), or `keep` is no prefix.
    """
    if model.num_classes is None:
        raise ValueError(f"{type(model).__name__} was built without num_classes: it has no class posterior")
    if model.is_bound:
        raise ValueError(f"{type(model).__name__}'s log_prob is a lower bound: the posterior would not be exact")
    batch, channels, h, w = x.shape
    keep = keep.to(torch.bool).expand(channels, h, w)
    if raster_prefix(keep) is None:
        raise ValueError("the kept sub-pixels must be the first ones in raster order (e.g. the top rows)")
    classes = model.num_classes
    prior = torch.full((classes,), 1.0 / classes, dtype=torch.float64) if prior is None else \
        torch.as_tensor(prior, dtype=torch.float64)
    if prior.shape != (classes,) or bool((prior < 0).any()) or not float(prior.sum()) > 0:
        raise ValueError(f"prior must be ({classes},) non-negative probabilities, got {prior.tolist()}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    xs = x.to(device).repeat(classes, 1, 1, 1)  # (K * B, C, H, W): every image under every class, class-major
    ys = torch.arange(classes, device=device).repeat_interleave(batch)  # (K * B,)
    log_p = model.log_prob(xs, ys, reduce=False)  # (K * B, C, H, W): log p(x_i | x_<i, y)
    model.train(was_training)
    prefix = torch.where(keep.to(device), log_p.double(), 0.0).flatten(1).sum(1).view(classes, batch).T  # (B, K)
    return torch.softmax(prefix + prior.to(prefix).log(), dim=1)
