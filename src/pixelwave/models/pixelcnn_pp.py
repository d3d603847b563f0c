"""PixelCNN++ (Salimans et al. 2017, "PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture
Likelihood and Other Modifications").

No masks: causality comes from shifted convolutions. The u stream ("up") sees every row above the pixel
(down-shifted 2x3 convs); the ul stream ("up and left") also sees the current row left of the pixel
(down-right-shifted 2x2 convs) and reads the u stream at every layer. Gated ResNet blocks with concat_elu and
dropout run at three resolutions: full, 1/2 and 1/4 (strided shifted convs down, transposed shifted convs up), with
short-cut connections from the up pass to the down pass as in a U-Net. A 1x1 head turns the last ul activations
into a discretized logistic mixture per pixel whose component is shared by R, G and B, with G's mean linear in R
and B's in R and G (pixelwave.distributions). Any image size works: the strided convs round up and the
transposed convs crop back to the size of the short-cut.

The network's output at pixel (i, j) never depends on pixel (i, j) or later, and every op is row-local (an output
row needs at most two input rows above it, or two fine rows per coarse row), so the cached sampler recomputes, per
pixel, one row of every layer instead of the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.distributions import (
    categorical_sample,
    discretized_logistic_mixture_log_prob,
    discretized_logistic_mixture_table,
    mixture_param_count,
)
from pixelwave.models.base import ImageAutoregressive, ModelConfig, check_image_fields, require
from pixelwave.nn import (
    DownRightShiftedConv2d,
    DownRightShiftedConvTranspose2d,
    DownShiftedConv2d,
    DownShiftedConvTranspose2d,
    Dropout,
    down_shift,
    right_shift,
)


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """ELU of x and of -x, concatenated: (B, C, H, W) -> (B, 2C, H, W). Keeps both signs' information."""
    return F.elu(torch.cat([x, -x], dim=1))


