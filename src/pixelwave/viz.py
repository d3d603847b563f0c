"""Pictures: image grids, completion figures and receptive-field maps measured from a real model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pixelwave.errors import UserError


def to_uint8(x: torch.Tensor, levels: int) -> np.ndarray:
    """Levels (N, C, H, W) -> uint8 pixels (N, H, W, C) spanning 0..255."""
    x = x.detach().cpu().long().clamp(0, levels - 1)
    pixels = (x * 255 + (levels - 1) // 2) // (levels - 1)  # level k -> round(k * 255 / (L - 1))
    return pixels.permute(0, 2, 3, 1).numpy().astype(np.uint8)  # (N, H, W, C)


def image_grid(x: torch.Tensor, levels: int, nrow: int | None = None, pad: int = 2, scale: int = 1,
               background: int = 128) -> Image.Image:
    """Tile images (N, C, H, W) into rows of `nrow` (default: a square-ish grid), `scale`-times enlarged."""
    n, c, h, w = x.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    pixels = to_uint8(x, levels)  # (N, H, W, C)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), background, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, nrow)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = pixels[k]
    img = Image.fromarray(grid[:, :, 0] if c == 1 else grid, mode="L" if c == 1 else "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_image(img: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"{path}: output must be a .png or .jpg file")
    if not path.parent.exists():
        raise UserError(f"{path.parent}: output folder does not exist")
    img.save(path)
    return path


def receptive_field(model, size: tuple[int, int], target: tuple[int, int], trials: int = 4,
                    seed: int = 0) -> torch.Tensor:
    """|d log p(x_target | x_<target) / d x| summed over colours and random inputs: (H, W), measured in float64.

    Exact zeros mean "cannot influence": masked weights contribute exactly 0 in float64, so the map shows the
    architecture's true receptive field, blind spot included.
    """
    model = model.double().eval()
    h, w = size
    ti, tj = target
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(h, w, dtype=torch.float64)
    for _ in range(trials):
        x = torch.rand(1, model.channels, h, w, generator=gen, dtype=torch.float64) * 2 - 1
        x.requires_grad_(True)
        y = torch.zeros(1, dtype=torch.long) if model.num_classes else None
        logits = model.logits(x, y)  # (1, C, L, H, W)
        logp = torch.log_softmax(logits[0, :, :, ti, tj], dim=-1)  # (C, L)
        weights = torch.randn(logp.shape, generator=gen, dtype=torch.float64)
        (grad,) = torch.autograd.grad((logp * weights).sum(), x)
        total += grad[0].abs().sum(0)
    return total


def receptive_field_figure(maps: list[tuple[str, torch.Tensor]], target: tuple[int, int], cell: int = 14
                           ) -> Image.Image:
    """One panel per (title, map): the target pixel red, pixels it sees blue (darker = stronger), earlier pixels
    it can never see orange (the blind spot), later pixels white."""
    panels = []
    for title, m in maps:
        h, w = m.shape
        ti, tj = target
        seen = m > 0
        strength = torch.zeros_like(m)
        if seen.any():
            strength[seen] = (m[seen].log() - m[seen].log().min()) / max(1e-9, float(np.ptp(m[seen].log().numpy())))
        img = Image.new("RGB", (w * cell + 1, h * cell + 1 + 18), "white")
        draw = ImageDraw.Draw(img)
        draw.text((2, 2), title, fill="black")
        for i in range(h):
            for j in range(w):
                earlier = i < ti or (i == ti and j < tj)
                if (i, j) == (ti, tj):
                    colour = (220, 30, 30)
                elif seen[i, j]:
                    s = 0.35 + 0.65 * float(strength[i, j])
                    colour = (int(200 * (1 - s)), int(200 * (1 - s)), 255 - int(100 * s))
                elif earlier:
                    colour = (255, 165, 0)  # earlier but unseen: the blind spot
                else:
                    colour = (255, 255, 255)
                box = (j * cell, 18 + i * cell, (j + 1) * cell, 18 + (i + 1) * cell)
                draw.rectangle(box, fill=colour, outline=(200, 200, 200))
        panels.append(img)
    legend = [("target pixel", (220, 30, 30)), ("seen (darker: stronger influence)", (40, 40, 200)),
              ("earlier but never seen (blind spot, or beyond reach)", (255, 165, 0))]
    legend_h = 16 * len(legend) + 6
    width = max(sum(p.width for p in panels) + 10 * (len(panels) + 1), 320)
    height = max(p.height for p in panels) + 20 + legend_h
    fig = Image.new("RGB", (width, height), "white")
    x = 10
    for p in panels:
        fig.paste(p, (x, 10))
        x += p.width + 10
    draw = ImageDraw.Draw(fig)
    for k, (label, colour) in enumerate(legend):
        y0 = height - legend_h + 2 + 16 * k
        draw.rectangle((10, y0, 20, y0 + 10), fill=colour)
        draw.text((26, y0 - 1), label, fill="black")
    return fig


def blind_spot(m: torch.Tensor, target: tuple[int, int]) -> int:
    """Number of earlier pixels (raster order) that do not influence the target at all."""
    h, w = m.shape
    ti, tj = target
    earlier = torch.zeros(h, w, dtype=torch.bool)
    earlier[:ti] = True
    earlier[ti, :tj] = True
    return int((earlier & (m == 0)).sum())
