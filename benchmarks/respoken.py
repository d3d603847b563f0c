"""What the vocoder analyses share (vocoder_periodicity.py, vocoder_band_levels.py): the re-spoken utterances and
their recordings that `pixelwave eval RUN --data flite-sample --speech-out DIR` writes (VOICE-N.wav beside
VOICE-N-recording.wav, sample-aligned), and the command line that scores a folder of them per voice."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def pairs(folder: Path, voice: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(recording, re-spoken) float64 arrays of one length, per utterance of `voice` in `folder`."""
    found = sorted(folder.glob(f"{voice}-*-recording.wav"))
    if not found:
        raise SystemExit(f"{folder}: no {voice}-N-recording.wav (write them with eval --speech-out)")
    for rec_path in found:
        rec, rate = sf.read(rec_path)
        gen, rate2 = sf.read(str(rec_path).replace("-recording.wav", ".wav"))
        if rate != RATE or rate2 != RATE:
            raise SystemExit(f"{rec_path}: expected {RATE} Hz audio")
        n = min(len(rec), len(gen))
        yield rec[:n], gen[:n]


def texts(folder: Path, voice: str) -> list[str]:
    """The texts of `voice`'s utterances in `folder` (VOICE-N.txt), in the order `pairs` reads them."""
    found = sorted(folder.glob(f"{voice}-*-recording.wav"))
    missing = [p for p in found if not Path(str(p).replace("-recording.wav", ".txt")).exists()]
    if missing:
        raise SystemExit(f"{missing[0]}: no text beside it (eval --speech-out writes VOICE-N.txt since 2026-12-04)")
    return [Path(str(p).replace("-recording.wav", ".txt")).read_text(encoding="utf-8").strip() for p in found]


def main(doc: str, voice_scores: Callable[[Path, str], dict], table: Callable[[dict], None]) -> None:
    """`python benchmarks/NAME.py DIR [--voices slt rms awb] [--json]`: voice_scores(DIR, voice) for each voice,
    printed as JSON or by `table`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("folder", type=Path, help="what `pixelwave eval ... --speech-out` wrote")
    p.add_argument("--voices", nargs="+", default=["slt", "rms", "awb"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    scores = {v: voice_scores(args.folder, v) for v in args.voices}
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        table(scores)
