"""`make demo`: a tour of pixelwave in a few minutes on a CPU, through the real CLI.

Training stays in it: a class-conditional Gated PixelCNN trains on the embedded MNIST sample for a minute (its
progress bar, then held-out bits/dim). The pictures and sounds come from small models that ship with the package
(`pixelwave pretrained`), trained by the commands on their cards: samples of every digit class and completions of
held-out digits (with and without --class: the class then comes from the model's exact posterior), the receptive
fields of PixelCNN and Gated PixelCNN, one clip per accent from an accent-conditioned WaveNet, and WaveNet as a
vocoder re-speaking a held-out recording (and, where flite is installed, `pixelwave say`). Re-running replaces the
previous demo.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from pixelwave.cli import main as cli


def run(step: str, argv: list[str]) -> None:
    print(f"\n$ pixelwave {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = cli(argv)
    if rc != 0:
        sys.exit(f"demo: step '{step}' failed (exit code {rc})")
    print(f"  [{step}: {time.perf_counter() - t0:.1f} s]", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo-out", help="folder for the demo's run, pictures and sounds")
    p.add_argument("--train-seconds", type=float, default=90.0, help="the image model's training time (default 90)")
    p.add_argument("--seconds", type=float, default=1.0, help="length of each generated accent clip (default 1 s)")
    p.add_argument("--skip-images", action="store_true", help="leave out the image part")
    p.add_argument("--skip-audio", action="store_true", help="leave out the audio part")
    args = p.parse_args(argv)
    from pixelwave.runtime import reuse_freed_memory

    reuse_freed_memory()  # this process trains: reuse activations' memory instead of re-faulting it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not args.skip_images:
        images(out, args.train_seconds)
    if not args.skip_audio:
        audio(out, args.seconds)
    print(f"\ndemo done in {(time.perf_counter() - t0) / 60:.1f} minutes. In {out}/:")
    if not args.skip_images:
        print("  gated_pixelcnn/     the model trained just now (pixelwave.load(DIR)), TensorBoard logs in tb/")
        print("  samples.png         a row of samples per digit class (pretrained:mnist-gated)")
        print("  completion_*.png    held-out digit, its kept top half, 6 completions (--class given / drawn from "
              "the posterior)")
        print("  receptive_field.png PixelCNN's blind spot next to Gated PixelCNN without one")
    if not args.skip_audio:
        print("  speech/ACCENT.wav   one clip per accent (pretrained:accents), and ACCENT.png (waveform + log-mel)")
        print("  vocoder.wav/.png    a held-out recording re-spoken by WaveNet from its log-mel frames "
              "(pretrained:vocoder), pictured under the recording")
        if shutil.which("flite"):
            print("  say.wav/.png        text to speech: flite's front end, WaveNet's waveform")
    return 0


def images(out: Path, train_seconds: float) -> None:
    run_dir = out / "gated_pixelcnn"
    run("train", ["train", "--preset", "demo", "--time-limit", str(train_seconds), "--out", str(run_dir),
                  "--overwrite"])
    shipped = "pretrained:mnist-gated"  # the same model trained for 10 minutes: its pictures are the demo's
    run("sample", ["sample", shipped, "-n", "60", "--out", str(out / "samples.png"), "--force"])

    # Complete the top half of held-out digits the model never saw: first with the class given, then without
    # it, where each completion's class is drawn from p(class | top half), which the model gives exactly.
    from pixelwave.data import load
    from pixelwave.viz import image_grid

    test = load("mnist-sample-binary", split="test")
    for k, label in enumerate((7, 2)):  # the first held-out 7 (its class given) and 2 (its class inferred)
        i = int((test.y == label).nonzero()[0])
        digit = out / f"heldout_{k}.png"
        image_grid(test.x[i:i + 1].long(), test.levels, pad=0).save(digit)
        given = ["--class", str(label)] if k == 0 else []
        run("complete", ["complete", shipped, "--image", str(digit), "--keep", "top-half", *given, "-n", "6",
                         "--out", str(out / f"completion_{k}.png"), "--force"])
    run("receptive-field", ["receptive-field", "--model", "pixelcnn,gated_pixelcnn", "--layers", "5",
                            "--out", str(out / "receptive_field.png"), "--force"])


def audio(out: Path, seconds: float) -> None:
    """The seed's "British / American accents" (one WaveNet, one clip per accent), then WaveNet as a vocoder."""
    import json

    from pixelwave.data.audio import FLITE_SAMPLE
    from pixelwave.pretrained import path as pretrained_path

    speech = out / "speech"
    speech.mkdir(exist_ok=True)
    accents = json.loads((pretrained_path("accents") / "data.json").read_text())["speakers"]
    for accent in accents:
        run("generate", ["generate", "pretrained:accents", "--speaker", accent, "--seconds", str(seconds),
                         "--out", str(speech / f"{accent}.wav"), "--force"])
    # A sentence no model heard in training, in the Scottish voice: the recording above, WaveNet's below.
    held_out = FLITE_SAMPLE / "awb" / "012.flac"
    run("resynthesize", ["resynthesize", "pretrained:vocoder", "--input", str(held_out), "--out",
                         str(out / "vocoder.wav"), "--force"])  # drawn as its card says
    if shutil.which("flite"):
        run("say", ["say", "Deep autoregressive models, in real time.", "--voice", "awb", "--out",
                    str(out / "say.wav"), "--force"])
    else:
        print("\n(no flite here: `pixelwave say` left out; apt-get install flite, or make speech-tools)")


if __name__ == "__main__":
    sys.exit(main())