class GatedResNet(nn.Module):
    """x + a * sigmoid(b), (a, b) = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(aux))))) + V h.

    `conv` is the stream's shifted convolution; `aux` are short-cut inputs (the u stream for ul, skips from the up
    pass); h is the class, through an embedding (one-hot times V).
    """

    def __init__(self, hidden: int, conv: type[nn.Conv2d], aux_channels: int, dropout: float,
                 num_classes: int | None):
        super().__init__()
        self.conv_in = conv(2 * hidden, hidden)
        self.aux = nn.Conv2d(2 * aux_channels, hidden, 1) if aux_channels else None  # "nin"
        self.dropout = Dropout(dropout)
        self.conv_out = conv(2 * hidden, 2 * hidden)
        with torch.no_grad():  # start near the identity (the paper's init_scale=0.1 on this conv)
            self.conv_out.weight.mul_(0.1)
            self.conv_out.bias.zero_()
        self.class_proj = nn.Embedding(num_classes, 2 * hidden) if num_classes else None
        if self.class_proj is not None:
            nn.init.normal_(self.class_proj.weight, std=0.05)

    def forward(self, x: torch.Tensor, *aux: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, hidden, H, W), aux: each (B, ., H, W) -> (B, hidden, H, W)."""
        c1 = self.conv_in(concat_elu(x))  # (B, hidden, H, W)
        if self.aux is not None:
            c1 = c1 + self.aux(concat_elu(torch.cat(aux, dim=1)))
        c2 = self.conv_out(self.dropout(concat_elu(c1)))  # (B, 2 * hidden, H, W)
        if self.class_proj is not None:
            c2 = c2 + self.class_proj(y)[:, :, None, None]  # (B, 2 * hidden, 1, 1)
        a, b = c2.chunk(2, dim=1)  # each (B, hidden, H, W)
        return x + a * torch.sigmoid(b)


def _parallel(fn, *inputs, kind="same", scale=0, per_row=False, **kw):
    """The training pass: every op on the whole image (the row-by-row twin is `_RowCache`)."""
    return fn(*inputs, **kw)


class _RowCache:
    """Runs the trunk one row at a time, keeping every op's output for the whole image between calls.

    Each op recomputes only output row `row >> scale` of its resolution, from a window of its inputs' stored rows
    deep enough that the window's top padding cannot reach the last row: two rows above for the shifted convs
    ("same"), the two fine rows plus one aligned row above for a stride-2 conv ("down"), the one coarse row for a
    transposed conv ("up"). Rows above are final by then: they only depend on pixels already drawn. Ops marked
    per_row (the u stream, which only sees rows above) run once per row.
    """

    def __init__(self, sizes: list[tuple[int, int]]):
        self.sizes, self.store = sizes, {}
        self.row, self.new_row, self.count = 0, True, 0

    def __call__(self, fn, *inputs, kind="same", scale=0, per_row=False, **kw):
        key, self.count = self.count, self.count + 1
        if per_row and not self.new_row:
            return self.store[key]
        r = self.row >> scale
        if kind == "same":
            lo = max(0, r - 2)
            out = fn(*(t[:, :, lo:r + 1] for t in inputs), **kw)[:, :, -1]  # (B, C_out, W_s)
        elif kind == "down":  # the window starts on an even fine row so the stride lines up as in the full pass
            lo = max(0, 2 * r - 2)
            out = fn(*(t[:, :, lo:2 * r + 1] for t in inputs), **kw)[:, :, -1]
        else:  # "up"
            kw["size"] = (2, self.sizes[scale][1])  # both fine rows of the one coarse row, cropped in width
            out = fn(*(t[:, :, r // 2:r // 2 + 1] for t in inputs), **kw)[:, :, r % 2]  # (B, C_out, W_s)
        if key not in self.store:
            self.store[key] = out.new_zeros(*out.shape[:2], *self.sizes[scale])  # (B, C_out, H_s, W_s)
        self.store[key][:, :, r] = out
        return self.store[key]


@dataclass
class PixelCNNPPConfig(ModelConfig):
    channels: int = 1
    levels: int = 256
    hidden: int = 64  # nr_filters
    layers: int = 2  # nr_resnet: gated ResNet blocks per stage (6 stages: 3 resolutions, up and down)
    mixtures: int = 5  # nr_logistic_mix
    dropout: float = 0.5
    num_classes: int | None = None

    SIZES: ClassVar[dict] = {"tiny": dict(hidden=8, layers=2)}

    def __post_init__(self):
        check_image_fields(self.channels, self.levels, self.num_classes)
        require(self.hidden >= 1, f"hidden must be >= 1, not {self.hidden}")
        require(self.layers >= 1, f"layers must be >= 1, not {self.layers}")
        require(self.mixtures >= 1, f"mixtures must be >= 1, not {self.mixtures}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), not {self.dropout}")


class PixelCNNPP(ImageAutoregressive):
    """`PixelCNNPP(PixelCNNPPConfig(...))`, or the config's fields: `PixelCNNPP(channels=3, hidden=64)`."""

    model_name = "pixelcnn_pp"
    config_class = PixelCNNPPConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        channels, hidden, layers = cfg.channels, cfg.hidden, cfg.layers

        def blocks(n, conv, aux):
            return nn.ModuleList(GatedResNet(hidden, conv, aux, cfg.dropout, cfg.num_classes) for _ in range(n))

        # +1 input channel of ones: the network can tell the image's border from the zero padding.
        self.u_init = DownShiftedConv2d(channels + 1, hidden, (2, 3))  # then shifted down: rows above only
        self.ul_init_above = DownShiftedConv2d(channels + 1, hidden, (1, 3))  # then shifted down: the row above
        self.ul_init_left = DownRightShiftedConv2d(channels + 1, hidden, (2, 1))  # then shifted right: the left
        # Up pass (fine to coarse): `layers` blocks at each of 3 resolutions, stride-2 convs between them.
        self.up_u = nn.ModuleList(blocks(layers, DownShiftedConv2d, 0) for _ in range(3))
        self.up_ul = nn.ModuleList(blocks(layers, DownRightShiftedConv2d, hidden) for _ in range(3))
        self.downsample_u = nn.ModuleList(DownShiftedConv2d(hidden, hidden, (2, 3), stride=2) for _ in range(2))
        self.downsample_ul = nn.ModuleList(DownRightShiftedConv2d(hidden, hidden, (2, 2), stride=2)
                                           for _ in range(2))
        # Down pass (coarse to fine): every block also reads one up-pass output of its resolution (short-cut).
        self.down_u = nn.ModuleList(blocks(n, DownShiftedConv2d, hidden) for n in (layers, layers + 1, layers + 1))
        self.down_ul = nn.ModuleList(blocks(n, DownRightShiftedConv2d, 2 * hidden)
                                     for n in (layers, layers + 1, layers + 1))
        self.upsample_u = nn.ModuleList(DownShiftedConvTranspose2d(hidden, hidden) for _ in range(2))
        self.upsample_ul = nn.ModuleList(DownRightShiftedConvTranspose2d(hidden, hidden) for _ in range(2))
        self.head = nn.Conv2d(hidden, mixture_param_count(channels, cfg.mixtures), 1)  # "nin" to mixture parameters

    # ---- the network ----
    def _trunk(self, x: torch.Tensor, y: torch.Tensor | None, sizes: list[tuple[int, int]], run=_parallel):
        """x (B, C+1, H, W) image with its ones channel -> the last ul activations (B, hidden, H, W).

        `run(fn, *inputs, kind, scale, per_row)` applies one op: directly (training), or one row at a time with
        caches (sampling). `sizes` are the (H, W) of the three resolutions.
        """
        u_list = [run(lambda t: down_shift(self.u_init(t)), x, per_row=True)]
        ul_list = [run(lambda t: down_shift(self.ul_init_above(t)) + right_shift(self.ul_init_left(t)), x)]
        for s in range(3):  # up pass
            if s > 0:
                u_list.append(run(self.downsample_u[s - 1], u_list[-1], kind="down", scale=s, per_row=True))
                ul_list.append(run(self.downsample_ul[s - 1], ul_list[-1], kind="down", scale=s))
            for block_u, block_ul in zip(self.up_u[s], self.up_ul[s], strict=True):
                u_list.append(run(block_u, u_list[-1], y=y, scale=s, per_row=True))
                ul_list.append(run(block_ul, ul_list[-1], u_list[-1], y=y, scale=s))
        u, ul = u_list.pop(), ul_list.pop()
        for stage, s in enumerate((2, 1, 0)):  # down pass, short-cuts popped in reverse
            if stage > 0:
                u = run(self.upsample_u[stage - 1], u, kind="up", scale=s, per_row=True, size=sizes[s])
                ul = run(self.upsample_ul[stage - 1], ul, kind="up", scale=s, size=sizes[s])
            for block_u, block_ul in zip(self.down_u[stage], self.down_ul[stage], strict=True):
                u = run(block_u, u, u_list.pop(), y=y, scale=s, per_row=True)
                ul = run(block_ul, ul, u, ul_list.pop(), y=y, scale=s)
        assert not u_list and not ul_list
        return ul

    @staticmethod
    def _sizes(h: int, w: int) -> list[tuple[int, int]]:
        """(H, W) at full, 1/2 and 1/4 resolution; the stride-2 convs round up."""
        sizes = [(h, w)]
        for _ in range(2):
            h, w = (h + 1) // 2, (w + 1) // 2
            sizes.append((h, w))
        return sizes

    def _with_ones(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (B, C + 1, H, W)

    def mixture_params(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled image (B, C, H, W) -> mixture parameters (B, P, H, W); pixel (i, j)'s see earlier pixels only."""
        ul = self._trunk(self._with_ones(x), y, self._sizes(*x.shape[2:]))
        return self.head(F.elu(ul))  # (B, P, H, W)

    def _levels_of(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round((x + 1.0) * ((self.levels - 1) / 2.0)).long()  # inverse of `scale`

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled image (B, C, H, W) -> normalised log-probabilities (B, C, levels, H, W) of every sub-pixel.

        Row c of pixel (i, j) is the exact categorical over the bins given all earlier sub-pixels of x (G's mean
        uses this x's R): what the base class's naive sampler, the causality tests and the receptive-field plot
        read. log_prob does not build this table; it scores x directly.
        """
        return discretized_logistic_mixture_table(self.mixture_params(x, y), self._levels_of(x), self.levels)

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, reduce: bool = True,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | y) in nats under the mixture: (B,), or (B, C, H, W) log p(x_i | x_<i) with reduce=False."""
        self.check_inputs(x, y, cond)
        params = self.mixture_params(self.scale(x), y)  # (B, P, H, W)
        logp = discretized_logistic_mixture_log_prob(params, x, self.levels)  # (B, C, H, W)
        return logp.flatten(1).sum(1) if reduce else logp

    # ---- sampling ----
    @torch.no_grad()
    def _sample_cached(self, out, keep, y, cond, u, temperature):
        """Same samples as the naive sampler; per pixel, one row of every layer instead of the whole image.

        The mixture parameters of each pixel come from `_cached_mixture_params`; R, G, B are then drawn in turn
        from their exact categoricals over the bins, G's given the drawn R, B's given R and G.
        """
        was_training = self.training
        self.eval()
        for i, j, params, todo in self._cached_mixture_params(out, keep, y):
            for c in todo:
                table = discretized_logistic_mixture_table(params, out[:, :, i:i + 1, j:j + 1], self.levels,
                                                           channel=c)  # (n, L, 1, 1)
                s = categorical_sample(table[:, :, 0, 0], u[:, c, i, j], temperature)  # (n,)
                out[:, c, i, j] = torch.where(keep[:, c, i, j], out[:, c, i, j], s)
        self.train(was_training)
        return out

    def _cached_mixture_params(self, out, keep, y):
        """Yield (i, j, params (n, P, 1, 1), channels to draw) for every pixel with something to draw, in raster
        order; the caller writes pixel (i, j) of `out` (n, C, H, W) before asking for the next.

        The trunk runs through `_RowCache`: at pixel (i, j) every ul-stream op recomputes its row i >> scale (full
        width, from a few stored rows above); u-stream ops run once per row; the head runs at (i, j) only.
        """
        n, channels, height, width = out.shape
        x = self._with_ones(self.scale(out))  # (n, C + 1, H, W): kept values now, drawn ones as they come
        cache = _RowCache(self._sizes(height, width))
        for i in range(height):
            cache.row, cache.new_row = i, True
            for j in range(width):
                todo = [c for c in range(channels) if not bool(keep[:, c, i, j].all())]
                if not todo and j < width - 1:
                    continue  # a kept pixel: already in x
                cache.count = 0
                # At the last column this pass also leaves row i final in every cache for the rows below, even
                # when the pixel is kept (pixels drawn earlier in the row came after the last pass).
                ul = self._trunk(x, y, cache.sizes, run=cache)  # (n, hidden, H, W), row i current
                cache.new_row = False
                if todo:
                    yield i, j, self.head(F.elu(ul[:, :, i:i + 1, j:j + 1])), todo  # params (n, P, 1, 1)
                    x[:, :channels, i, j] = self.scale(out[:, :, i:i + 1, j:j + 1])[:, :, 0, 0]
