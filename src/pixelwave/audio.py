"""Audio maths and files: the mu-law codec, log-mel features, reading (mono, resampled) and writing WAV.

mu-law (ITU-T G.711 style companding, as in the WaveNet paper, with mu = levels - 1):

    encode   y = sign(x) * ln(1 + mu |x|) / ln(1 + mu)          x in [-1, 1] -> y in [-1, 1]
             code = floor((y + 1) / 2 * mu + 1/2)               y -> integer code in 0 .. mu  (levels values)
    decode   y = 2 code / mu - 1                                 the centre of the code's bin in the y domain
             x = sign(y) * ((1 + mu)^|y| - 1) / mu

so encode(decode(c)) == c for every code, and |decode(encode(x)) - x| is at most half the width of x's bin
(the bins are 2/mu wide in y; in x they are narrow near 0 and wide near +-1). Code 0 is -1.0, code levels-1
is +1.0; silence (0.0) is code floor(mu/2 + 1/2) = 128 for 256 levels (`silence_code`). Input outside
[-1, 1] is clipped.

Files are read with soundfile (WAV, FLAC, OGG, ... whatever libsndfile reads), mixed down to mono by averaging
the channels and resampled with soxr (high quality). Anything unreadable -- not audio, truncated, empty --
raises `UserError` with a one-line message naming the file.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pixelwave.errors import UserError

__all__ = ["mu_law_encode", "mu_law_decode", "silence_code", "pre_emphasis", "de_emphasis", "mel_filterbank",
           "log_mel", "pitch", "features", "read_audio", "write_wav", "trim_silence", "resample"]


# ----------------------------------------------------------------------------------------------- mu-law codec
def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, not {levels!r}")
    return levels


def mu_law_compress(x: torch.Tensor, mu: int) -> torch.Tensor:
    """The mu-law curve itself, unquantised and unclipped: sign(x) log(1 + mu |x|) / log(1 + mu)."""
    return torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)


def mu_law_expand(y: torch.Tensor, mu: int) -> torch.Tensor:
    """The inverse of `mu_law_compress`: sign(y) ((1 + mu)^|y| - 1) / mu."""
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


def mu_law_encode(wave: torch.Tensor | np.ndarray | float, levels: int = 256) -> torch.Tensor:
    """Waveform in [-1, 1] (any shape) -> LongTensor of mu-law codes in [0, levels); mu = levels - 1."""
    mu = _check_levels(levels) - 1
    x = torch.as_tensor(wave)
    if not x.dtype.is_floating_point:
        raise ValueError(f"mu_law_encode takes a float waveform in [-1, 1], not {x.dtype}")
    x = x.double().clamp(-1.0, 1.0)  # float64: the code boundaries are the same whatever the input dtype
    return torch.floor((mu_law_compress(x, mu) + 1.0) / 2.0 * mu + 0.5).long()


def mu_law_decode(codes: torch.Tensor | np.ndarray | int, levels: int = 256) -> torch.Tensor:
    """mu-law codes in [0, levels) (any shape) -> float32 wave in [-1, 1], each code's bin centre."""
    mu = _check_levels(levels) - 1
    c = torch.as_tensor(codes)
    if c.dtype.is_floating_point:
        raise ValueError(f"mu_law_decode takes integer codes, not {c.dtype}")
    if c.numel() and (int(c.min()) < 0 or int(c.max()) > mu):
        raise ValueError(f"codes must be in [0, {levels}), got [{int(c.min())}, {int(c.max())}]")
    return mu_law_expand(c.double() * (2.0 / mu) - 1.0, mu).float()


def silence_code(levels: int = 256) -> int:
    """The code of 0.0: what the model sees before t = 0."""
    return int(mu_law_encode(torch.tensor(0.0), levels))


