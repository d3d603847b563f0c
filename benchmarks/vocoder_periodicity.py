"""Where a vocoder's re-spoken voice keeps the recording's periodicity, and where it turns to noise.

Reads the folder that `pixelwave eval RUN --data flite-sample --speech-out DIR` writes (VOICE-N.wav, the re-spoken
utterance, beside VOICE-N-recording.wav) and, per voice, over the frames the recording is voiced in (the pitch
tracker's correlation `pixelwave.audio.pitch` row 1 > 0.8, the frames of `log_mel`: 800 samples every 200):

- voicing: the tracker's correlation of the recording and of the re-spoken audio in those frames (mean), and the
  share of them in which the re-spoken audio falls to 0.8 or below (the frame is no longer voiced);
- per band (60 Hz - 1 kHz, 1-2, 2-4, 4-7.9 kHz; 6th-order Butterworth, forward and backward): the normalised
  correlation of the band-passed signal with itself one recording period later (the period from the recording's
  own f0 row), for the recording and the re-spoken audio. Harmonics the vocoder keeps give values near the
  recording's; noise where the recording has harmonics gives ~0.

    python benchmarks/vocoder_periodicity.py DIR [--voices slt rms awb] [--json]

Needs scipy (the speech-eval extra brings it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.signal import butter, sosfiltfilt

import respoken
from pixelwave.audio import pitch
from respoken import RATE

HOP, N_FFT, VOICED = 200, 800, 0.8
BANDS = ((60, 1000), (1000, 2000), (2000, 4000), (4000, 7900))


def period_correlation(x: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Per frame f: the normalised correlation of x's N_FFT samples centred on f * HOP with themselves shifted by
    one period of f0[f] (Hz)."""
    out = np.zeros(len(f0))
    for f, hz in enumerate(f0):
        tau, lo = int(round(RATE / hz)), max(0, f * HOP - N_FFT // 2)
        a, b = x[lo: f * HOP + N_FFT // 2 - tau], x[lo + tau: f * HOP + N_FFT // 2]
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        out[f] = (a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-12)
    return out


def voice_scores(folder: Path, voice: str) -> dict:
    rec_corr, gen_corr, lost, bands = [], [], [], {b: ([], []) for b in BANDS}
    utterances = 0
    for rec, gen in respoken.pairs(folder, voice):
        utterances += 1
        pr = pitch(torch.from_numpy(rec).float(), RATE, HOP, N_FFT).numpy()
        pg = pitch(torch.from_numpy(gen).float(), RATE, HOP, N_FFT).numpy()
        voiced = pr[1] > VOICED
        rec_corr += list(pr[1][voiced])
        gen_corr += list(pg[1][voiced])
        lost += list(pg[1][voiced] <= VOICED)
        f0 = 100.0 * np.exp(pr[0])  # row 0 is log(f0 / 100 Hz)
        for lo, hi in BANDS:
            sos = butter(6, [lo, hi], btype="band", fs=RATE, output="sos")
            bands[(lo, hi)][0].extend(period_correlation(sosfiltfilt(sos, rec), f0)[voiced])
            bands[(lo, hi)][1].extend(period_correlation(sosfiltfilt(sos, gen), f0)[voiced])
    return {"utterances": utterances, "voiced_frames": len(rec_corr),
            "voicing_recording": float(np.mean(rec_corr)), "voicing_respoken": float(np.mean(gen_corr)),
            "unvoiced_share": float(np.mean(lost)),
            "bands": {f"{lo}-{hi}": {"recording": float(np.mean(a)), "respoken": float(np.mean(b))}
                      for (lo, hi), (a, b) in bands.items()}}


def table(scores: dict) -> None:
    names = [f"{lo}-{hi} Hz" for lo, hi in BANDS]
    print("| voice | voiced frames | voicing rec / re-spoken | no longer voiced | "
          + " | ".join(f"{n} rec / re-spoken" for n in names) + " |")
    print("|---" * (4 + len(names)) + "|")
    for v, s in scores.items():
        cells = [f"{b['recording']:.2f} / {b['respoken']:.2f}" for b in s["bands"].values()]
        print(f"| {v} | {s['voiced_frames']} | {s['voicing_recording']:.3f} / {s['voicing_respoken']:.3f} | "
              f"{100 * s['unvoiced_share']:.1f}% | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    respoken.main(__doc__, voice_scores, table)
