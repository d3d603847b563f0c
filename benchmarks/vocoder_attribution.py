"""Which part of the re-spoken audio costs the recognizer its words: hybrids of recording and re-spoken.

Reads one or more folders that `pixelwave eval RUN --data flite-sample --speech-out DIR` writes (VOICE-N.wav, the
re-spoken utterance, beside VOICE-N-recording.wav, sample-aligned, and VOICE-N.txt, its text), builds from each
pair hybrids in the short-time Fourier domain (512-sample Hann frames every 128 samples, inverted exactly), and
reports PocketSphinx's word error rate on each, per voice, pooled over every folder given (several draws of the
same model make it less noisy):

- recording / re-spoken: the two as they are;
- |recording|, re-spoken phase (and the converse): does the error sit in the magnitudes or in the phases (the
  fine time structure: harmonics' alignment, pulse shapes)?
- re-spoken, levels fixed in 5 / 24 bands: each frame's energy in each band (octaves from 500 Hz; 24
  log-spaced bands from 100 Hz, close to a mel scale) scaled to the recording's, the re-spoken fine structure
  inside the bands kept: is the error the short-time envelope, and at what resolution? (The 31.25 Hz bins make
  the 24 bands below ~500 Hz 0-3 bins wide: there the levels also carry part of the harmonics.)
- noise, recording's 24-band levels: white noise given the recording's levels the same way (a channel
  vocoder: what the envelope alone carries, with no speech structure inside the bands);
- recording, re-spoken LO-HI Hz: the recording with one band taken from the re-spoken audio (where the
  damage is).

Given two or more folders (draws of one model from the same recordings, e.g. `--speech-seed 0` and `1000`), it
also asks whether the band levels' error is the draw's randomness or the model's envelope: per band of
`vocoder_band_levels.py`, over the recording's speech frames, the mean absolute level difference in dB of the
first draw against the recording, of the first draw against the second, and of the draws' mean power against
the recording (what is left when the randomness is averaged away).

    python benchmarks/vocoder_attribution.py DIR [DIR ...] [--voices awb] [--json]

Needs the speech-eval extra (PocketSphinx, jiwer, scipy). ~0.5 s per hybrid and utterance on one core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.signal import istft, stft

import respoken
from pixelwave.speech_eval import recognize, word_error_rate
from respoken import RATE
from vocoder_band_levels import BANDS, FRAME, SPEECH_DB, STEP, band_levels

FREQS = np.fft.rfftfreq(FRAME, 1 / RATE)
OCTAVES = ((0, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, RATE // 2 + 1))
_EDGES = np.geomspace(100, RATE // 2 + 1, 25)
BANDS_24 = ((0, 100),) + tuple(zip(_EDGES[:-1], _EDGES[1:], strict=True))


def _spec(x: np.ndarray) -> np.ndarray:
    return stft(x, RATE, nperseg=FRAME, noverlap=FRAME - STEP)[2]


def _wave(spec: np.ndarray, n: int) -> np.ndarray:
    return istft(spec, RATE, nperseg=FRAME, noverlap=FRAME - STEP)[1][:n]


def with_levels(spec: np.ndarray, target: np.ndarray, bands) -> np.ndarray:
    """`spec` with every frame's energy in each band scaled to `target`'s (fine structure inside bands kept)."""
    out = spec.copy()
    for lo, hi in bands:
        m = (FREQS >= lo) & (FREQS < hi)
        want, have = (np.abs(target[m]) ** 2).sum(0), (np.abs(spec[m]) ** 2).sum(0)
        out[m] *= np.sqrt((want + 1e-10) / (have + 1e-10))
    return out


def hybrids(rec: np.ndarray, gen: np.ndarray, noise: np.ndarray) -> dict[str, np.ndarray]:
    """The variants of one utterance (name -> waveform), every one of the recording's length."""
    n = len(rec)
    r, g = _spec(rec), _spec(gen)
    out = {"recording": rec, "re-spoken": gen,
           "|recording|, re-spoken phase": _wave(np.abs(r) * np.exp(1j * np.angle(g)), n),
           "|re-spoken|, recording phase": _wave(np.abs(g) * np.exp(1j * np.angle(r)), n),
           "re-spoken, levels fixed in 5 bands": _wave(with_levels(g, r, OCTAVES), n),
           "re-spoken, levels fixed in 24 bands": _wave(with_levels(g, r, BANDS_24), n),
           "noise, recording's 24-band levels": _wave(with_levels(_spec(noise), r, BANDS_24), n)}
    for lo, hi in OCTAVES:
        band = ((FREQS >= lo) & (FREQS < hi))[:, None]
        out[f"recording, re-spoken {lo}-{min(hi, RATE // 2)} Hz"] = _wave(np.where(band, g, r), n)
    return out