# ----------------------------------------------------------------------------------------------- pre-emphasis
def _check_emphasis(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
        raise ValueError(f"pre-emphasis must be a number in [0, 1), not {alpha!r}")
    return float(alpha)


def pre_emphasis(wave: torch.Tensor | np.ndarray, alpha: float) -> torch.Tensor:
    """y_t = x_t - alpha x_(t-1) along the last axis (x_(-1) = 0): a first-order high-pass that flattens speech's
    spectral tilt before mu-law coding, so that the coding's and a model's errors, white in the emphasised
    signal, come out of `de_emphasis` shaped like speech (quiet at high frequencies; LPCNet uses alpha = 0.85).
    float64 tensor of the input's shape."""
    alpha = _check_emphasis(alpha)
    x = torch.as_tensor(wave).double()
    if alpha == 0:
        return x
    return x - alpha * F.pad(x[..., :-1], (1, 0))


def de_emphasis(wave: torch.Tensor | np.ndarray, alpha: float) -> torch.Tensor:
    """The inverse of `pre_emphasis`: y_t = x_t + alpha y_(t-1) along the last axis (y_(-1) = 0), float64 tensor.
    Computed as the filter's impulse response alpha^k, cut where alpha^k < 1e-20 (below float64's resolution of
    any sample it is added to), so one convolution instead of a loop over time."""
    alpha = _check_emphasis(alpha)
    x = torch.as_tensor(wave).double()
    if alpha == 0 or x.shape[-1] == 0:
        return x
    taps = min(x.shape[-1], math.ceil(math.log(1e-20) / math.log(alpha)))
    h = alpha ** torch.arange(taps - 1, -1, -1, dtype=torch.float64)  # reversed: conv1d correlates
    flat = x.reshape(-1, 1, x.shape[-1])
    return F.conv1d(F.pad(flat, (taps - 1, 0)), h.view(1, 1, -1)).reshape(x.shape)


# ----------------------------------------------------------------------------------------------- log-mel
def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # HTK mel scale


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 80, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular filters (n_mels, n_fft // 2 + 1) on the HTK mel scale, each of unit area (Slaney-style)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (F,) centre of every STFT bin
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))  # (n_mels + 2,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    rising = (freqs[None] - lo) / (mid - lo)
    falling = (hi - freqs[None]) / (hi - mid)
    tri = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, F)
    tri *= (2.0 / (hi - lo))  # equal area: wide high-frequency filters do not dominate
    return torch.from_numpy(tri).float()


