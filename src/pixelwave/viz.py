"""Pictures: image grids, completion figures, receptive-field maps measured from a real model, and audio (waveform
+ log-mel spectrogram), drawn with Pillow and numpy."""

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


# ---------------------------------------------------------------------------------------------------- audio
# Anchors of a perceptually ordered dark-to-bright colour map (after matplotlib's "magma"): quiet is black.
_MAGMA = np.array([(0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122), (229, 80, 100),
                   (251, 135, 97), (254, 194, 135), (252, 253, 191)], dtype=np.float64)


def colour_map(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (..., 3), interpolating the magma anchors."""
    v = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(_MAGMA) - 1)
    lo = np.minimum(v.astype(np.int64), len(_MAGMA) - 2)
    frac = (v - lo)[..., None]
    return (_MAGMA[lo] * (1 - frac) + _MAGMA[lo + 1] * frac).round().astype(np.uint8)


def waveform_image(wave: np.ndarray, width: int, height: int) -> Image.Image:
    """The waveform (T,) in [-1, 1] as min..max bars, one a pixel column, on white with a grey zero line."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    mid = (height - 1) / 2
    draw.line((0, mid, width, mid), fill=(200, 200, 200))
    n = len(wave)
    if n == 0:
        return img
    edges = np.linspace(0, n, width + 1).astype(np.int64)  # column j shows samples edges[j] .. edges[j+1]
    for j in range(width):
        seg = wave[edges[j]: max(edges[j + 1], edges[j] + 1)]
        top, bottom = mid - float(seg.max()) * mid, mid - float(seg.min()) * mid
        draw.line((j, top, j, bottom), fill=(31, 90, 160))
    return img


def mel_db(wave: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """Log-mel spectrogram in dB, (n_mels, frames): 10 ms hop, 40 ms window."""
    from pixelwave.audio import log_mel

    hop = max(1, sample_rate // 100)
    mel = log_mel(torch.as_tensor(np.asarray(wave, np.float32)), sample_rate, n_mels=n_mels, hop_length=hop,
                  n_fft=4 * hop).numpy()  # (n_mels, frames), natural log of magnitude
    return 20.0 / math.log(10.0) * mel


def spectrogram_image(db: np.ndarray, width: int, height: int, ceiling: float | None = None,
                      top_db: float = 80.0) -> Image.Image:
    """A dB spectrogram (n_mels, frames) with low frequencies at the bottom; `top_db` decibels below
    `ceiling` (default: its own loudest bin) span the colour map."""
    ceiling = float(db.max()) if ceiling is None else ceiling
    scaled = (db - (ceiling - top_db)) / top_db  # (n_mels, frames) in [0, 1] after clipping
    pixels = colour_map(scaled[::-1])  # (n_mels, frames, 3): row 0 is the highest band
    return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB").resize((width, height), Image.BILINEAR)


def audio_figure(panels: list[tuple[str, np.ndarray]], sample_rate: int, width: int = 800,
                 wave_height: int = 90, spec_height: int = 160) -> Image.Image:
    """One panel per (title, wave (T,) in [-1, 1]): the title, the waveform, and its log-mel spectrogram.
    Panels share the time axis (the longest wave spans the full width) and the colour scale (80 dB below the
    loudest bin of any panel), so they can be compared."""
    margin, gap, title_h = 10, 4, 16
    longest = max(len(w) for _, w in panels) or 1
    spectra = [mel_db(w, sample_rate) if len(w) else None for _, w in panels]
    ceiling = max((float(d.max()) for d in spectra if d is not None), default=0.0)
    panel_h = title_h + wave_height + gap + spec_height + 16
    fig = Image.new("RGB", (width + 2 * margin, margin + len(panels) * (panel_h + margin)), "white")
    draw = ImageDraw.Draw(fig)
    for k, (title, wave) in enumerate(panels):
        wave = np.asarray(wave, np.float32)
        w = max(1, round(width * len(wave) / longest))
        top = margin + k * (panel_h + margin)
        seconds = len(wave) / sample_rate
        draw.text((margin, top), f"{title}  ({seconds:.2f} s, {sample_rate} Hz)", fill="black")
        y = top + title_h
        fig.paste(waveform_image(wave, w, wave_height), (margin, y))
        draw.rectangle((margin - 1, y - 1, margin + w, y + wave_height), outline=(160, 160, 160))
        y += wave_height + gap
        if spectra[k] is not None:
            fig.paste(spectrogram_image(spectra[k], w, spec_height, ceiling), (margin, y))
        draw.text((margin + 3, y + 2), f"log-mel, 0-{sample_rate // 2} Hz", fill=(255, 255, 255))
        y += spec_height + 2
        draw.text((margin, y), "0 s", fill="black")
        label = f"{seconds:.2f} s"
        draw.text((margin + w - 6 * len(label), y), label, fill="black")
    return fig