def voice_scores(folders: list[Path], voice: str) -> dict:
    wer: dict[str, list[float]] = {}
    rng = np.random.default_rng(0)
    for folder in folders:
        for (rec, gen), text in zip(respoken.pairs(folder, voice), respoken.texts(folder, voice), strict=True):
            for name, x in hybrids(rec, gen, rng.standard_normal(len(rec))).items():
                wer.setdefault(name, []).append(word_error_rate(text, recognize(x.astype(np.float32), RATE)))
    return {"utterances": len(wer["recording"]), "wer": {k: float(np.mean(v)) for k, v in wer.items()}}


def draw_errors(folders: list[Path], voice: str) -> dict:
    """Per band of vocoder_band_levels: mean |level difference| dB of draw 1 - recording, draw 1 - draw 2, and the
    draws' mean power - recording, over the recording's speech frames."""
    errors: dict[str, list[np.ndarray]] = {"draw - recording": [], "draw - other draw": [],
                                           "mean of draws - recording": []}
    for utterance in zip(*(respoken.pairs(f, voice) for f in folders), strict=True):
        rec = utterance[0][0]
        if not all(np.array_equal(r, rec) for r, _ in utterance):
            raise SystemExit("the folders hold different recordings: give draws of one model on the same data")
        rec_levels, total = band_levels(rec)
        speech = total > total.max() - SPEECH_DB
        draws = [band_levels(gen)[0] for _, gen in utterance]
        mean = 10 * np.log10(np.mean([10 ** (d / 10) for d in draws], axis=0))
        for name, diff in zip(errors, (draws[0] - rec_levels, draws[0] - draws[1], mean - rec_levels), strict=True):
            errors[name].append(np.abs(diff[:, speech]))
    return {name: [float(v) for v in np.concatenate(e, 1).mean(1)] for name, e in errors.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path, help="what `pixelwave eval ... --speech-out` wrote")
    p.add_argument("--voices", nargs="+", default=["slt", "rms", "awb"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    scores = {v: voice_scores(args.folders, v) for v in args.voices}
    if len(args.folders) > 1:
        for v in args.voices:
            scores[v]["band_level_error_db"] = draw_errors(args.folders, v)
    if args.json:
        print(json.dumps(scores, indent=2))
        return
    print("| WER | " + " | ".join(f"{v} ({s['utterances']})" for v, s in scores.items()) + " |")
    print("|---" * (1 + len(scores)) + "|")
    for name in next(iter(scores.values()))["wer"]:
        print(f"| {name} | " + " | ".join(f"{s['wer'][name]:.3f}" for s in scores.values()) + " |")
    if len(args.folders) > 1:
        print(f"\nband level error, dB, over {len(args.folders)} draws")
        print("| voice | levels | " + " | ".join(f"{lo}-{hi} Hz" for lo, hi in BANDS) + " |")
        print("|---" * (2 + len(BANDS)) + "|")
        for v, s in scores.items():
            for name, row in s["band_level_error_db"].items():
                print(f"| {v} | {name} | " + " | ".join(f"{x:.1f}" for x in row) + " |")


if __name__ == "__main__":
    main()
