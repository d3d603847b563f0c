"""PixelRNN (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", sections 3.1-3.4).

A 7x7 mask-A convolution, then `layers` residual LSTM layers, then the PixelCNN head (two 1x1 mask-B convs) to a
categorical over `levels` per sub-pixel. Two kinds of LSTM layer:

- Row LSTM: the image is processed one row at a time. Input-to-state is a 1x3 mask-B conv over the current row
  (computed for the whole map at once); state-to-state is a 1x3 conv over the previous row's hidden state. Each
  pixel sees a triangle above it, not the whole past.
- Diagonal BiLSTM: the map is skewed (row i shifted right by i) so that each diagonal becomes a column; a 2x1
  state-to-state conv then reaches the pixel above and the pixel to the left. Two directions, left-to-right and
  right-to-left; the right-to-left one also sees pixels to the right in its own row, so its output is shifted
  down one row before it is added. One layer sees every earlier pixel -- with one addition to the paper: the
  right-to-left input-to-state also reads the image at its own pixel (see DiagonalBiLSTM.image_to_state).

Colours (R -> G -> B) go through the LSTM in channel groups, as in the masked convs: the hidden units, the cell
and each of the four gates are split into the same contiguous colour blocks. Input-to-state is mask B, the cell
update is element-wise, so hidden group g at pixel (i, j) sees the colours <= g of its input at (i, j). The
state-to-state conv is not masked: it only carries states of strictly earlier pixels (the previous row, or the
previous diagonal), whose every colour is already known.

Both kinds have a cached sampler (one pixel at a time through every layer, the recurrences carried in row
buffers) that draws the same samples as the naive one-pass-per-sub-pixel sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pixelwave.models.base import ImageAutoregressive, ModelConfig, PixelSteps, check_image_fields, require
from pixelwave.nn import MaskedConv2d, channel_groups


def lstm_cell(gates: torch.Tensor, c: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update. `gates` holds (i, f, o, g) stacked on `dim`, each shaped like the cell state `c`."""
    sig, g = gates.split([3, 1], dim)  # split/unbind: their backward is one cat, not a zero map per slice
    i, f, o = sig.sigmoid().unbind(dim)
    g = g.squeeze(dim).tanh()
    c = f * c + i * g
    return o * c.tanh(), c


def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W + H - 1): row i shifted right by i, zeros elsewhere; diagonals become columns."""
    b, c, h, w = x.shape
    x = F.pad(x, (0, h))  # (B, C, H, W + H)
    return x.flatten(2)[:, :, :-h].view(b, c, h, w + h - 1)  # row i starts i places later in the flat layout


def unskew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W + H - 1) -> (B, C, H, W): the inverse of `skew`."""
    b, c, h, ws = x.shape
    x = F.pad(x.flatten(2), (0, h))  # (B, C, H * (W + H))
    return x.view(b, c, h, ws + 1)[:, :, :, :ws + 1 - h]  # (B, C, H, W)


