"""The CUDA path of every model against the CPU path, through the CLI's own `main()`, for a machine with a GPU
(the tests and CI run on CPUs only). One process; every check runs even if one before it failed.

    python tools/gpu_check.py                      # --device cuda, work in a temporary folder
    python tools/gpu_check.py --checks 'sample'    # only the checks whose name matches a regular expression

Tiny models are trained on the CPU first (20 steps each, on the embedded data), then for each:
- `train` on the device (also `--bf16` and `--compile` for Gated PixelCNN and the WaveNet vocoder);
- `eval` on the device and on the CPU: the same bits/dim to 1e-3 (with full float32, to the fifth decimal);
- `sample` / `generate` / `resynthesize` on the device, cached and naive, and on the CPU with the same seed: the
  device's cached and naive draws must be equal; the share equal to the CPU's is printed.
Ends with 'N passed, M failed'; exit status 1 if any failed. Run on an H200 on 2026-12-04 (docs/results.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from pixelwave.cli import main

IMAGE = ["pixelcnn", "gated_pixelcnn", "pixelcnn_pp", "pixelvae", "pixelrnn_row", "pixelrnn_diag", "pixelsnail"]
FLITE = Path(__file__).resolve().parents[1] / "src/pixelwave/data/assets/flite/awb"


def cli(*argv) -> str:
    """Run `pixelwave ARGV` in this process; its printed output, or RuntimeError with its error line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    if rc != 0:
        raise RuntimeError(f"rc {rc}: pixelwave {' '.join(map(str, argv))}\n{err.getvalue()[-2000:]}")
    return out.getvalue() + err.getvalue()


def bits(text: str) -> float:
    return float(re.search(r"([0-9.]+) bits/(dim|sample)", text).group(1))


class Checks:
    def __init__(self, device: str, work: Path, pattern: str):
        self.device, self.work, self.pattern, self.results = device, work, pattern, []

    def run(self, name: str, fn) -> None:
        if not re.search(self.pattern, name):
            return
        t = time.time()
        try:
            message = fn()
            print(f"OK   {name}: {message} ({time.time() - t:.1f} s)", flush=True)
            self.results.append(True)
        except Exception:
            print(f"FAIL {name}:\n{traceback.format_exc()[-3000:]}", flush=True)
            self.results.append(False)

    def train(self, model: str, data: str, *extra):
        def fn():
            tag = "-".join(e.strip("-") for e in extra) or "plain"
            text = cli("train", "--model", model, "--preset", "tiny", "--data", data, "--steps", 6, "--device",
                       self.device, "--eval-every", 0, "--no-progress", "--out", self.work / f"train-{model}-{tag}",
                       "--overwrite", *extra)
            return text.strip().splitlines()[-1]
        return fn

    def evaluate(self, run: Path, data: str):
        def fn():
            flags = ["--data", data, "--split", "test"] + (["--no-speech-scores"] if "flite" in data else [])
            a = bits(cli("eval", run, *flags, "--device", self.device))
            b = bits(cli("eval", run, *flags, "--device", "cpu"))
            assert abs(a - b) < 1e-3, (a, b)
            return f"{self.device} {a:.5f} vs cpu {b:.5f} bits"
        return fn

    def draws(self, run: Path, read, suffix: str, *argv):
        """argv: the command and its flags; the three draws: device cached, device naive, CPU."""
        def fn():
            got = {}
            for tag, extra in (("dev", ["--device", self.device]), ("naive", ["--device", self.device, "--naive"]),
                               ("cpu", ["--device", "cpu"])):
                path = self.work / f"{run.name}-{argv[0]}-{tag}{suffix}"
                cli(argv[0], run, *argv[1:], "--out", path, "--force", *extra)
                got[tag] = read(path)
            assert got["dev"].shape == got["naive"].shape and (got["dev"] == got["naive"]).all(), \
                f"cached != naive on {self.device}: {(got['dev'] == got['naive']).mean():.6f} equal"
            return (f"cached == naive on {self.device}; equal to the CPU's for {(got['dev'] == got['cpu']).mean():.4f}"
                    f" of {got['dev'].size} values")
        return fn


def main_(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--work", type=Path, help="folder for the runs and draws (default: a temporary one)")
    p.add_argument("--checks", default="", help="regular expression: only the checks whose name matches")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt = work / "cpu"
        for m in IMAGE:  # tiny checkpoints, trained on the CPU
            cli("train", "--model", m, "--preset", "tiny", "--data", "mnist-sample", "--steps", 20, "--device", "cpu",
                "--eval-every", 0, "--no-progress", "--out", ckpt / m, "--overwrite")
        cli("train", "--model", "wavenet", "--preset", "tiny", "--data", "speech-sample", "--steps", 20, "--device",
            "cpu", "--eval-every", 0, "--no-progress", "--out", ckpt / "wavenet_speaker", "--overwrite")
        cli("train", "--model", "wavenet", "--preset", "tiny", "--data", "flite-sample", "--mel", "--pitch",
            "--cond-hidden", 8, "--pre-emphasis", 0.85, "--output", "categorical", "--steps", 20, "--device", "cpu",
            "--eval-every", 0, "--no-progress", "--out", ckpt / "wavenet_vocoder", "--overwrite")
        wave, rate = sf.read(sorted(FLITE.glob("*.flac"))[0])
        sf.write(work / "input.wav", wave[: int(0.4 * rate)], rate)  # 0.4 s: the naive generator is slow

        def image(path):
            return np.asarray(Image.open(path))

        def audio(path):
            return sf.read(path, dtype="int16")[0]

        c = Checks(args.device, work, args.checks)
        for m in IMAGE:
            c.run(f"train {m}", c.train(m, "mnist-sample"))
            c.run(f"eval {m}", c.evaluate(ckpt / m, "mnist-sample"))
            c.run(f"sample {m}", c.draws(ckpt / m, image, ".png", "sample", "-n", 4, "--seed", 3))
        c.run("train gated_pixelcnn --bf16", c.train("gated_pixelcnn", "mnist-sample", "--bf16"))
        c.run("train gated_pixelcnn --compile", c.train("gated_pixelcnn", "mnist-sample", "--compile"))
        c.run("train wavenet (speaker)", c.train("wavenet", "speech-sample"))
        for extra in ("--bf16", "--compile"):
            c.run(f"train wavenet vocoder {extra}", c.train("wavenet", "flite-sample", "--mel", "--pitch", extra))
        c.run("eval wavenet (speaker)", c.evaluate(ckpt / "wavenet_speaker", "speech-sample"))
        c.run("eval wavenet vocoder", c.evaluate(ckpt / "wavenet_vocoder", "flite-sample"))
        c.run("generate wavenet (speaker)", c.draws(ckpt / "wavenet_speaker", audio, ".wav", "generate",
                                                    "--seconds", 0.05, "--seed", 3, "--speaker", 0))
        c.run("resynthesize wavenet vocoder", c.draws(ckpt / "wavenet_vocoder", audio, ".wav", "resynthesize",
                                                      "--input", work / "input.wav", "--seed", 3, "--speaker", "awb"))
    passed, failed = sum(c.results), len(c.results) - sum(c.results)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main_())
