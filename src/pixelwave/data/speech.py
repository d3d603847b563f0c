"""Build an accent-labelled speech corpus with espeak-ng: the source of the embedded `speech-sample` data set.

    build_speech_corpus(out_dir, voices=None, sentences_file=None, sample_rate=16000)

speaks every sentence of `sentences_file` (one a line; blank lines and `#` comments skipped; default: the 104
sentences shipped in data/assets/speech/sentences.txt) with espeak-ng in each English accent of `voices`
(default en-us, en-gb, en-gb-scotland, en-029), resamples to `sample_rate` mono (soxr), trims leading and
trailing silence (pixelwave.audio.trim_silence) and writes 16-bit FLAC files VOICE/NNN.flac plus metadata.json
(file, speaker, sentence id and text, split, espeak pitch and speed, samples). Load the result with
`wav:OUT_DIR`: the loader reads speakers and the split from metadata.json.

Held-out split, by sentence, so no test text is ever heard in training: sentence i (0-based, in file order)
is a test sentence when i % test_every == test_every - 1, and every voice speaks every test sentence.
Training sentences are spoken by `voices_per_sentence` voices (None: all), taken round-robin, so each voice
gets its share.
Pitch (espeak -p, 40..60) and speed (-s, 160..190 words/minute) vary per utterance, a fixed function of the
voice and the sentence, so a build is reproducible. The embedded corpus is exactly
`build_speech_corpus(out, voices_per_sentence=1, test_every=13)` (see data/assets/speech/README.md).

espeak-ng is needed only here; the package, its tests and the embedded corpus never run it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pixelwave.audio import read_audio, trim_silence
from pixelwave.errors import UserError

__all__ = ["build_speech_corpus", "read_sentences", "espeak_version", "DEFAULT_VOICES", "SENTENCES"]

DEFAULT_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029")
SENTENCES = Path(__file__).with_name("assets") / "speech" / "sentences.txt"
INSTALL_HINT = ("espeak-ng is not installed: apt-get install espeak-ng (Debian/Ubuntu) "
                "or brew install espeak-ng (macOS)")


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UserError(INSTALL_HINT)
    return exe


def espeak_version() -> str:
    """The version in `espeak-ng --version`: 'eSpeak NG text-to-speech: 1.51  Data at: ...' -> '1.51'."""
    out = subprocess.run([_espeak(), "--version"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    return words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words else out.strip()


def _voices_available() -> set[str]:
    out = subprocess.run([_espeak(), "--voices"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            names.update((parts[1], parts[4]))  # the language code (en-gb) and the file (gmw/en-GB-scotland)
    return names


def read_sentences(path: str | os.PathLike | None = None) -> list[str]:
    """Sentences from a text file, one a line; blank lines and lines starting with '#' are skipped."""
    path = Path(path) if path is not None else SENTENCES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read sentences ({e})") from None
    sentences = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not sentences:
        raise UserError(f"{path}: no sentences (one a line; '#' lines are comments)")
    return sentences


def _prosody(voice: str, sentence_id: int) -> tuple[int, int]:
    """espeak pitch (40..60) and speed (160..190 wpm) per utterance: varied, a fixed function of its id."""
    h = int.from_bytes(hashlib.sha256(f"{voice}:{sentence_id}".encode()).digest()[:8], "little")
    return 40 + h % 21, 160 + (h // 21) % 31


def build_speech_corpus(out_dir: str | os.PathLike, voices=None,
                        sentences_file: str | os.PathLike | None = None, sample_rate: int = 16000,
                        voices_per_sentence: int | None = None, test_every: int = 10, top_db: float = 40.0,
                        progress=None) -> dict:
    """Synthesise the corpus into `out_dir` (created; must be empty if it exists). Returns the metadata dict.

    `progress`, if given, is called as progress(done, total) after every utterance (the CLI passes a tqdm).
    """
    exe = _espeak()
    voices = list(DEFAULT_VOICES if voices is None else voices)
    if not voices or len(set(voices)) != len(voices):
        raise UserError(f"voices must be a non-empty list of distinct espeak-ng voices, got {voices!r}")
    known = _voices_available()
    missing = [v for v in voices if v not in known]
    if missing:
        raise UserError(f"espeak-ng has no voice {', '.join(missing)} (list them: espeak-ng --voices=en)")
    if voices_per_sentence is not None and not 1 <= voices_per_sentence <= len(voices):
        raise UserError(f"voices_per_sentence must be in 1..{len(voices)}, got {voices_per_sentence}")
    if test_every < 2:
        raise UserError(f"test_every must be at least 2, got {test_every}")
    sentences = read_sentences(sentences_file)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)

    plan, n_train = [], 0  # (sentence id, voice, split)
    for i in range(len(sentences)):
        if i % test_every == test_every - 1:
            plan += [(i, v, "test") for v in voices]
        else:
            k = len(voices) if voices_per_sentence is None else voices_per_sentence
            chosen = sorted({(n_train + j) % len(voices) for j in range(k)})  # round-robin, in voice order
            plan += [(i, voices[v], "train") for v in chosen]
            n_train += 1

    import soundfile as sf

    utterances = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "espeak.wav"
        for n, (i, voice, split) in enumerate(plan):
            pitch, speed = _prosody(voice, i)
            cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(wav), "--stdin"]
            run = subprocess.run(cmd, input=sentences[i], capture_output=True, text=True)
            if run.returncode != 0:
                raise UserError(f"espeak-ng failed on sentence {i} ({voice}): {run.stderr.strip()[:200]}")
            wave, _ = read_audio(wav, sample_rate)  # mono, resampled with soxr
            wave = trim_silence(wave, sample_rate, top_db=top_db)
            if len(wave) == 0:
                raise UserError(f"espeak-ng produced silence for sentence {i} ({voice})")
            rel = f"{voice}/{i:03d}.flac"
            (out / voice).mkdir(exist_ok=True)
            sf.write(str(out / rel), wave, sample_rate, format="FLAC", subtype="PCM_16", **_flac_level())
            utterances.append({"file": rel, "speaker": voice, "sentence_id": i, "text": sentences[i],
                               "split": split, "pitch": pitch, "speed": speed, "samples": int(len(wave))})
            if progress is not None:
                progress(n + 1, len(plan))
    meta = {"format": "pixelwave-speech-corpus", "sample_rate": sample_rate, "speakers": voices,
            "synthesiser": f"espeak-ng {espeak_version()}", "voices_per_sentence": voices_per_sentence,
            "test_every": test_every, "trim_top_db": top_db, "sentences": len(sentences),
            "seconds": round(sum(u["samples"] for u in utterances) / sample_rate, 2),
            "utterances": utterances}
    (out / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _flac_level() -> dict:
    """Smallest FLAC files where soundfile supports compression_level (>= 0.13); the default elsewhere."""
    import inspect

    import soundfile as sf

    return {"compression_level": 1.0} if "compression_level" in inspect.signature(sf.write).parameters else {}