class RowLSTM(nn.Module):
    """One residual Row LSTM layer: (B, hidden, H, W) -> (B, hidden, H, W)."""

    def __init__(self, hidden: int, groups: int, num_classes: int | None):
        super().__init__()
        self.hidden = hidden
        gate_groups = channel_groups(hidden, groups).repeat(4)  # (4 * hidden,): i, f, o, g share the layout
        # Columns j-1, j of the current row; at j itself only colours <= the gate's own (mask B).
        self.input_to_state = MaskedConv2d(hidden, 4 * hidden, (1, 3), "B", groups, out_groups=gate_groups)
        # Columns j-1..j+1 of the previous row: all strictly earlier pixels, so no mask.
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 3, padding=1)
        self.output = MaskedConv2d(hidden, hidden, (1, 1), "B", groups)
        self.class_bias = nn.Embedding(num_classes, 4 * hidden) if num_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)
        with torch.no_grad():
            self.state_to_state.bias[hidden:2 * hidden].fill_(1.0)  # forget gate starts open

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        """x: (B, h, H, W) layer input; `image` is unused (the Diagonal BiLSTM reads it)."""
        b, _, height, width = x.shape
        hid = self.hidden
        # Row-major, channels last: (H, B, W, channels), each row one contiguous block, and both convs as
        # matrix products on their three column taps [j-1 | j | j+1] side by side. The input-to-state taps
        # come from the input (h channels) rather than transposing its output (4h).
        def taps(t: torch.Tensor) -> torch.Tensor:  # (..., W, C) -> (..., W, 3C)
            p = F.pad(t, (0, 0, 1, 1))
            return torch.cat([p[..., :-2, :], p[..., 1:-1, :], p[..., 2:, :]], dim=-1)

        def matrix(weight: torch.Tensor) -> torch.Tensor:  # (out, in, 3) -> (out, 3 in), tap-major
            return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)

        w_is = matrix((self.input_to_state.weight * self.input_to_state.mask)[:, :, 0])  # (4h, 3h)
        pre = F.linear(taps(x.permute(2, 0, 3, 1)), w_is, self.input_to_state.bias)  # (H, B, W, 4h)
        if self.class_bias is not None:
            pre = pre + self.class_bias(y)[None, :, None, :]
        w_ss = matrix(self.state_to_state.weight)  # (4h, 3h): columns j-1, j, j+1 of the row above
        h = c = x.new_zeros(b, width, hid)  # the state above row 0
        rows = []
        # unbind, not pre[i]: each indexing op's backward would fill a whole zero map (quadratic in H).
        for pre_row in pre.unbind(0):  # each (B, W, 4h)
            gates = pre_row + F.linear(taps(h), w_ss, self.state_to_state.bias)  # (B, W, 4h)
            h, c = lstm_cell(gates.view(b, width, 4, hid), c, dim=2)  # each (B, W, h)
            rows.append(h)
        return x + self.output(torch.stack(rows, dim=1).permute(0, 3, 1, 2))  # (B, h, H, W)


