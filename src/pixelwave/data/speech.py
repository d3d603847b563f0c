"""Build a speaker-labelled speech corpus with a synthesiser: the source of the embedded `speech-sample`
(espeak-ng) and `flite-sample` (flite) data sets.

    build_speech_corpus(out_dir, voices=None, sentences_file=None, sample_rate=16000, engine="espeak-ng",
                        test_voices=())

speaks every sentence of `sentences_file` (one a line; blank lines and `#` comments skipped; a path, or the name
of a shipped list: `pixelwave` = the 104 sentences of data/assets/speech/sentences.txt, the default; `alice` =
423 short sentences of Alice's Adventures in Wonderland, data/assets/text/alice.txt) with the synthesiser
`engine` in each of its `voices`, resamples to `sample_rate` mono (soxr), trims leading and trailing silence
(pixelwave.audio.trim_silence) and writes 16-bit FLAC files VOICE/NNN.flac plus metadata.json (file, speaker,
sentence id and text, split, samples; espeak pitch and speed). Load the result with `wav:OUT_DIR`: the loader
reads speakers and the split from metadata.json.

Engines and their voices:
- `espeak-ng` (default): formant synthesis in English accents, DEFAULT_VOICES["espeak-ng"] = en-us, en-gb,
  en-gb-scotland, en-029. Pitch (espeak -p, 40..60) and speed (-s, 160..190 words/minute) vary per utterance,
  a fixed function of the voice and the sentence, so a build is reproducible.
- `flite`: CMU voices built from recordings of real speakers, which a speech recogniser can read (PocketSphinx
  cannot read espeak-ng's formant voices): slt (US female), rms (US male), awb (Scottish male), kal16 (US male,
  diphone); default slt, rms, awb. flite is deterministic, so a build is reproducible as it is.

Held-out split, by sentence, so no test text is ever heard in training: sentence i (0-based, in file order)
is a test sentence when i % test_every == test_every - 1, and every voice speaks every test sentence.
Training sentences are spoken by `voices_per_sentence` voices (None: all), taken round-robin, so each voice
gets its share. `test_voices` are unseen voices: they speak the test sentences only, so a model can be scored
on a voice it never heard. They come after `voices` in the speaker table, so the training voices keep ids
0 .. len(voices) - 1.

The embedded corpora are exactly (see their README.md):
    build_speech_corpus(out, voices_per_sentence=1, test_every=26)                           # speech-sample
    build_speech_corpus(out, engine="flite", test_voices=["kal16"], voices_per_sentence=1,   # flite-sample
                        test_every=13)
The synthesisers are needed only here; the package, its tests and the embedded corpora never run them.
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

__all__ = ["build_speech_corpus", "read_sentences", "espeak_version", "flite_version", "synthesiser_path",
           "synthesise", "voice_engine", "ENGINES", "DEFAULT_VOICES", "FLITE_VOICES", "FLITE_DEFAULT_VOICES",
           "SENTENCES", "SENTENCE_LISTS"]

ENGINES = ("espeak-ng", "flite")
DEFAULT_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029")  # espeak-ng's; flite's: FLITE_DEFAULT_VOICES
FLITE_VOICES = ("slt", "rms", "awb", "kal16")  # the CMU voices the Debian flite package builds in
FLITE_DEFAULT_VOICES = ("slt", "rms", "awb")
SENTENCES = Path(__file__).with_name("assets") / "speech" / "sentences.txt"
SENTENCE_LISTS = {"pixelwave": SENTENCES, "alice": Path(__file__).with_name("assets") / "text" / "alice.txt"}
INSTALL_HINT = {
    "espeak-ng": "espeak-ng is not installed: apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng "
                 "(macOS)",
    "flite": "flite is not installed: apt-get install flite (Debian/Ubuntu) or brew install flite (macOS)",
}


def synthesiser_path(engine: str = "espeak-ng") -> str:
    """The synthesiser's executable, or UserError saying how to install it."""
    if engine not in ENGINES:
        raise UserError(f"unknown speech engine {engine!r}; known: {', '.join(ENGINES)}")
    exe = shutil.which(engine)
    if exe is None:
        raise UserError(INSTALL_HINT[engine])
    return exe


def _espeak() -> str:
    return synthesiser_path("espeak-ng")


