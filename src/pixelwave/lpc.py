"""Linear prediction from log-mel frames: the spectral envelope as a DSP filter, so that a vocoder's network
only has to model the excitation (LPCNet, Valin & Skoglund 2019).

    coefficients(log_mel, sample_rate, order)   (B, n_mels, F) -> (B, F, order): a_1..a_p of frame f
    per_sample(coeffs, steps, hop)              (B, F, p) -> (B, steps, p): frame round(t / hop) for sample t
    predict(signal, coeffs)                     p_t = -sum_k a_k s_(t-k), (B, T), from the signal's own past

From a frame's log-mel magnitudes to its coefficients: the band values (natural-log magnitude, `audio.log_mel`)
are interpolated linearly on the mel axis over a uniform grid of frequencies from 0 to Nyquist (the bands'
centres are uniform in mel from 0 to sample_rate / 2, as `audio.mel_filterbank` lays them out), squared to a
power spectrum, turned into an autocorrelation by the inverse FFT (Wiener-Khinchin), smoothed by a 60 Hz Gaussian
lag window with +0.01% white noise (a well-conditioned system; no sharp resonances from the coarse mel bands),
and solved by Levinson-Durbin. The mel magnitudes' scale does not matter (LPC is gain invariant); a silent frame
(flat spectrum at the 1e-5 floor) gives all-zero coefficients. On the held-out flite-sample sentences the
prediction from the true past removes 22-27 dB of the signal's energy (benchmarks/lpc_from_mel.py).
"""

from __future__ import annotations

import math

import torch

from pixelwave.audio import _hz_to_mel

GRID = 257  # frequencies from 0 to Nyquist for the power spectrum: 2 * 256-point autocorrelation
LAG_WINDOW_HZ = 60.0
WHITE_NOISE = 1e-4


def _interpolation(n_mels: int, sample_rate: int) -> torch.Tensor:
    """(GRID, n_mels) weights: each grid frequency's value as a linear interpolation of its two neighbouring
    band centres on the mel axis (the first / last band's value below / above them)."""
    top = float(_hz_to_mel(sample_rate / 2))  # the HTK mel scale of audio.mel_filterbank
    centres = torch.linspace(0.0, top, n_mels + 2, dtype=torch.float64)[1:-1]  # (n_mels,) in mel
    grid = torch.from_numpy(_hz_to_mel(torch.linspace(0.0, sample_rate / 2, GRID, dtype=torch.float64).numpy()))
    hi = torch.searchsorted(centres, grid).clamp(1, n_mels - 1)  # (GRID,) index of the centre above
    lo = hi - 1
    frac = ((grid - centres[lo]) / (centres[hi] - centres[lo])).clamp(0.0, 1.0)
    weights = torch.zeros(GRID, n_mels, dtype=torch.float64)
    rows = torch.arange(GRID)
    weights[rows, lo] = 1.0 - frac
    weights[rows, hi] += frac
    return weights


def coefficients(log_mel: torch.Tensor, sample_rate: int, order: int = 16) -> torch.Tensor:
    """(B, n_mels, F) natural-log mel magnitudes -> (B, F, order) float64 LPC coefficients a_1..a_order, so that
    the prediction of s_t is -sum_k a_k s_(t-k). Every filter 1 / A(z) is stable (Levinson-Durbin on a
    positive-definite autocorrelation: every reflection coefficient |k| < 1)."""
    if log_mel.dim() != 3:
        raise ValueError(f"log_mel must be (B, n_mels, F), got {tuple(log_mel.shape)}")
    n_mels = log_mel.shape[1]
    weights = _interpolation(n_mels, sample_rate).to(log_mel.device)
    log_mag = torch.einsum("gm,bmf->bfg", weights, log_mel.double())  # (B, F, GRID)
    r = torch.fft.irfft(torch.exp(2.0 * log_mag), dim=-1)[..., : order + 1]  # (B, F, order + 1)
    lags = torch.arange(order + 1, dtype=torch.float64, device=r.device)
    r = r * torch.exp(-0.5 * (2.0 * math.pi * LAG_WINDOW_HZ * lags / sample_rate) ** 2)
    r[..., 0] *= 1.0 + WHITE_NOISE
    a = torch.zeros(*r.shape[:-1], order + 1, dtype=torch.float64, device=r.device)  # (B, F, order + 1)
    a[..., 0] = 1.0
    err = r[..., 0].clone()
    for i in range(1, order + 1):  # Levinson-Durbin, every frame at once
        k = -(r[..., i] + (a[..., 1:i] * r[..., 1:i].flip(-1)).sum(-1)) / err  # (B, F)
        a[..., 1:i + 1] = a[..., 1:i + 1] + k[..., None] * a[..., 0:i].flip(-1)
        err = err * (1.0 - k * k)
    return a[..., 1:]


def per_sample(coeffs: torch.Tensor, steps: int, hop: int) -> torch.Tensor:
    """(B, F, p) frame coefficients -> (B, steps, p): sample t uses frame round(t / hop) (frame f is centred on
    sample f * hop), held constant: direct-form coefficients are not interpolated, whose mixtures can be
    unstable."""
    frame = torch.div(torch.arange(steps, device=coeffs.device) + hop // 2, hop, rounding_mode="floor")
    return coeffs[:, frame.clamp(max=coeffs.shape[1] - 1)]


def predict(signal: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """signal (B, T) and per-sample coefficients (B, T, p) -> the prediction (B, T): p_t = -sum_k a_k s_(t-k),
    with s = 0 before t = 0 (silence). p_t reads only s_(t-p) .. s_(t-1): causal."""
    order = coeffs.shape[-1]
    padded = torch.nn.functional.pad(signal, (order, 0))  # (B, order + T)
    past = padded.unfold(1, order, 1)[:, : signal.shape[1]].flip(-1)  # (B, T, p): s_(t-1), .., s_(t-p)
    return -(past * coeffs.to(signal.dtype)).sum(-1)