class DiagonalBiLSTM(nn.Module):
    """One residual Diagonal BiLSTM layer: (B, hidden, H, W) -> (B, hidden, H, W)."""

    # Tests switch these off: the first to show the leak it prevents, the second the gap it closes.
    _shift_right_to_left = True
    _right_to_left_sees_its_pixel = True

    def __init__(self, hidden: int, groups: int, num_classes: int | None):
        super().__init__()
        self.hidden = hidden
        gate_groups = channel_groups(hidden, groups).repeat(8)  # (8 * hidden,): 2 directions x (i, f, o, g)
        self.input_to_state = MaskedConv2d(hidden, 8 * hidden, (1, 1), "B", groups, out_groups=gate_groups)
        # No hidden map at (i, j) holds pixel (i, j) itself (mask A first), so without this the last pixel of a
        # row would reach the next row only through the 7x7 conv's 3 columns. Right-to-left is used one row
        # down, so it may read its own pixel, every colour, unmasked.
        self.image_to_state = nn.Conv2d(groups, 4 * hidden, 1, bias=False)
        # On the skewed map, taps (row i-1, row i) of the previous column = the pixels above and to the left
        # (mirrored for the right-to-left direction). groups=2: one kernel per direction. No mask: earlier pixels.
        self.state_to_state = nn.Conv1d(2 * hidden, 8 * hidden, 2, groups=2)
        self.output = MaskedConv2d(hidden, hidden, (1, 1), "B", groups)
        self.class_bias = nn.Embedding(num_classes, 8 * hidden) if num_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)
        with torch.no_grad():
            self.state_to_state.bias.view(2, 4, hidden)[:, 1].fill_(1.0)  # forget gates start open

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
        """x: (B, h, H, W) layer input; image: (B, C, H, W) the scaled image."""
        b, _, height, width = x.shape
        hid = self.hidden
        cols = width + height - 1
        # The recurrence runs on the skewed map (diagonals as columns) in a (column, direction, B, H, channels)
        # layout: each column one contiguous block, channels last, so each product is one batched matrix product.

        def columns(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (cols, B, H, C), skewed
            return skew(t).permute(3, 0, 2, 1).contiguous()

        # The 1x1 input-to-state commutes with skew and flip: it runs on the skewed inputs (h channels; its
        # output has 8h). The right-to-left direction is the left-to-right one on the mirrored image. Cells
        # outside the image get the bias rather than 0: their states are zeroed below, so nothing reads them.
        w = self.input_to_state.matrix()  # (8h, h)
        bias = self.input_to_state.bias
        left = F.linear(columns(x), w[:4 * hid], bias[:4 * hid])  # (cols, B, H, 4h)
        right = F.linear(columns(x.flip(-1)), w[4 * hid:], bias[4 * hid:])
        if self._right_to_left_sees_its_pixel:
            right = right + F.linear(columns(image.flip(-1)), self.image_to_state.weight[:, :, 0, 0])
        pre = torch.stack([left, right], dim=1)  # (cols, 2, B, H, 4h): left-to-right, right-to-left
        if self.class_bias is not None:
            pre = pre + self.class_bias(y).view(b, 2, 4 * hid).transpose(0, 1)[None, :, :, None, :]
        # State-to-state (the Conv1d, kernel 2, one group per direction) as one batched product over the
        # directions: per pixel the inputs [above, same] (2h). Tap 0 is row i - 1 of the previous column, tap 1
        # row i.
        w_ss = self.state_to_state.weight.view(2, 4 * hid, hid, 2)  # (direction, 4h, h, tap)
        w_ss = w_ss.permute(0, 3, 2, 1).reshape(2, 2 * hid, 4 * hid)  # (direction, [above | same], 4h)
        b_ss = self.state_to_state.bias.view(2, 1, 4 * hid)
        k = (torch.arange(cols, device=x.device)[None, :]
             - torch.arange(height, device=x.device)[:, None])  # (H, W + H - 1): original column of each cell
        inside = ((k >= 0) & (k < width)).to(x.dtype).t()[:, None, None, :, None]  # (cols, 1, 1, H, 1)
        h = c = x.new_zeros(2, b, height, hid)  # the state left of column 0
        outs = []
        for col, pre_col in enumerate(pre.unbind(0)):  # each (2, B, H, 4h); unbind: see RowLSTM.forward
            above = F.pad(h, (0, 0, 1, 0))[:, :, :height]  # (2, B, H, h): the row above row 0 is zero
            taps = torch.cat([above, h], dim=-1).view(2, b * height, 2 * hid)
            gates = pre_col + torch.baddbmm(b_ss, taps, w_ss).view(2, b, height, 4 * hid)
            h, c = lstm_cell(gates.view(2, b, height, 4, hid), c, dim=3)  # each (2, B, H, h)
            # Zero states outside the image, so the pixel at column 0 sees an empty left neighbour, as in sampling.
            h, c = h * inside[col], c * inside[col]
            outs.append(h)
        out = torch.stack(outs, dim=-1)  # (2, B, H, h, cols)
        out = unskew(out.permute(1, 0, 3, 2, 4).reshape(b, 2 * hid, height, cols))  # (B, 2h, H, W)
        left, right = out[:, :hid], out[:, hid:].flip(-1)  # each (B, h, H, W)
        if self._shift_right_to_left:
            # Right-to-left at (i, j) has seen (i, j+1), (i, j+2), ...: the future. One row down, it holds only
            # rows < i, all of which pixel (i, j) may see.
            right = F.pad(right, (0, 0, 1, 0))[:, :, :height]  # (B, h, H, W)
        return x + self.output(left + right)


@dataclass
class PixelRNNConfig(ModelConfig):
    channels: int = 1
    levels: int = 256
    hidden: int = 32  # hidden units = LSTM state size = residual stream width
    layers: int = 2  # LSTM layers
    num_classes: int | None = None

    SIZES: ClassVar[dict] = {"tiny": dict(hidden=8, layers=2)}

    def __post_init__(self):
        check_image_fields(self.channels, self.levels, self.num_classes, self.hidden)
        require(self.layers >= 1, f"layers must be >= 1, not {self.layers}")


class PixelRNN(ImageAutoregressive):
    """Shared by both kinds: 7x7 mask A -> `layers` residual LSTM layers -> ReLU, 1x1 B, ReLU, 1x1 B.
    `RowLSTMPixelRNN(PixelRNNConfig(...))`, or the config's fields: `RowLSTMPixelRNN(channels=1, hidden=32)`."""

    config_class = PixelRNNConfig
    layer_class: type[nn.Module]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        groups = cfg.channels
        self.input_conv = MaskedConv2d(cfg.channels, cfg.hidden, (7, 7), "A", groups)
        self.lstm_layers = nn.ModuleList(self.layer_class(cfg.hidden, groups, cfg.num_classes)
                                         for _ in range(cfg.layers))
        self.head = self.make_head(cfg.hidden, cfg.channels, cfg.levels)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None,
               cond: torch.Tensor | None = None) -> torch.Tensor:
        """Scaled image (B, C, H, W) -> logits (B, C, levels, H, W)."""
        b, c, h, w = x.shape
        out = self.input_conv(x)  # (B, hidden, H, W)
        for layer in self.lstm_layers:
            out = layer(out, y, x)  # (B, hidden, H, W)
        return self.head(out).view(b, c, self.levels, h, w)  # (B, C, L, H, W): channel index = c * L + level