def log_mel(wave: torch.Tensor, sample_rate: int, n_mels: int = 80, hop_length: int = 200, n_fft: int = 800,
            f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Log-magnitude mel spectrogram: (T,) -> (n_mels, ceil(T / hop)); (B, T) -> (B, n_mels, ceil(T / hop)).

    Frame f is a Hann window of n_fft samples centred on sample f * hop (the signal is zero-padded at both
    ends), so a signal of T = F * hop samples has exactly F frames. log(max(|STFT| @ mel, 1e-5)), natural log.
    Defaults (16 kHz): 50 ms windows every 12.5 ms, 80 mel bands from 0 to 8 kHz.
    """
    wave = torch.as_tensor(wave)
    if not wave.dtype.is_floating_point or wave.dim() not in (1, 2):
        raise ValueError(f"log_mel takes a float wave (T,) or (B, T), got {wave.dtype} {tuple(wave.shape)}")
    if hop_length < 1 or n_fft < 2:
        raise ValueError(f"need hop_length >= 1 and n_fft >= 2, got {hop_length}, {n_fft}")
    single = wave.dim() == 1
    x = wave.float()[None] if single else wave.float()  # (B, T)
    frames = -(-x.shape[-1] // hop_length)
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop_length=hop_length, window=window, center=True, pad_mode="constant",
                      return_complex=True)  # (B, n_fft // 2 + 1, 1 + T // hop)
    mel = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max).to(x.device) @ spec.abs()  # (B, n_mels, .)
    out = torch.log(mel.clamp(min=1e-5))[..., :frames]  # (B, n_mels, ceil(T / hop))
    return out[0] if single else out


PITCH_ROWS = 4  # what `pitch` adds to a frame: log(f0 / PITCH_REF_HZ), the voicing, cos and sin of f0's phase
PITCH_REF_HZ = 100.0


def pitch_min_fft(sample_rate: int, f_min: float = 60.0) -> int:
    """The shortest frame `pitch` can track f0 down to f_min in: two periods of the longest lag, and one sample."""
    return 2 * int(math.ceil(sample_rate / f_min)) + 1


def pitch(wave, sample_rate: int, hop_length: int = 200, n_fft: int = 800, f_min: float = 60.0,
          f_max: float = 400.0) -> torch.Tensor:
    """Pitch frames: (T,) -> (PITCH_ROWS, ceil(T / hop)) float32: row 0 log(f0 / 100 Hz), row 1 the voicing
    correlation in [0, 1], rows 2 and 3 cos and sin of the phase of the fundamental at the frame's centre.
    Frames are those of `log_mel` (n_fft samples centred on sample f * hop, zero-padded).

    The period of frame f is the lag tau in [sample_rate / f_max, sample_rate / f_min] that maximises the
    normalised cross-correlation r(tau) = sum x_n x_(n+tau) / sqrt(sum x_n^2 sum x_(n+tau)^2) of the frame's
    first n_fft - tau_max samples with the same span tau later (LPCNet's open-loop pitch search, without
    its dynamic programming); a shorter lag tau / k (k = 2, 3, 4) wins if its correlation is >= 0.85 of the
    best (no period doubling), and a parabola through r refines the lag. The voicing is max(r, 0), 0 for a
    frame whose energy is below 1e-6 per sample (silence). An unvoiced frame (voicing < 0.5) keeps the f0 of
    the nearest voiced frame before it (the first voiced frame's before it; 100 Hz if none is voiced), so the
    contour is continuous. The phase is that of the Hann-windowed frame's Fourier coefficient at f0, taken at the
    centre: a wave A cos(2 pi f0 (t - c) / rate + theta) around centre c has phase theta (meaningless where
    unvoiced). Deterministic; float64 inside.
    """
    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"pitch takes a non-empty mono wave (T,), got shape {x.shape}")
    if not 0 < f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 < f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
    lo, hi = max(2, int(sample_rate // f_max)), int(math.ceil(sample_rate / f_min))
    span = n_fft - hi - 1  # lags up to hi + 1 (the parabola) stay inside the frame
    if n_fft < (need := pitch_min_fft(sample_rate, f_min)):
        raise ValueError(f"n_fft ({n_fft}) is too short for f_min {f_min} Hz: it needs >= {need} samples")
    frames = -(-x.size // hop_length)
    padded = np.pad(x, (n_fft // 2, n_fft // 2 + hop_length))
    starts = np.arange(frames) * hop_length
    seg = padded[starts[:, None] + np.arange(n_fft)]  # (F, n_fft): frame f centred on sample f * hop
    size = 1 << int(math.ceil(math.log2(n_fft + span)))
    cross = np.fft.irfft(np.conj(np.fft.rfft(seg[:, :span], size)) * np.fft.rfft(seg, size), size)[:, : hi + 2]
    energy = np.concatenate([np.zeros((frames, 1)), np.cumsum(seg ** 2, axis=1)], axis=1)  # (F, n_fft + 1)
    lags = np.arange(hi + 2)
    e_lag = energy[:, lags + span] - energy[:, lags]  # (F, hi + 2): energy of the span tau later
    r = cross / np.sqrt(e_lag[:, :1] * e_lag + 1e-20)  # (F, hi + 2)
    search = r[:, lo: hi + 1]
    best = lo + search.argmax(axis=1)  # (F,)
    rows = np.arange(frames)
    peak = r[rows, best]
    for k in (4, 3, 2):  # prefer the shortest lag that is nearly as good: the period, not a multiple of it
        cand = np.rint(best / k).astype(np.int64)
        ok = (cand >= lo) & (r[rows, np.clip(cand, 0, hi)] >= 0.85 * peak)
        best = np.where(ok, cand, best)
    # the local maximum next to the chosen lag, then a parabola through it and its neighbours
    for _ in range(2):
        left, right = r[rows, np.maximum(best - 1, lo)], r[rows, np.minimum(best + 1, hi)]
        here = r[rows, best]
        best = np.where((left > here) & (best > lo), best - 1, np.where((right > here) & (best < hi), best + 1, best))
    a, b, c = r[rows, best - 1], r[rows, best], r[rows, best + 1]
    denom = a - 2 * b + c
    offset = np.where(denom < 0, np.clip(0.5 * (a - c) / np.where(denom < 0, denom, -1.0), -0.5, 0.5), 0.0)
    f0 = sample_rate / (best + offset)
    voicing = np.clip(r[rows, best], 0.0, 1.0)
    voicing[e_lag[:, 0] < 1e-6 * span] = 0.0  # silence: no pitch
    voiced = voicing >= 0.5
    if voiced.any():
        idx = np.where(voiced, rows, -1)
        idx = np.maximum.accumulate(idx)  # the last voiced frame at or before each frame
        idx[idx < 0] = np.argmax(voiced)  # before the first voiced frame: the first one's
        f0 = f0[idx]
    else:
        f0 = np.full(frames, PITCH_REF_HZ)
    offsets = np.arange(n_fft) - n_fft // 2  # samples from the centre
    basis = np.hanning(n_fft + 2)[1:-1] * np.exp(-2j * np.pi * f0[:, None] * offsets / sample_rate)  # (F, n_fft)
    phase = np.angle((seg * basis).sum(axis=1))  # (F,)
    return torch.from_numpy(np.stack([np.log(f0 / PITCH_REF_HZ), voicing, np.cos(phase), np.sin(phase)])).float()


def features(wave, sample_rate: int, n_mels: int = 80, hop_length: int = 200, n_fft: int = 800,
             f_min: float = 0.0, f_max: float | None = None, pitch_rows: bool = False) -> torch.Tensor:
    """A vocoder's conditioning frames of a mono wave (T,): `log_mel` (n_mels, ceil(T / hop)), and with
    pitch_rows the `pitch` rows under them: (n_mels + PITCH_ROWS, ceil(T / hop))."""
    wave = torch.as_tensor(wave)
    mel = log_mel(wave, sample_rate, n_mels, hop_length, n_fft, f_min, f_max)
    if not pitch_rows:
        return mel
    return torch.cat([mel, pitch(wave.double().numpy(), sample_rate, hop_length, n_fft)])


# ----------------------------------------------------------------------------------------------- files
def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono float32 waveform from one sample rate to another with soxr (high quality); a no-op if equal."""
    if from_rate == to_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr

    return soxr.resample(np.ascontiguousarray(wave, dtype=np.float32), from_rate, to_rate).astype(np.float32)


_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as a mono float32 waveform in [-1, 1]: (wave (T,), rate).

    Channels are averaged; with `sample_rate` the audio is resampled to it (soxr) and that rate is returned.
    Not audio, truncated (the header promises more data than the file holds) or empty -> UserError.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: not a readable audio file ({message})") from None
    declared = _DATA_SIZE.search(info.extra_info or "")
    # libsndfile reads a cut-off WAV without complaint but logs "data : <declared> (should be <present>)";
    # 0 and 0xFFFFFFFF are the placeholders of streamed WAVs, not truncation.
    header, present = (int(declared.group(1)), int(declared.group(2))) if declared else (0, 0)
    if 0 < header < 0xFFFFFFFF and header > present:
        raise UserError(f"{path}: truncated ({present} of the {header} audio bytes its header declares)")
    if info.frames > 0 and data.shape[0] < info.frames:
        raise UserError(f"{path}: truncated ({data.shape[0]} of {info.frames} frames)")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise UserError(f"{path}: empty (no audio frames)")
    if not np.isfinite(data).all():
        raise UserError(f"{path}: holds NaN or infinite samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # mono mix-down
    if sample_rate is not None and sample_rate != rate:
        wave, rate = resample(wave, rate, sample_rate), sample_rate
    return np.clip(wave, -1.0, 1.0).astype(np.float32), int(rate)


def write_wav(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write a mono waveform in [-1, 1] ((T,) float) as a 16-bit PCM WAV file (clipped to [-1, 1])."""
    import soundfile as sf

    if isinstance(wave, torch.Tensor):
        wave = wave.detach().cpu().float().numpy()
    w = np.asarray(wave, np.float32)
    if w.ndim != 1:
        raise ValueError(f"write_wav takes a mono waveform (T,), got shape {w.shape}")
    path = Path(path)
    sf.write(str(path), np.clip(w, -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV")
    return path


def trim_silence(wave: np.ndarray, sample_rate: int, top_db: float = 40.0, frame_ms: float = 10.0,
                 margin_ms: float = 50.0) -> np.ndarray:
    """Cut leading and trailing silence; pauses inside the utterance are kept.

    The energy threshold: split the wave into non-overlapping `frame_ms` frames; a frame is sound when its RMS
    is within `top_db` dB of the loudest frame's RMS. Everything before the first and after the last sound
    frame is cut, keeping `margin_ms` on each side. An all-zero wave comes back empty.
    """
    frame = max(1, int(round(sample_rate * frame_ms / 1000)))
    n = len(wave) // frame
    if n == 0:
        return wave if np.abs(wave).max(initial=0.0) > 0 else wave[:0]
    rms = np.sqrt(np.mean(np.square(wave[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))  # (n,)
    peak = rms.max()
    if peak <= 0:
        return wave[:0]
    loud = np.flatnonzero(rms >= peak * 10.0 ** (-top_db / 20.0))
    margin = int(round(sample_rate * margin_ms / 1000))
    start = max(0, loud[0] * frame - margin)
    end = min(len(wave), (loud[-1] + 1) * frame + margin)
    return wave[start:end]
