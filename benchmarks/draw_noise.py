"""How much noise a vocoder's draw adds, in mu-law codes: the scale that benchmarks/noise_shaping.py's proxy
(the recording plus Gaussian noise of N codes) stands in for.

    python benchmarks/draw_noise.py RUN [RUN ...] [--temperature 0.7] [--floor 0.002]

For every held-out utterance of flite-sample (8 per voice), teacher-forced, each step's draw distribution is the
one `pixelwave eval --speech-temperature T --speech-probability-floor F` draws from (softmax(logits / T), less the
floor, renormalised: `pixelwave.distributions.categorical_probs`). Per voice it prints the root mean square and
the median over the steps of that distribution's standard deviation in codes (the spread of a draw around the
distribution's mean: what the proxy's noise std models), the mean absolute distance in codes from that mean to
the recording's code, and the held-out bits/sample of the model itself (T = 1, no floor). RUN is a run folder or
`pretrained:NAME` of a mel-conditioned categorical WaveNet. About 90 s per model on one core.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from pixelwave.cli.common import audio_options, load_checkpoint
from pixelwave.data.audio import load_audio
from pixelwave.distributions import categorical_probs

from harness import cpu_model, isa_level


def spread(logits: torch.Tensor, codes: torch.Tensor, temperature: float, floor: float):
    """logits (L, T), codes (T,) -> (variance (T,), mean (T,), log2 p of the codes at T = 1 (T,)): of the draw
    distribution `categorical_sample` uses, in codes."""
    logits = logits.double()
    probs = categorical_probs(logits.t(), temperature, floor).t()
    c = torch.arange(logits.shape[0], dtype=torch.float64)[:, None]
    mean = (probs * c).sum(0)
    var = (probs * c * c).sum(0) - mean**2
    logp = F.log_softmax(logits, dim=0).gather(0, codes[None])[0] / math.log(2)
    return var.clamp(min=0), mean, logp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--floor", type=float, default=0.002)
    args = ap.parse_args(argv)
    print(f"flite-sample held-out, teacher-forced; draw: T {args.temperature}, floor {args.floor}; "
          f"{cpu_model()}, {isa_level()}\n")
    print("| model | voice | draw std, codes: RMS / median | |mean - recording|, codes | bits/sample |")
    print("|---|---|---:|---:|---:|")
    for run in args.runs:
        model, info = load_checkpoint(run, torch.device("cpu"))
        model.eval()
        data = load_audio("flite-sample", split="test", **audio_options(info, model))
        sums = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
        stds = defaultdict(list)
        with torch.no_grad():
            for i in range(len(data.lengths)):
                u = data.utterance(i)
                logits = model.logits(u["a"], cond=u["cond"])[0]  # (L, T)
                var, mean, logp = spread(logits, u["a"][0], args.temperature, args.floor)
                voice = Path(data.sources[i]).parent.name
                stds[voice].append(var.sqrt())
                s = sums[voice]
                s[0] += float(var.sum())
                s[1] += float((mean - u["a"][0]).abs().sum())
                s[2] -= float(logp.sum())
                s[3] += var.numel()
        for voice, (var, dist, bits, n) in sums.items():
            median = float(torch.cat(stds[voice]).median())
            print(f"| {run} | {voice} | {math.sqrt(var / n):.2f} / {median:.2f} | {dist / n:.2f} | {bits / n:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