class RowLSTMPixelRNN(PixelRNN):
    model_name = "pixelrnn_row"
    layer_class = RowLSTM

    def _pixel_steps(self, out, y, cond) -> PixelSteps:
        """Row LSTM, one pixel at a time: each row's state-to-state term is computed once from the finished row
        above; at (i, j) every layer needs only its input at (i, j-1) and (i, j), kept in a one-row cache."""
        n, _, _, width = out.shape
        hid = self.config.hidden
        dtype, device = next(self.parameters()).dtype, out.device
        w_in, head = self.input_conv.matrix(), self.pixel_head()
        state = []
        for layer in self.lstm_layers:
            zeros = torch.zeros(n, hid, width, dtype=dtype, device=device)
            bias = layer.input_to_state.bias + (layer.class_bias(y) if layer.class_bias is not None else 0)
            state.append(dict(
                layer=layer, w_is=layer.input_to_state.matrix(), bias=bias, w_out=layer.output.matrix(),
                row_in=torch.zeros(n, hid, width + 2, dtype=dtype, device=device),  # layer input, padded 1 each side
                h=zeros.clone(), c=zeros.clone(),  # this row's state, filled left to right
                c_above=zeros.clone(), from_above=layer.state_to_state(zeros)))  # (n, 4h, W)

        def step(x_map, i, j):
            window = x_map[:, :, i:i + 7, j:j + 7].flatten(1)  # (n, C * 49): the 7x7 input conv's window
            a = F.linear(window, w_in, self.input_conv.bias)  # (n, hidden)
            for s in state:
                s["row_in"][:, :, j + 1] = a
                pre = F.linear(s["row_in"][:, :, j:j + 3].flatten(1), s["w_is"], s["bias"])  # (n, 4h)
                h, c = lstm_cell((pre + s["from_above"][:, :, j]).view(n, 4, hid), s["c_above"][:, :, j], dim=1)
                s["h"][:, :, j], s["c"][:, :, j] = h, c
                a = a + F.linear(h, s["w_out"], s["layer"].output.bias)
            return head(a)

        def end_row(x_map, i):
            for s in state:
                s["from_above"] = s["layer"].state_to_state(s["h"])  # (n, 4h, W)
                s["c_above"], s["c"] = s["c"], s["c_above"]

        return PixelSteps(step, end_row, padding=3)  # the 7x7 input conv's padding


