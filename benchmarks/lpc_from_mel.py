"""How far linear prediction from the log-mel frames alone goes, before any network (issue 12's vocoder recipe).

A vocoder is given the log-mel frames. Linear prediction (LPC) computed from them models the spectral envelope
exactly as a DSP filter, so a network would only have to produce the excitation (LPCNet, Valin & Skoglund 2019).
This script measures, on the held-out sentences of the embedded flite-sample (slt, rms, awb):

- prediction gain: 10 log10(var x / var e), e = x - prediction of x from its own 16 past samples
- floor: the LPC filter driven by white noise at the true excitation's energy per frame (a whisper)
- pulses: the LPC filter driven by a classical mixed excitation at the true excitation's energy per frame: one
  pulse per period where the pitch frames' source (`--pitch`: `pitch_source`, f0 and the fundamental's phase
  per frame) passes phase 0, weighted by its voicing v, plus white noise weighted by 1 - v (what a network shown
  the source could at least learn; an LPC vocoder of the 1980s, with today's pitch features)
- mel noise: no LPC: white noise whose short-time spectrum (800-sample frames every 200 samples, the mel's own)
  is set, bin by bin, to the log-mel frame's magnitudes interpolated over the bins on the mel scale, the
  recording's overall level (a channel vocoder from the frames a vocoder is given: what the envelope alone says)
- ceiling: the LPC filter driven by the true excitation after 8-bit mu-law quantisation (a perfect network)
- the recording as plain 8-bit mu-law (what today's WaveNet models)

each scored against the recording with STOI and PocketSphinx WER (pixelwave.speech_eval; needs the speech-eval
extra and scipy). LPC from log-mel: the band magnitudes interpolated over the FFT bins on the mel scale, power
spectrum -> autocorrelation (inverse FFT), a 60 Hz Gaussian lag window and +0.01% white noise, Levinson-Durbin
to order 16, one filter per frame (centred on sample f * hop, held for the hop), no pre-emphasis.

    python benchmarks/lpc_from_mel.py [--per-voice 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from collections import defaultdict

import numpy as np
import soundfile as sf
import torch
from scipy.signal import istft, lfilter, stft

from pixelwave import speech_eval as se
from pixelwave.audio import log_mel, mel_filterbank, mu_law_decode, mu_law_encode, pitch
from pixelwave.data.audio import FLITE_SAMPLE
from pixelwave.models.wavenet.model import pitch_source

RATE, HOP, N_FFT, N_MELS, ORDER = 16000, 200, 800, 80, 16


def mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def log_magnitudes(frames: np.ndarray) -> np.ndarray:
    """(n_mels, F) natural-log mel magnitudes -> (F, N_FFT // 2 + 1) log magnitudes of the FFT bins, interpolated
    on the mel scale between the bands' centres."""
    bank = mel_filterbank(RATE, N_FFT, N_MELS).numpy()  # (n_mels, bins)
    freqs = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    centres = (bank * freqs).sum(1) / bank.sum(1)  # (n_mels,) Hz
    return np.stack([np.interp(mel(freqs), mel(centres), frames[:, f]) for f in range(frames.shape[1])])


def mel_noise(frames: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of white noise whose STFT (N_FFT frames every HOP, frame f centred on sample f * HOP, as the
    log-mel's) has, bin by bin, the magnitudes the log-mel frames (n_mels, F) give (log_magnitudes)."""
    spec = stft(rng.standard_normal(n), RATE, nperseg=N_FFT, noverlap=N_FFT - HOP)[2]  # (bins, >= F)
    frames_used = min(spec.shape[1], frames.shape[1])
    spec = spec[:, :frames_used]
    spec = spec / np.maximum(np.abs(spec), 1e-12) * np.exp(log_magnitudes(frames[:, :frames_used])).T
    y = istft(spec, RATE, nperseg=N_FFT, noverlap=N_FFT - HOP)[1][:n]
    return np.pad(y, (0, n - len(y)))


def lpc_from_log_mel(frames: np.ndarray) -> np.ndarray:
    """(n_mels, F) natural-log mel magnitudes -> (F, ORDER) a_1..a_p with x_t ~ -sum_k a_k x_(t-k)."""
    log_mag = log_magnitudes(frames)
    r = np.fft.irfft(np.exp(2.0 * log_mag), axis=1)[:, : ORDER + 1]  # (F, ORDER + 1) autocorrelation
    r *= np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(ORDER + 1) / RATE) ** 2)  # lag window: smooth the peaks
    r[:, 0] *= 1.0001  # white-noise correction: a well-conditioned system
    coeffs = np.zeros((r.shape[0], ORDER))
    for f, rf in enumerate(r):  # Levinson-Durbin
        a, err = np.zeros(ORDER + 1), rf[0]
        a[0] = 1.0
        for i in range(1, ORDER + 1):
            k = -(rf[i] + a[1:i] @ rf[i - 1:0:-1]) / err
            a[1:i + 1] += k * np.concatenate([a[i - 1:0:-1], [1.0]])
            err *= 1.0 - k * k
        coeffs[f] = a[1:]
    return coeffs


def frame_of(t: np.ndarray, frames: int) -> np.ndarray:
    return np.minimum(np.round(t / HOP).astype(int), frames - 1)


def filter_frames(excitation: np.ndarray, coeffs: np.ndarray, inverse: bool) -> np.ndarray:
    """inverse: e = A(z) x (the excitation of x); else x = e / A(z), the filter's state carried over frames."""
    out, state = np.zeros_like(excitation), np.zeros(ORDER)
    which = frame_of(np.arange(len(excitation)), len(coeffs))
    for f in range(len(coeffs)):
        idx = np.flatnonzero(which == f)
        if len(idx) == 0:
            continue
        a = np.concatenate([[1.0], coeffs[f]])
        seg = excitation[idx]
        if inverse:  # FIR: needs the past input, so filter with the previous ORDER input samples prepended
            lo = idx[0]
            past = excitation[max(0, lo - ORDER):lo]
            out[idx] = lfilter(a, [1.0], np.concatenate([past, seg]))[len(past):]
        else:
            out[idx], state = lfilter([1.0], a, seg, zi=state)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-voice", type=int, default=8, help="held-out utterances per voice (default 8: all)")
    p.add_argument("--seed", type=int, default=0, help="the noise draws' seed (default 0)")
    args = p.parse_args()
    meta = json.loads((FLITE_SAMPLE / "metadata.json").read_text())
    rng = np.random.default_rng(args.seed)
    rows, count = defaultdict(list), defaultdict(int)
    for u in meta["utterances"]:
        voice = u["speaker"]
        if u["split"] != "test" or voice not in ("slt", "rms", "awb") or count[voice] >= args.per_voice:
            continue
        count[voice] += 1
        x, rate = sf.read(str(FLITE_SAMPLE / u["file"]), dtype="float64")
        assert rate == RATE
        x = x[: len(x) // HOP * HOP]
        frames = log_mel(torch.from_numpy(x).float(), RATE, N_MELS, HOP, N_FFT).numpy()
        coeffs = lpc_from_log_mel(frames)
        noise = mel_noise(frames, len(x), rng)
        noise *= np.std(x) / max(np.std(noise), 1e-12)
        e = filter_frames(x, coeffs, inverse=True)
        which = frame_of(np.arange(len(x)), len(coeffs))
        energy = np.sqrt(np.bincount(which, e * e, len(coeffs)) / np.maximum(np.bincount(which, None, len(coeffs)), 1))
        floor = filter_frames(rng.standard_normal(len(x)) * energy[which], coeffs, inverse=False)
        floor *= 0.9 / max(np.abs(floor).max(), 1e-9)
        src = pitch_source(pitch(x, RATE, HOP, N_FFT)[None].double(), len(x), HOP, RATE)[0].numpy()
        v = np.hypot(src[0], src[1])  # the voicing ramp, 0..1
        phase = np.arctan2(src[1], src[0])
        pulse = ((phase[1:] >= 0) & (phase[:-1] < 0)).astype(np.float64)  # once a period, where phase crosses 0
        pulse = np.concatenate([[0.0], pulse])
        period_energy = np.bincount(which, pulse, len(coeffs))[which]  # pulses in the sample's frame
        voiced = pulse * np.sqrt(HOP / np.maximum(period_energy, 1))  # unit power over the frame
        mixed = np.sqrt(v) * voiced + np.sqrt(1 - v) * rng.standard_normal(len(x))
        pulses = filter_frames(mixed * energy[which], coeffs, inverse=False)
        pulses *= 0.9 / max(np.abs(pulses).max(), 1e-9)
        quantised = mu_law_decode(mu_law_encode(torch.from_numpy(np.clip(e, -1, 1)))).double().numpy()
        ceiling = np.clip(filter_frames(quantised, coeffs, inverse=False), -1, 1)
        plain = mu_law_decode(mu_law_encode(torch.from_numpy(x))).double().numpy()
        row = {"gain_db": 10 * np.log10(np.var(x) / np.var(e))}
        for name, wave in (("recording", x), ("floor", floor), ("pulses", pulses), ("mel noise", noise),
                           ("ceiling", ceiling), ("mu-law", plain)):
            row[f"stoi {name}"] = se.stoi(x, wave, RATE) if name != "recording" else 1.0
            row[f"wer {name}"] = se.word_error_rate(u["text"], se.recognize(wave.astype(np.float32), RATE))
        rows[voice].append(row)
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True)
    print(f"flite-sample held-out, {args.per_voice} per voice; {cpu.stdout.strip() or platform.processor()}\n")
    keys = list(next(iter(rows.values()))[0])
    print("| voice | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for voice, rs in rows.items():
        print(f"| {voice} | " + " | ".join(f"{np.mean([r[k] for r in rs]):.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
