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


def _recordings(folder: Path, voice: str) -> list[Path]:
    """`voice`'s VOICE-N-recording.wav files in `folder`, in one order for every reader here."""
    found = sorted(folder.glob(f"{voice}-*-recording.wav"))
    if not found:
        raise SystemExit(f"{folder}: no {voice}-N-recording.wav (write them with eval --speech-out)")
    return found


def _beside(rec_path: Path, suffix: str) -> Path:
    """The file eval --speech-out writes beside a recording: VOICE-N + suffix."""
    return Path(str(rec_path).replace("-recording.wav", suffix))


def pairs(folder: Path, voice: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(recording, re-spoken) float64 arrays of one length, per utterance of `voice` in `folder`."""
    for rec_path in _recordings(folder, voice):
        rec, rate = sf.read(rec_path)
        gen, rate2 = sf.read(_beside(rec_path, ".wav"))
        if rate != RATE or rate2 != RATE:
            raise SystemExit(f"{rec_path}: expected {RATE} Hz audio")
        n = min(len(rec), len(gen))
        yield rec[:n], gen[:n]


def texts(folder: Path, voice: str) -> list[str]:
    """The texts of `voice`'s utterances in `folder` (VOICE-N.txt), in the order `pairs` reads them."""
    paths = [_beside(p, ".txt") for p in _recordings(folder, voice)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"{missing[0]}: not found (eval --speech-out writes VOICE-N.txt since 2026-12-04)")
    return [p.read_text(encoding="utf-8").strip() for p in paths]


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
