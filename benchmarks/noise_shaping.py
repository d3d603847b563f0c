"""Where a vocoder's drawing error should go: how its spectral shape costs words (issue 12's pre-emphasis).

A WaveNet that draws mu-law codes adds an error that is white in the coded signal. Coding x_t - alpha x_(t-1)
(`--pre-emphasis alpha`) and undoing it after the draw tilts that error like speech's spectrum. This measures the
tilt's effect with no network: each held-out recording of flite-sample is pre-emphasised with alpha, optionally
weighted further by the mel frames' own LPC filter A(z / gamma) (adaptive noise shaping, as CELP codecs weight
their error: the error then follows the formants), mu-law coded (256 codes), given Gaussian noise of `--noise`
codes (rounded: a stand-in for a network's draw; white, or with `--shapes diff diff2` high-passed once or twice
at the same RMS, as `--draw-shaping 1 / 2` shapes a WaveNet's draw), decoded and filtered back, and scored by
PocketSphinx (WER) and STOI against the recording. With --noise 0 it is the coding alone.

    python benchmarks/noise_shaping.py [--alphas 0.7 0.85 0.95] [--gammas 0 0.9] [--shapes white diff] [--noise 3]
        [--seeds 0 1]

About 1 s per utterance and setting on one core. Needs scipy (the speech-eval extra brings it).
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
from scipy.signal import lfilter, lfiltic

from pixelwave import lpc
from pixelwave import speech_eval as se
from pixelwave.audio import de_emphasis, log_mel, mu_law_decode, mu_law_encode, pre_emphasis
from pixelwave.data.audio import FLITE_SAMPLE
from pixelwave.distributions import high_passed

RATE, HOP, N_FFT, N_MELS, ORDER = 16000, 200, 800, 80, 16


def _segments(steps: int, frames: int):
    """(start, stop, frame) runs of samples that use one frame's filter: sample t uses frame round(t / hop), as
    `pixelwave.lpc.per_sample` assigns them."""
    frame = np.minimum((np.arange(steps) + HOP // 2) // HOP, frames - 1)
    starts = np.r_[0, np.nonzero(np.diff(frame))[0] + 1]
    return zip(starts, np.r_[starts[1:], steps], frame[starts], strict=True)


def weight(x: np.ndarray, coeffs: np.ndarray, gamma: float) -> np.ndarray:
    """y_t = x_t + sum_k a_k gamma^k x_(t-k), a from sample t's frame of coeffs (F, p); x = 0 before t = 0."""
    p = coeffs.shape[1]
    taps = gamma ** np.arange(1, p + 1)
    padded = np.r_[np.zeros(p), x]
    y = np.empty_like(x)
    for start, stop, f in _segments(len(x), len(coeffs)):
        y[start:stop] = lfilter(np.r_[1.0, coeffs[f] * taps], [1.0], padded[start:stop + p])[p:]
    return y


def unweight(y: np.ndarray, coeffs: np.ndarray, gamma: float) -> np.ndarray:
    """The inverse of `weight`: x_t = y_t - sum_k a_k gamma^k x_(t-k), each run from the outputs before it."""
    p = coeffs.shape[1]
    taps = gamma ** np.arange(1, p + 1)
    x = np.zeros(len(y) + p)
    for start, stop, f in _segments(len(y), len(coeffs)):
        a = np.r_[1.0, coeffs[f] * taps]
        state = lfiltic([1.0], a, x[start:start + p][::-1])  # the p outputs before the run, latest first
        x[start + p:stop + p] = lfilter([1.0], a, y[start:stop], zi=state)[0]
    return x[p:]


def shaped_noise(n: int, shape: str, rng: np.random.Generator) -> np.ndarray:
    """n unit-variance Gaussian values: white, or high-passed once ("diff") or twice ("diff2") and scaled back to
    unit variance, as `--draw-shaping 1 / 2` shapes a WaveNet's draw (`pixelwave.distributions.high_passed`)."""
    order = {"white": 0, "diff": 1, "diff2": 2}[shape]
    return high_passed(torch.from_numpy(rng.standard_normal(n + order)), order).numpy()


