"""How closely a vocoder's re-spoken voice follows the recording's level, band by band and frame by frame.

Reads the folder that `pixelwave eval RUN --data flite-sample --speech-out DIR` writes (VOICE-N.wav, the re-spoken
utterance, beside VOICE-N-recording.wav; the two are sample-aligned) and, per voice and band (60-500 Hz, 0.5-1,
1-1.5, 1.5-2, 2-3, 3-4, 4-6, 6-7.9 kHz), over the frames where the recording has speech (its frame energy within
30 dB of the utterance's loudest frame; 512-sample Hann frames every 128 samples):

- bias: the mean of (re-spoken - recording) band level in dB (a band too loud or too quiet on average);
- error: the mean absolute difference in dB, frame by frame (what a spectral envelope distance sees per band);
- tracking: the correlation over frames of the two band levels (1: the re-spoken band rises and falls with the
  recording's, as formant movements and consonant onsets make it).

    python benchmarks/vocoder_band_levels.py DIR [--voices slt rms awb] [--json]

`benchmarks/vocoder_periodicity.py` on the same folder measures the harmonics inside the bands. Needs scipy (the
speech-eval extra brings it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import stft

import respoken
from respoken import RATE

FRAME, STEP, SPEECH_DB = 512, 128, 30.0
BANDS = ((60, 500), (500, 1000), (1000, 1500), (1500, 2000), (2000, 3000), (3000, 4000), (4000, 6000),
         (6000, 7900))


def band_levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(levels (bands, frames) in dB, the frames' total level in dB)."""
    freqs, _, spec = stft(x, RATE, nperseg=FRAME, noverlap=FRAME - STEP)
    power = np.abs(spec) ** 2 + 1e-12
    levels = np.stack([10 * np.log10(power[(freqs >= lo) & (freqs < hi)].mean(0)) for lo, hi in BANDS])
    return levels, 10 * np.log10(power.sum(0))


def voice_scores(folder: Path, voice: str) -> dict:
    rec_all, gen_all = [], []
    for rec, gen in respoken.pairs(folder, voice):
        (lr, total), (lg, _) = band_levels(rec), band_levels(gen)
        speech = total > total.max() - SPEECH_DB
        rec_all.append(lr[:, speech])
        gen_all.append(lg[:, speech])
    rec, gen = np.concatenate(rec_all, 1), np.concatenate(gen_all, 1)  # (bands, frames)
    diff = gen - rec
    return {"utterances": len(rec_all), "frames": rec.shape[1],
            "bands": {f"{lo}-{hi}": {"bias_db": float(d.mean()), "error_db": float(np.abs(d).mean()),
                                     "tracking": float(np.corrcoef(r, g)[0, 1])}
                      for (lo, hi), d, r, g in zip(BANDS, diff, rec, gen, strict=True)}}


def table(scores: dict) -> None:
    names = [f"{lo}-{hi} Hz" for lo, hi in BANDS]
    print("bias / error dB, tracking, per band (over the recording's speech frames)")
    print("| voice | frames | " + " | ".join(names) + " |")
    print("|---" * (2 + len(names)) + "|")
    for v, s in scores.items():
        cells = [f"{b['bias_db']:+.1f} / {b['error_db']:.1f}, {b['tracking']:.2f}" for b in s["bands"].values()]
        print(f"| {v} | {s['frames']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    respoken.main(__doc__, voice_scores, table)