def espeak_version() -> str:
    """The version in `espeak-ng --version`: 'eSpeak NG text-to-speech: 1.51  Data at: ...' -> '1.51'."""
    out = subprocess.run([_espeak(), "--version"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    return words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words else out.strip()


def flite_version() -> str:
    """The version in `flite --version`: '  version: flite-2.2-current Sep 2018 (http://cmuflite.org)' ->
    '2.2-current Sep 2018'."""
    out = subprocess.run([synthesiser_path("flite"), "--version"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "version:" in line:
            return line.split("version:", 1)[1].split("(")[0].strip().removeprefix("flite-")
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _voices_available(engine: str) -> set[str]:
    if engine == "flite":
        # 'Voices available: kal awb_time kal16 awb rms slt '
        out = subprocess.run([synthesiser_path("flite"), "-lv"], capture_output=True, text=True).stdout
        return set(out.split(":", 1)[1].split()) if ":" in out else set()
    out = subprocess.run([_espeak(), "--voices"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            names.update((parts[1], parts[4]))  # the language code (en-gb) and the file (gmw/en-GB-scotland)
    return names


def read_sentences(path: str | os.PathLike | None = None) -> list[str]:
    """Sentences from a text file, one a line, or from a shipped list by name (SENTENCE_LISTS; None: the 104
    pixelwave sentences); blank lines and lines starting with '#' are skipped."""
    path = SENTENCE_LISTS.get(path, path) if isinstance(path, str) else path
    path = Path(path) if path is not None else SENTENCES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read sentences ({e}); a file, or one of the shipped lists "
                        f"{', '.join(SENTENCE_LISTS)}") from None
    sentences = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not sentences:
        raise UserError(f"{path}: no sentences (one a line; '#' lines are comments)")
    return sentences


def _prosody(voice: str, sentence_id: int) -> tuple[int, int]:
    """espeak pitch (40..60) and speed (160..190 wpm) per utterance: varied, a fixed function of its id."""
    h = int.from_bytes(hashlib.sha256(f"{voice}:{sentence_id}".encode()).digest()[:8], "little")
    return 40 + h % 21, 160 + (h // 21) % 31


def _plan(n_sentences: int, voices: list[str], test_voices: list[str], voices_per_sentence: int | None,
          test_every: int) -> list[tuple[int, str, str]]:
    """(sentence id, voice, split) of every utterance, in sentence order."""
    plan, n_train = [], 0
    for i in range(n_sentences):
        if i % test_every == test_every - 1:
            plan += [(i, v, "test") for v in voices + test_voices]
        else:
            k = len(voices) if voices_per_sentence is None else voices_per_sentence
            chosen = sorted({(n_train + j) % len(voices) for j in range(k)})  # round-robin, in voice order
            plan += [(i, voices[v], "train") for v in chosen]
            n_train += 1
    return plan


def check_voices(engine: str, voices) -> None:
    """UserError naming the voices that `engine` does not have (and how to list the ones it has)."""
    known = _voices_available(engine)
    missing = [v for v in voices if v not in known]
    if missing:
        listing = "flite -lv" if engine == "flite" else "espeak-ng --voices=en"
        raise UserError(f"{engine} has no voice {', '.join(missing)} (list them: {listing})")


def voice_engine(voice: str) -> str:
    """The synthesiser that has `voice`: flite for its CMU voices (FLITE_VOICES), else espeak-ng."""
    return "flite" if voice in FLITE_VOICES else "espeak-ng"


def synthesise(text: str, voice: str, engine: str | None = None, sample_rate: int = 16000,
               top_db: float | None = 40.0, pitch: int | None = None, speed: int | None = None):
    """`text` spoken by a classical synthesiser (flite or espeak-ng; default: the one that has `voice`): a mono
    float32 waveform (numpy) at `sample_rate`, leading and trailing silence below `top_db` trimmed (None: kept).
    espeak-ng takes a pitch (0..99) and speed (words/minute). The voice is not checked here (flite falls back
    to its default voice): `check_voices` does that."""
    engine = engine or voice_engine(voice)
    if engine not in ENGINES:
        raise UserError(f"unknown speech engine {engine!r}: one of {', '.join(ENGINES)}")
    exe = synthesiser_path(engine)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        if engine == "flite":
            # the text as an argument (flite takes a spaced string as text, not as a file name)
            cmd, text_in = [exe, "-voice", voice, "-t", text, "-o", str(wav)], None
        else:
            prosody = [*(["-p", str(pitch)] if pitch is not None else []), *(["-s", str(speed)] if speed else [])]
            cmd, text_in = [exe, "-v", voice, *prosody, "-w", str(wav), "--stdin"], text
        run = subprocess.run(cmd, input=text_in, capture_output=True, text=True)
        if run.returncode != 0 or not wav.is_file():
            raise UserError(f"{engine} failed to speak {text[:40]!r} with voice {voice}: {run.stderr.strip()[:200]}")
        wave, _ = read_audio(wav, sample_rate)  # mono, resampled with soxr
    return wave if top_db is None else trim_silence(wave, sample_rate, top_db=top_db)


def build_speech_corpus(out_dir: str | os.PathLike, voices=None,
                        sentences_file: str | os.PathLike | None = None, sample_rate: int = 16000,
                        voices_per_sentence: int | None = None, test_every: int = 10, top_db: float = 40.0,
                        progress=None, engine: str = "espeak-ng", test_voices=()) -> dict:
    """Synthesise the corpus into `out_dir` (created; must be empty if it exists). Returns the metadata dict.

    `progress`, if given, is called as progress(done, total) after every utterance (the CLI passes a tqdm).
    """
    synthesiser_path(engine)  # installed, or a UserError saying how to install it
    test_voices = list(test_voices or ())
    if voices is None:  # the engine's defaults, less any voice named a test voice (--test-voices awb)
        voices = [v for v in (FLITE_DEFAULT_VOICES if engine == "flite" else DEFAULT_VOICES) if v not in test_voices]
    voices = list(voices)
    every = voices + test_voices
    if not voices or len(set(every)) != len(every):
        raise UserError(f"voices must be a non-empty list of distinct {engine} voices, and test voices must not be "
                        f"among them; got voices {voices!r}, test voices {test_voices!r}")
    check_voices(engine, every)
    if voices_per_sentence is not None and not 1 <= voices_per_sentence <= len(voices):
        raise UserError(f"voices_per_sentence must be in 1..{len(voices)}, got {voices_per_sentence}")
    if test_every < 2:
        raise UserError(f"test_every must be at least 2, got {test_every}")
    sentences = read_sentences(sentences_file)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: folder exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(len(sentences), voices, test_voices, voices_per_sentence, test_every)

    import soundfile as sf

    utterances = []
    for n, (i, voice, split) in enumerate(plan):
        entry = {}
        if engine == "espeak-ng":
            pitch, speed = _prosody(voice, i)
            entry = {"pitch": pitch, "speed": speed}
        wave = synthesise(sentences[i], voice, engine, sample_rate, top_db=top_db, **entry)
        if len(wave) == 0:
            raise UserError(f"{engine} produced silence for sentence {i} ({voice})")
        rel = f"{voice}/{i:03d}.flac"
        (out / voice).mkdir(exist_ok=True)
        sf.write(str(out / rel), wave, sample_rate, format="FLAC", subtype="PCM_16", **_flac_level())
        utterances.append({"file": rel, "speaker": voice, "sentence_id": i, "text": sentences[i],
                           "split": split, **entry, "samples": int(len(wave))})
        if progress is not None:
            progress(n + 1, len(plan))
    version = f"flite {flite_version()}" if engine == "flite" else f"espeak-ng {espeak_version()}"
    meta = {"format": "pixelwave-speech-corpus", "sample_rate": sample_rate, "speakers": every,
            "synthesiser": version, "engine": engine, "test_voices": test_voices,
            "voices_per_sentence": voices_per_sentence, "test_every": test_every, "trim_top_db": top_db,
            "sentences": len(sentences), "seconds": round(sum(u["samples"] for u in utterances) / sample_rate, 2),
            "utterances": utterances}
    (out / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _flac_level() -> dict:
    """Smallest FLAC files where soundfile supports compression_level (>= 0.13); the default elsewhere."""
    import inspect

    import soundfile as sf

    return {"compression_level": 1.0} if "compression_level" in inspect.signature(sf.write).parameters else {}