def coded(x: np.ndarray, coeffs: np.ndarray, alpha: float, gamma: float, noise: float,
          rng: np.random.Generator, shape: str = "white") -> np.ndarray:
    """x pre-emphasised (alpha), weighted (gamma), mu-law coded, given `noise` codes of noise, decoded and filtered
    back: what a vocoder's draw with that error would sound like."""
    e = pre_emphasis(x, alpha).numpy()
    y = weight(e, coeffs, gamma) if gamma else e
    codes = mu_law_encode(torch.from_numpy(y))
    if noise:
        codes = (codes + torch.from_numpy(np.round(shaped_noise(len(y), shape, rng) * noise)).long()).clamp(0, 255)
    y = mu_law_decode(codes).double().numpy()
    back = de_emphasis(unweight(y, coeffs, gamma) if gamma else y, alpha).numpy()
    return np.clip(back, -1.0, 1.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alphas", type=float, nargs="+", default=[0.7, 0.85, 0.9, 0.95, 0.97])
    p.add_argument("--gammas", type=float, nargs="+", default=[0.0], help="0: no adaptive weighting")
    p.add_argument("--shapes", nargs="+", default=["white"], choices=["white", "diff", "diff2"],
                   help="the noise's spectrum: white, or high-passed once or twice (default white)")
    p.add_argument("--noise", type=float, default=3.0, help="std of the code noise (default 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="noise draws (default 0 1)")
    p.add_argument("--per-voice", type=int, default=8, help="held-out utterances per voice (default 8: all)")
    p.add_argument("--voices", nargs="+", default=["slt", "rms", "awb"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if any(not 0 <= a < 1 for a in args.alphas) or any(not 0 <= g < 1 for g in args.gammas):
        raise SystemExit("alphas and gammas must be in [0, 1)")
    meta = json.loads((FLITE_SAMPLE / "metadata.json").read_text())
    scores, count = defaultdict(list), defaultdict(int)
    for u in meta["utterances"]:
        voice = u["speaker"]
        if u["split"] != "test" or voice not in args.voices or count[voice] >= args.per_voice:
            continue
        count[voice] += 1
        x, rate = sf.read(str(FLITE_SAMPLE / u["file"]), dtype="float64")
        assert rate == RATE
        x = x[: len(x) // HOP * HOP]
        coeffs = lpc.coefficients(log_mel(torch.from_numpy(x).float(), RATE, N_MELS, HOP, N_FFT)[None], RATE,
                                  ORDER)[0].numpy()
        settings = [(a, g, sh) for a in args.alphas for g in args.gammas for sh in args.shapes]
        for seed in args.seeds:
            for alpha, gamma, shape in settings:
                rng = np.random.default_rng([seed, args.voices.index(voice), count[voice]])  # one draw per setting
                wave = coded(x, coeffs, alpha, gamma, args.noise, rng, shape)
                heard = se.recognize(wave.astype(np.float32), RATE)
                scores[(alpha, gamma, shape, voice, "wer")].append(se.word_error_rate(u["text"], heard))
                scores[(alpha, gamma, shape, voice, "stoi")].append(se.stoi(x, wave, RATE))
    result = {f"alpha {a} gamma {g} shape {sh}": {v: {k: float(np.mean(scores[(a, g, sh, v, k)]))
                                                     for k in ("wer", "stoi")} for v in args.voices}
              for a in args.alphas for g in args.gammas for sh in args.shapes}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    cpu = subprocess.run(["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True)
    print(f"flite-sample held-out, {args.per_voice} per voice, code noise {args.noise:g}, seeds {args.seeds}; "
          f"{cpu.stdout.strip() or platform.processor()}\n")
    print("| alpha | gamma | noise | " + " | ".join(f"WER {v}" for v in args.voices) + " | "
          + " | ".join(f"STOI {v}" for v in args.voices) + " |")
    print("|---:|---:|---|" + "---:|" * (2 * len(args.voices)))
    for name, row in result.items():
        a, g, sh = name.split()[1], name.split()[3], name.split()[5]
        print(f"| {a} | {g} | {sh} | " + " | ".join(f"{row[v]['wer']:.3f}" for v in args.voices) + " | "
              + " | ".join(f"{row[v]['stoi']:.3f}" for v in args.voices) + " |")


if __name__ == "__main__":
    main()
