"""`make demo`: train a class-conditional Gated PixelCNN on the embedded MNIST sample for a few CPU minutes, then
score it, sample a grid (one row per digit), complete held-out digits and draw the receptive fields; then train a
small accent-conditioned WaveNet on the embedded speech sample for a few CPU minutes, score it in bits per sample,
and speak one clip per accent (a WAV and its waveform + spectrogram picture each).

Everything goes through the real CLI, so the demo is also a tour of it. Re-running replaces the previous demo.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from pixelwave.cli import main as cli


def run(step: str, argv: list[str]) -> None:
    print(f"\n$ pixelwave {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = cli(argv)
    if rc != 0:
        sys.exit(f"demo: step '{step}' failed (exit code {rc})")
    print(f"  [{step}: {time.perf_counter() - t0:.1f} s]", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="demo-out", help="folder for the demo's run and pictures")
    p.add_argument("--steps", type=int, default=None, help="image training steps (default: the demo preset's)")
    p.add_argument("--audio-steps", type=int, default=None,
                   help="WaveNet training steps (default: the wavenet preset's)")
    p.add_argument("--seconds", type=float, default=1.0, help="length of each generated clip (default 1 s)")
    p.add_argument("--skip-images", action="store_true", help="leave out the image part")
    p.add_argument("--skip-audio", action="store_true", help="leave out the audio part")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1; 0 = torch's default)")
    args = p.parse_args(argv)
    from pixelwave.runtime import reuse_freed_memory

    reuse_freed_memory()  # this process trains: reuse activations' memory instead of re-faulting it
    if args.threads > 0:
        # These models are small: on 2 cores shared with other work, 2 OpenMP threads that wait on each other
        # made a training step 4x slower (images) to 30x slower (WaveNet) than 1 thread; idle, 2 gain < 2x.
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not args.skip_images:
        images(out, args.steps)
    if not args.skip_audio:
        audio(out, args.audio_steps, args.seconds)
    print(f"\ndemo done in {(time.perf_counter() - t0) / 60:.1f} minutes. In {out}/:")
    if not args.skip_images:
        print("  gated_pixelcnn/     the image model (pixelwave.load(DIR)), TensorBoard logs in tb/")
        print("  samples.png         a row of samples per digit class")
        print("  completion_*.png    held-out digit, its kept top half, 6 completions")
        print("  receptive_field.png PixelCNN's blind spot next to Gated PixelCNN without one")
    if not args.skip_audio:
        print("  wavenet/            the accent-conditioned WaveNet, TensorBoard curves and clips in tb/")
        print("  speech/ACCENT.wav   one generated clip per accent, and ACCENT.png (waveform + log-mel)")
    return 0


def images(out: Path, steps: int | None) -> None:
    run_dir = out / "gated_pixelcnn"
    steps = ["--steps", str(steps)] if steps else []

    run("train", ["train", "--preset", "demo", "--out", str(run_dir), "--overwrite", *steps])
    run("eval", ["eval", str(run_dir), "--data", "mnist-sample-binary"])
    run("sample", ["sample", str(run_dir), "-n", "80", "--out", str(out / "samples.png"), "--force"])

    # Complete the top half of a few held-out digits the model never saw.
    from pixelwave.data import load
    from pixelwave.viz import image_grid

    test = load("mnist-sample-binary", split="test")
    for k in (0, 1):
        digit = out / f"heldout_{k}.png"
        image_grid(test.x[k:k + 1].long(), test.levels, pad=0).save(digit)
        label = str(int(test.y[k]))
        run("complete", ["complete", str(run_dir), "--image", str(digit), "--keep", "top-half", "--class", label,
                         "-n", "6", "--out", str(out / f"completion_{k}.png"), "--force"])
    run("receptive-field", ["receptive-field", "--model", "pixelcnn,gated_pixelcnn", "--layers", "5",
                            "--out", str(out / "receptive_field.png"), "--force"])


def audio(out: Path, steps: int | None, seconds: float) -> None:
    """The seed's "British / American accents": one WaveNet, one clip per accent of the embedded corpus."""
    import json

    run_dir = out / "wavenet"
    steps = ["--steps", str(steps)] if steps else []
    run("train", ["train", "--preset", "wavenet", "--out", str(run_dir), "--overwrite", *steps])
    run("eval", ["eval", str(run_dir), "--data", "speech-sample"])
    speech = out / "speech"
    speech.mkdir(exist_ok=True)
    for accent in json.loads((run_dir / "data.json").read_text())["speakers"]:
        run("generate", ["generate", str(run_dir), "--speaker", accent, "--seconds", str(seconds),
                         "--out", str(speech / f"{accent}.wav"), "--force"])


if __name__ == "__main__":
    sys.exit(main())
