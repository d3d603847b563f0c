"""The interface every pixelwave model declares (`Autoregressive`), and what every image model shares
(`ImageAutoregressive`): input checks, the exact likelihood, and the sequential sampler.

An image model implements `logits(x, y, cond)`: from the scaled image (B, C, H, W) to (B, C, levels, H, W) logits in
which the distribution of sub-pixel (c, i, j) depends only on sub-pixels before it in raster, then R -> G -> B,
order. Everything else follows from that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.distributions import categorical_log_prob, categorical_sample
from pixelwave.nn import Head, MaskedConv2d
from pixelwave.runtime import full_float32


def check_in_range(t: torch.Tensor, high: int, what: str) -> None:
    """ValueError, one line with the values found, unless every element of `t` is in [0, high).

    Under torch.compile the same check runs as an assertion inside the graph (a RuntimeError with the same
    words, without the values): reading the values into Python would break the graph, which torch.compile
    reports at length at every compile, and leave the compiled code without the check."""
    if torch.compiler.is_compiling():
        torch._assert_async(((t >= 0) & (t < high)).all(), f"{what} must be in [0, {high})")
    elif t.numel() and (int(t.min()) < 0 or int(t.max()) >= high):
        raise ValueError(f"{what} must be in [0, {high}), got [{int(t.min())}, {int(t.max())}]")


@contextmanager
def single_thread():
    """Run a loop of tiny ops on one thread: at these sizes a second thread only adds synchronisation, and on a
    busy machine every op waits for it (measured 14-360x slower with 2 threads; benchmarks/run.py)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def require(ok: bool, message: str) -> None:
    """A config check: ValueError with the one-line `message` unless `ok`."""
    if not ok:
        raise ValueError(message)


def check_image_fields(channels: int, levels: int, num_classes: int | None, hidden: int | None = None,
                       kernel_size: int | None = None) -> None:
    """The checks of the fields that image configs share; `hidden` (at least two units per colour group) and
    `kernel_size` (odd, so that the centre is a pixel) for the configs that have them."""
    require(channels in (1, 3), f"channels must be 1 or 3, not {channels}")
    require(2 <= levels <= 256, f"levels must be in 2..256, not {levels}")
    if hidden is not None:
        require(hidden >= 2 * channels,
                f"hidden must be at least {2 * channels} for {channels} channel(s), not {hidden}")
    if kernel_size is not None:
        require(kernel_size >= 1 and kernel_size % 2 == 1, f"kernel_size must be odd and positive, not {kernel_size}")
    require(num_classes is None or num_classes >= 1, f"num_classes must be >= 1 or None, not {num_classes}")


class ModelConfig:
    """What every model's config dataclass shares: named sizes (`SIZES`, e.g. `WaveNetConfig.standard()`) and
    `replace`. The fields themselves, and their checks in `__post_init__`, are each config's own."""

    SIZES: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def named(cls, name: str, **overrides: Any):
        """The config of the named size, with `overrides` on top of it."""
        if name not in cls.SIZES:
            raise ValueError(f"{cls.__name__} has no size {name!r} (known: {', '.join(cls.SIZES) or 'none'})")
        return cls(**{**cls.SIZES[name], **overrides})

    @classmethod
    def tiny(cls, **overrides: Any):
        """The smallest model that runs every code path: the CLI's `--preset tiny`, and the tests'."""
        return cls.named("tiny", **overrides)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


class Autoregressive(nn.Module):
    """What every model declares, so that the training loop, the CLI and `compare` ask the model what it is
    instead of probing it: p(data | conditions) = prod_i p(data_i | data_<i, conditions).

    `forward(**batch)` is the training pass: log p in nats, (B,), for a batch dict holding exactly the keys in
    `inputs` (the data set's batch may hold more: the caller picks `inputs` out of it). `log_prob` takes the same
    keywords plus `reduce`. Image models draw with `sample`, audio models with `generate`.
    """

    model_name: ClassVar[str] = ""  # the CLI and checkpoint name, e.g. "gated_pixelcnn"
    config_class: ClassVar[type]  # the dataclass of its constructor arguments; `self.config` is one
    data_kind: ClassVar[str] = ""  # "image" or "audio": the kind of data set it models
    data_key: ClassVar[str] = ""  # the forward() keyword of the data: "x" (image levels) or "a" (audio codes)
    is_bound: ClassVar[bool] = False  # log_prob is a lower bound on log p (PixelVAE's ELBO), not log p itself
    # Each condition key the family can take, and the attribute that is not None when a model takes it.
    condition_attributes: ClassVar[dict[str, str]] = {}
    config: Any

    def __init__(self, *args: Any, config: Any = None, **kwargs: Any):
        """`Model(config)` with a `config_class` instance, or the config's fields: `Model(channels=1, levels=2)`
        (positional fields in the config's order work too). The subclass builds its layers from `self.config`."""
        super().__init__()
        if args and isinstance(args[0], ModelConfig):
            config, args = args[0], args[1:]
        if config is not None:
            if not isinstance(config, self.config_class) or args or kwargs:
                raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__} and nothing else, "
                                f"or the config's fields")
        self.config = config if config is not None else self.config_class(*args, **kwargs)

    @property
    def conditions(self) -> tuple[str, ...]:
        """The condition keys this model was built to take ("y" labels, "speaker" ids, "cond" features)."""
        return tuple(key for key, attr in self.condition_attributes.items() if getattr(self, attr) is not None)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The keywords of `forward`: the data key, then the conditions."""
        return (self.data_key, *self.conditions)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The training pass: log p(data | conditions), (B,) nats."""
        return self.log_prob(**inputs, reduce=True)

    def log_prob(self, *args, reduce: bool = True, **kwargs) -> torch.Tensor:
        raise NotImplementedError