class DiagonalBiLSTMPixelRNN(PixelRNN):
    model_name = "pixelrnn_diag"
    layer_class = DiagonalBiLSTM

    def _pixel_steps(self, out, y, cond) -> PixelSteps:
        """Diagonal BiLSTM, one pixel at a time. Left-to-right at (i, j) needs the states at (i-1, j) and
        (i, j-1): both known. Right-to-left is only used one row down, so it runs once per finished row, from the
        right, on that row's cached input-to-state terms."""
        n, _, _, width = out.shape
        hid = self.config.hidden
        dtype, device = next(self.parameters()).dtype, out.device
        w_in, head = self.input_conv.matrix(), self.pixel_head()
        state = []
        for layer in self.lstm_layers:
            w_ss = layer.state_to_state.weight.view(2, 4 * hid, hid, 2)  # (direction, 4h, h, tap)
            zeros = torch.zeros(n, hid, width, dtype=dtype, device=device)
            bias = layer.input_to_state.bias + (layer.class_bias(y) if layer.class_bias is not None else 0)
            state.append(dict(
                layer=layer, w_is=layer.input_to_state.matrix(), bias=bias, w_out=layer.output.matrix(),
                w_image=layer.image_to_state.weight.flatten(1), w_above=w_ss[..., 0], w_side=w_ss[..., 1],
                b_ss=layer.state_to_state.bias.view(2, 4 * hid),
                pre_right=torch.zeros(n, 4 * hid, width, dtype=dtype, device=device),  # this row, right-to-left
                h=zeros.clone(), c=zeros.clone(),  # left-to-right, this row
                h_above=zeros.clone(),  # left-to-right, the row above
                right_above=zeros.clone()))  # right-to-left, the row above: its recurrence, and the shifted output
        for s in state:
            s["from_above"] = F.linear(s["h_above"].transpose(1, 2), s["w_above"][0], s["b_ss"][0])  # (n, W, 4h)

        def step(x_map, i, j):
            window = x_map[:, :, i:i + 7, j:j + 7].flatten(1)  # (n, C * 49): the 7x7 input conv's window
            a = F.linear(window, w_in, self.input_conv.bias)  # (n, hidden)
            for s in state:
                pre = F.linear(a, s["w_is"], s["bias"])  # (n, 8h)
                s["pre_right"][:, :, j] = pre[:, 4 * hid:]
                gates = pre[:, :4 * hid] + s["from_above"][:, j]
                c_left = s["c"][:, :, j - 1] if j > 0 else torch.zeros_like(s["c"][:, :, 0])
                if j > 0:
                    gates = gates + F.linear(s["h"][:, :, j - 1], s["w_side"][0])
                h, c = lstm_cell(gates.view(n, 4, hid), c_left, dim=1)  # each (n, h)
                s["h"][:, :, j], s["c"][:, :, j] = h, c
                a = a + F.linear(h + s["right_above"][:, :, j], s["w_out"], s["layer"].output.bias)
            return head(a)

        def end_row(x_map, i):
            row = x_map[:, :, i + 3, 3:-3]  # (n, C, W): row i of the image, every colour final
            for s in state:
                # Right-to-left over row i: from (i-1, j) above and (i, j+1) beside.
                from_above = F.linear(s["right_above"].transpose(1, 2), s["w_above"][1], s["b_ss"][1])  # (n, W, 4h)
                if s["layer"]._right_to_left_sees_its_pixel:
                    from_above = from_above + F.linear(row.transpose(1, 2), s["w_image"])  # (n, W, 4h)
                h = c = torch.zeros(n, hid, dtype=dtype, device=device)
                right = torch.empty_like(s["right_above"])
                for j in reversed(range(width)):
                    gates = s["pre_right"][:, :, j] + from_above[:, j] + F.linear(h, s["w_side"][1])
                    h, c = lstm_cell(gates.view(n, 4, hid), c, dim=1)
                    right[:, :, j] = h
                s["right_above"] = right
                s["h_above"], s["h"] = s["h"], s["h_above"]
                s["from_above"] = F.linear(s["h_above"].transpose(1, 2), s["w_above"][0], s["b_ss"][0])

        return PixelSteps(step, end_row, padding=3)  # the 7x7 input conv's padding