@dataclasses.dataclass
class PixelSteps:
    """A model's part of the cached image sampler (`ImageAutoregressive._sample_cached`, the raster loop).

    The loop keeps `x_map`, the scaled image (n, C, H, W) zero-padded by `padding` on every side, with every
    sub-pixel drawn so far written in; `step(x_map, i, j)` runs the network at pixel (i, j) only and returns the
    logits (n, C, levels) there; `end_row(x_map, i)` is called once row i is final (every colour drawn).
    """

    step: Callable[[torch.Tensor, int, int], torch.Tensor]
    end_row: Callable[[torch.Tensor, int], None] = lambda x_map, i: None
    padding: int = 0


class ImageAutoregressive(Autoregressive):
    data_kind = "image"
    data_key = "x"
    condition_attributes = {"y": "num_classes", "cond": "cond_channels"}  # cond: PixelVAE's decoder's latent map

    # The config's fields that callers read off the model.
    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    @property
    def cond_channels(self) -> int | None:
        """Channels of the spatial conditioning map; None: the model takes none (overridden where it does)."""
        return None

    @staticmethod
    def make_head(hidden: int, channels: int, levels: int) -> Head:
        """ReLU, 1x1 mask B, ReLU, 1x1 mask B to the C * levels logits; colour groups keep the R -> G -> B order."""
        return Head(MaskedConv2d(hidden, hidden, (1, 1), "B", channels),
                    MaskedConv2d(hidden, channels * levels, (1, 1), "B", channels))

    def pixel_head(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """`self.head` at one pixel, for the cached samplers: features (n, hidden) -> logits (n, C, levels). Its
        masked matrices are computed once, here, not at every pixel."""
        h1, h2 = self.head.hidden_conv, self.head.output_conv
        w1, w2 = h1.matrix(), h2.matrix()

        def head(a: torch.Tensor) -> torch.Tensor:
            hidden = F.relu(F.linear(F.relu(a), w1, h1.bias))
            return F.linear(hidden, w2, h2.bias).view(-1, self.channels, self.levels)

        return head

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """Integer levels (B, C, H, W) -> floats in [-1, 1], the network's input."""
        dtype = next(self.parameters()).dtype
        return x.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    # ---- checks: raise ValueError with one line; the CLI turns its own checks into UserError ----
    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None, cond: torch.Tensor | None) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"x must be (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if x.dtype.is_floating_point:
            raise ValueError("x must hold integer levels (a LongTensor), not floats")
        check_in_range(x, self.levels, "x values")
        self.check_class(y, x.shape[0])
        if self.cond_channels is None:
            if cond is not None:
                raise ValueError(f"{type(self).__name__} was built without cond_channels; cond must be None")
        elif cond is None or cond.shape != (x.shape[0], self.cond_channels, *x.shape[2:]):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"cond must be (B, {self.cond_channels}, H, W) = "
                             f"({x.shape[0]}, {self.cond_channels}, {x.shape[2]}, {x.shape[3]}), got {got}")

    def check_class(self, y: torch.Tensor | None, batch: int) -> None:
        if self.num_classes is None:
            if y is not None:
                raise ValueError(f"{type(self).__name__} was built without num_classes; y must be None")
            return
        if y is None:
            raise ValueError(f"this model is class-conditional (num_classes={self.num_classes}); pass y")
        if y.shape != (batch,):
            raise ValueError(f"y must be ({batch},), got {tuple(y.shape)}")
        check_in_range(y, self.num_classes, "class labels")

    # ---- likelihood ----
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, reduce: bool = True,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | y) in nats: (B,) summed over all C*H*W sub-pixels, or (B, C, H, W) with reduce=False."""
        self.check_inputs(x, y, cond)
        logits = self.logits(self.scale(x), y, cond)  # (B, C, L, H, W)
        logp = categorical_log_prob(logits, x, dim=2)  # (B, C, H, W)
        return logp.flatten(1).sum(1) if reduce else logp

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """The training pass: log p(x | y), (B,) nats."""
        return self.log_prob(x, y, reduce=True, cond=cond)

    # ---- sampling ----
    def _sampling_inputs(self, n, size, y, x, mask, cond, device):
        if x is not None:
            if x.dim() != 4 or x.shape[0] != n or x.shape[1] != self.channels:
                raise ValueError(f"x must be ({n}, {self.channels}, H, W), got {tuple(x.shape)}")
            if size is not None and tuple(size) != tuple(x.shape[2:]):
                raise ValueError(f"size {tuple(size)} does not match x {tuple(x.shape[2:])}")
            size = tuple(x.shape[2:])
            if mask is None:
                raise ValueError("completion needs mask= (True where x is kept)")
        elif mask is not None:
            raise ValueError("mask= needs x= (the known values)")
        if size is None:
            raise ValueError("pass size=(H, W) (or x= for completion)")
        h, w = int(size[0]), int(size[1])
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive, got {size}")
        if isinstance(y, int):
            y = torch.full((n,), y, dtype=torch.long)
        if y is not None:
            y = y.to(device)
        self.check_class(y, n)
        out = torch.zeros(n, self.channels, h, w, dtype=torch.long, device=device)
        keep = torch.zeros_like(out, dtype=torch.bool)
        if x is not None:
            keep = torch.as_tensor(mask, dtype=torch.bool, device=device).expand_as(out).clone()
            out = torch.where(keep, x.to(device).long(), out)
            self.check_inputs(out, y, cond)
        elif cond is not None or self.cond_channels is not None:
            self.check_inputs(out, y, cond)
        return out, keep, y

    @torch.no_grad()
    @full_float32()
    def sample(self, n: int, size: tuple[int, int] | None = None, y: torch.Tensor | int | None = None,
               generator: torch.Generator | None = None, cached: bool = True, x: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, cond: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Draw n images (n, C, H, W) one sub-pixel at a time; with x and mask, keep x where mask is True.

        All randomness is drawn up front from `generator` (one uniform per sub-pixel), so every sampler
        implementation given the same generator seed returns the same images.
        """
        device = next(self.parameters()).device
        out, keep, y = self._sampling_inputs(n, size, y, x, mask, cond, device)
        u = torch.rand(out.shape, generator=generator).to(device)  # (n, C, H, W)
        if cached:
            with single_thread():
                return self._sample_cached(out, keep, y, cond, u, temperature)
        return self._sample_naive(out, keep, y, cond, u, temperature)

    def _sample_naive(self, out, keep, y, cond, u, temperature):
        """The reference sampler: one full parallel pass per sub-pixel."""
        was_training = self.training
        self.eval()
        _, channels, h, w = out.shape
        for i in range(h):
            for j in range(w):
                for c in range(channels):
                    if bool(keep[:, c, i, j].all()):
                        continue
                    logits = self.logits(self.scale(out), y, cond)  # (n, C, L, H, W)
                    s = categorical_sample(logits[:, c, :, i, j], u[:, c, i, j], temperature)  # (n,)
                    out[:, c, i, j] = torch.where(keep[:, c, i, j], out[:, c, i, j], s)
        self.train(was_training)
        return out

    @torch.no_grad()
    def _sample_cached(self, out, keep, y, cond, u, temperature):
        """Same samples as the naive sampler, running the network only at the pixel being drawn (Ramachandran et
        al. 2017): the raster loop, with the model's caches in `_pixel_steps`."""
        n, channels, height, width = out.shape
        steps = self._pixel_steps(out, y, cond)
        p = steps.padding
        x_map = F.pad(self.scale(out), (p, p, p, p))  # (n, C, H + 2p, W + 2p)
        for i in range(height):
            for j in range(width):
                todo = [c for c in range(channels) if not bool(keep[:, c, i, j].all())]
                # The last pass leaves the caches final: hidden units at (i, j) never see the last colour.
                passes = todo if todo and todo[-1] == channels - 1 else todo + [channels - 1]
                for c in passes:
                    logits = steps.step(x_map, i, j)  # (n, C, L)
                    if c not in todo:
                        continue
                    s = categorical_sample(logits[:, c], u[:, c, i, j], temperature)  # (n,)
                    out[:, c, i, j] = torch.where(keep[:, c, i, j], out[:, c, i, j], s)
                    x_map[:, c, i + p, j + p] = self.scale(out[:, :, i, j][:, :, None, None])[:, c, 0, 0]
            steps.end_row(x_map, i)
        return out

    def _pixel_steps(self, out: torch.Tensor, y: torch.Tensor | None, cond: torch.Tensor | None) -> PixelSteps:
        """The model's caches for drawing `out` (n, C, H, W) given y and cond: see `PixelSteps`."""
        raise NotImplementedError(f"{type(self).__name__} has no cached sampler; pass cached=False")
