"""Speech a listener understands: intelligibility and spectral scores of re-spoken (vocoded) speech.

    stoi(reference, degraded, rate)                     short-time objective intelligibility, ~0..1 (pystoi)
    mel_cepstral_distortion(reference, degraded, rate)  MCD in dB, frame by frame (by hand, below)
    recognize(wave, rate) -> str                        PocketSphinx's bundled en-US model, offline
    word_error_rate(reference_text, hypothesis_text)    jiwer, after normalise_text on both
    score_resynthesis(model, dataset, ...)              a mel WaveNet re-speaks held-out utterances; per-voice scores

STOI, recognition and WER need the optional extra: `pip install pixelwave[speech-eval]` (pocketsphinx, pystoi,
jiwer). Without it they raise `MissingExtra` (a UserError) with that one-line hint; MCD needs nothing extra.
Nothing is fetched at run time: PocketSphinx ships its acoustic model, language model and dictionary.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from pixelwave.audio import log_mel, resample, write_wav
from pixelwave.errors import UserError

__all__ = ["stoi", "mel_cepstral_distortion", "mel_cepstrum", "recognize", "word_error_rate", "normalise_text",
           "score_resynthesis", "require_extra", "MissingExtra", "MCD_COEFFICIENTS", "RECOGNIZER_RATE",
           "DRAW_SEED_STEP"]

# score_resynthesis's draw d of utterance i is seeded seed + DRAW_SEED_STEP * d + i: draws=4 at seed 0 are the
# draws of seeds 0, 1000, 2000 and 3000 one at a time (how docs/results.md's four-draw tables were made).
DRAW_SEED_STEP = 1000

EXTRA_HINT = "pip install 'pixelwave[speech-eval]'"
MCD_COEFFICIENTS = 24  # c1..c24: the spectral envelope; c0 (loudness) is left out
RECOGNIZER_RATE = 16000  # PocketSphinx's en-US model is trained on 16 kHz speech
_MCD_SCALE = 10.0 * math.sqrt(2.0) / math.log(10.0)  # dB per unit of natural-log cepstral distance, ~6.1418


class MissingExtra(UserError):
    """A scoring library of the speech-eval extra is not installed."""


def require_extra(*modules: str) -> None:
    """Import each module of the speech-eval extra, or raise MissingExtra with the install hint (one line)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingExtra(f"speech scores need {name}, which is not installed: {EXTRA_HINT}") from None


def _mono(wave, name: str) -> np.ndarray:
    w = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if w.ndim != 1 or not np.issubdtype(w.dtype, np.floating) or len(w) == 0:
        raise ValueError(f"{name} must be a non-empty mono float waveform (T,), got {w.dtype} {w.shape}")
    return w.astype(np.float64)


# ---------------------------------------------------------------------------------------------------- STOI
def stoi(reference, degraded, rate: int) -> float:
    """Short-time objective intelligibility (Taal et al. 2011) of `degraded` against `reference`, both (T,) at
    `rate`, compared over their common length: about 1 for the same speech, near 0 for unrelated sound. pystoi
    resamples to its 10 kHz internally and drops silent frames of the reference. ValueError if too short."""
    require_extra("pystoi")
    from pystoi import stoi as _stoi

    ref, deg = _mono(reference, "reference"), _mono(degraded, "degraded")
    n = min(len(ref), len(deg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = float(_stoi(ref[:n], deg[:n], rate, extended=False))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        # pystoi then returns 1e-5, which reads as a score; it needs 30 segments of speech (~0.4 s after silence)
        raise ValueError(f"too little speech for STOI ({n / rate:.2f} s; it needs about 0.5 s that is not silence)")
    return score


# ---------------------------------------------------------------------------------------------------- MCD
def mel_cepstrum(log_mel_frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Mel-cepstra of log-mel frames (N = n_mels, F) (natural log of magnitudes, as pixelwave.audio.log_mel gives
    them): (N, F), row d the coefficient c_d of every frame,

        c_d = (1 / N) sum_{m=0..N-1} x_m cos(pi d (m + 1/2) / N)

    the cepstrum of the log spectrum sampled at the N band centres on a mel (warped) frequency axis, which is
    what SPTK-style mel-cepstra approximate: log|H(w)| = c_0 + 2 sum_{d>=1} c_d cos(d w). The 1/N makes c_d a
    property of the envelope, not of how many bands sample it."""
    x = np.asarray(log_mel_frames, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"mel_cepstrum takes log-mel frames (n_mels, F), got shape {x.shape}")
    n = x.shape[0]
    basis = np.cos(np.pi * np.arange(n)[:, None] * (np.arange(n)[None] + 0.5) / n) / n  # (d, m): DCT-II, 1/N
    return basis @ x  # (N, N) @ (N, F)


def mel_cepstral_distortion(reference, degraded, rate: int, coefficients: int | None = None,
                            n_mels: int = 80, hop_length: int | None = None, n_fft: int | None = None) -> float:
    """Mel-cepstral distortion in dB of `degraded` against `reference` (both (T,) at `rate`): 0 for the same audio.

    Definition. Both waves get pixelwave.audio.log_mel (`n_mels` bands, Hann windows of n_fft = 50 ms every
    hop_length = 12.5 ms by default, natural log of magnitudes, floored at 1e-5); `mel_cepstrum` turns each frame
    into c_0 .. c_{n_mels-1}; with c_d(t) and c'_d(t) those of reference and degraded frame t,

        MCD = (1 / T) sum_t (10 sqrt(2) / ln 10) sqrt( sum_{d=1..D} (c_d(t) - c'_d(t))^2 )      D = `coefficients`

    (D = 24, or n_mels - 1 with fewer bands) over the T frames the two have in common (frame t of one against
    frame t of the other: no time warping, as a vocoder re-speaking from mel frames keeps the timing; silent
    frames count too). c_0, the frame's loudness, is left out, so a change of gain alone scores ~0 (not exactly:
    the 1e-5 floor clips quiet frames). The factor
    10 sqrt(2) / ln 10 (Kubichek 1993) turns the distance of natural-log cepstra into dB. Values from other
    tools (SPTK mel-cepstra of a WORLD envelope, DTW, silence removal) differ: compare MCDs of this function only.
    """
    ref, deg = _mono(reference, "reference"), _mono(degraded, "degraded")
    hop = hop_length or round(rate * 0.0125)
    fft = n_fft or 4 * hop
    coefficients = min(MCD_COEFFICIENTS, n_mels - 1) if coefficients is None else coefficients
    if not 1 <= coefficients < n_mels:
        raise ValueError(f"coefficients must be in 1..{n_mels - 1} (n_mels - 1), got {coefficients}")
    n = min(len(ref), len(deg))
    mels = [log_mel(torch.from_numpy(w[:n]).float(), rate, n_mels, hop, fft).double().numpy() for w in (ref, deg)]
    c_ref, c_deg = (mel_cepstrum(m)[1: coefficients + 1] for m in mels)  # (D, F) each, c_0 dropped
    per_frame = _MCD_SCALE * np.sqrt(np.sum((c_ref - c_deg) ** 2, axis=0))  # (F,)
    return float(per_frame.mean())


# ---------------------------------------------------------------------------------------------------- WER
def _decoder():
    """A new decoder for each utterance (~0.4 s to load): PocketSphinx carries its noise and level estimates from
    one utterance to the next, so a reused decoder hears the same recording differently depending on the clips
    it decoded before (tests/test_speech_eval.py)."""
    require_extra("pocketsphinx")
    from pocketsphinx import Decoder

    # the bundled en-US acoustic model, 3-gram language model and CMU dictionary; no log chatter on stderr
    return Decoder(samprate=RECOGNIZER_RATE, loglevel="FATAL")


def recognize(wave, rate: int) -> str:
    """The words PocketSphinx (bundled en-US model, offline) hears in a mono waveform (T,) in [-1, 1] at `rate`
    (resampled to 16 kHz), by a decoder in its initial state: lower-case words separated by spaces, '' for none.
    About 0.4 s plus 0.1 s per second of speech."""
    w = _mono(wave, "wave")
    decoder = _decoder()
    pcm = np.clip(resample(w.astype(np.float32), rate, RECOGNIZER_RATE), -1.0, 1.0)
    pcm = (pcm * 32767.0).round().astype("<i2")  # the 16-bit little-endian PCM it decodes
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    words = hyp.hypstr if hyp is not None else ""
    return " ".join(w for w in words.split() if not w.startswith(("<", "[", "++")))  # no fillers or noise


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    """A cardinal number as words, as synthesisers read plain digits: 42 -> 'forty two' (up to 999,999,999)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{_number_words(n // size)} {name}" + ("" if rest == 0 else " " + _number_words(rest))
    raise AssertionError(n)


def normalise_text(text: str) -> str:
    """What WER compares: lower case, numbers as words (up to 999,999,999; commas in numbers dropped), hyphens as
    spaces, other punctuation removed except apostrophes inside words (don't, Alice's), whitespace collapsed."""
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    t = re.sub(r"\d+", lambda m: _number_words(int(m.group())) if len(m.group()) <= 9 else m.group(), t)
    t = re.sub(r"[-\u2010-\u2015/]", " ", t)
    t = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", t.replace("\u2019", "'"))  # quote marks, not apostrophes
    t = re.sub(r"[^a-z0-9' ]+", " ", t)
    return " ".join(t.split())


def word_error_rate(reference_text: str, hypothesis_text: str) -> float:
    """Word error rate (substitutions + deletions + insertions) / reference words, after normalise_text on both
    (jiwer); can exceed 1 with many insertions. An empty reference is an error."""
    require_extra("jiwer")
    import jiwer

    ref, hyp = normalise_text(reference_text), normalise_text(hypothesis_text)
    if not ref:
        raise ValueError(f"the reference text has no words: {reference_text!r}")
    if not hyp:
        return 1.0  # every reference word deleted; jiwer refuses an empty hypothesis
    return float(jiwer.wer(ref, hyp))


# ---------------------------------------------------------------------------------------------------- scoring
def _stoi_or_nan(reference, degraded, rate: int) -> float:
    try:
        return stoi(reference, degraded, rate)
    except ValueError:
        return float("nan")  # an utterance too short for STOI; its voice's mean is then nan, not a made-up figure


def _per_voice_utterances(dataset, per_voice: int) -> dict[str, list[int]]:
    """The first `per_voice` utterances of each speaker (dataset order: sentence order for built corpora) that
    have text; {'all': [...]} for a data set without speakers."""
    with_text = [i for i in range(dataset.num_utterances) if dataset.texts and dataset.texts[i]]
    if not with_text:
        raise UserError(f"{dataset.name} [{dataset.split}] has no transcripts: speech scores need the text of each "
                        f"utterance (a corpus made by `pixelwave data speech`, flite-sample, or vctk:DIR)")
    if dataset.speaker is None:
        return {"all": with_text[:per_voice]}
    voices: dict[str, list[int]] = {}
    for i in with_text:
        name = dataset.speakers[int(dataset.speaker[i])]
        if len(voices.setdefault(name, [])) < per_voice:
            voices[name].append(i)
    return voices


@torch.no_grad()
def score_resynthesis(model, dataset, utterances_per_voice: int = 4, seed: int = 0, out_dir=None,
                      device: str | torch.device = "cpu", recognise: bool = True, progress=None,
                      temperature: float = 1.0, voiced_temperature: float | None = None,
                      probability_floor: float = 0.0, draw_shaping: int = 0, draws: int = 1) -> dict:
    """Re-speak held-out utterances with a mel-conditioned WaveNet and score them against the recordings.

    For each voice (speaker) of `dataset` (loaded with mel features, as the model was trained), its first
    `utterances_per_voice` utterances with text are re-spoken whole from their log-mel frames
    (`model.generate(steps, cond=..., speaker=...)`, utterance i of the data set drawn with a generator seeded
    `seed + i`, so its figures do not depend on how many are scored). draws > 1: each utterance is re-spoken
    `draws` times, draw d seeded `seed + DRAW_SEED_STEP * d + i` (so draw d is what `seed + 1000 d` alone
    gives), and the re-spoken scores are means over the draws too, each draw's own under "draws": a voice's WER
    moves by up to ~0.1 from one draw to the next over 8 sentences. Per voice the mean over its utterances of:
    `stoi` (nan for an utterance too short for it), `mcd_db` (mel_cepstral_distortion), `wer_recording`
    (PocketSphinx on the recording) and `wer_resynthesis` (PocketSphinx on the re-spoken audio); with
    recognise=False no WER. The recording is the
    utterance as the data set holds it before mu-law coding (the same file, resampled and trimmed alike), cut to
    whole mel frames. out_dir: also write VOICE-N.wav (re-spoken; the first draw's, VOICE-N-drawD.wav the
    others'), VOICE-N-recording.wav and VOICE-N.txt (the text, one line) there.

    Returns {"voices": {voice: {"utterances", "seconds", "stoi", "mcd_db", "wer_recording", "wer_resynthesis",
    "texts", "heard_recording", "heard_resynthesis" (the first draw's)}}, "mean": {the four scores averaged over
    voices}, "utterances_per_voice", "seed", "temperature"} (and "voiced_temperature", "probability_floor",
    "draw_shaping" when given: `WaveNet.generate`'s); with draws > 1 also "draws" and "seeds" at the top, and per
    voice "draws": [{"seed", "stoi", "mcd_db", "wer_resynthesis", "heard_resynthesis"} for each draw].
    `progress(done, total)` is called after each re-spoken draw (total: utterances x draws).
    """
    if model.cond_channels is None:
        raise UserError("speech scores re-speak recordings from their mel frames: the model has no mel conditioning "
                        "(train with --mel)")
    if (dataset.mel is None or (dataset.cond_channels, dataset.pitch, dataset.hop_length)
            != (model.cond_channels, model.config.pitch, model.hop_length)):
        raise UserError(f"{dataset.name} is not loaded with the model's mel features ({model.config.mel_bands} bands"
                        f"{' + pitch' * model.config.pitch}, hop {model.hop_length})")
    if isinstance(utterances_per_voice, bool) or not isinstance(utterances_per_voice, int) or utterances_per_voice < 1:
        raise UserError(f"utterances per voice must be a positive integer, got {utterances_per_voice!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise UserError(f"draws must be a positive integer, got {draws!r}")
    require_extra("pystoi", *(("pocketsphinx", "jiwer") if recognise else ()))
    device = torch.device(device)
    rate = dataset.sample_rate
    picks = _per_voice_utterances(dataset, utterances_per_voice)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    total, done = sum(map(len, picks.values())) * draws, 0
    seeds = [seed + DRAW_SEED_STEP * d for d in range(draws)]
    respoken_keys = ("stoi", "mcd_db", "wer_resynthesis", "heard_resynthesis")
    voices = {}
    for voice, idx in picks.items():
        rows = []
        for n, i in enumerate(idx):
            utt = dataset.utterance(i)
            steps = utt["cond"].shape[-1] * model.hop_length
            recording = dataset.recording(i)[:steps]  # (steps,) float, before mu-law
            speaker = utt["speaker"].to(device) if model.num_speakers and utt["speaker"] is not None else None
            if speaker is not None and int(speaker) >= model.num_speakers:
                raise UserError(f"voice {voice} has speaker id {int(speaker)}, but the model knows "
                                f"{model.num_speakers} speakers: score it with a data set it was trained on")
            row = {"text": dataset.texts[i], "seconds": steps / rate, "draws": []}
            if recognise:
                row["heard_recording"] = recognize(recording, rate)
                row["wer_recording"] = word_error_rate(row["text"], row["heard_recording"])
            for d, s in enumerate(seeds):
                codes = model.generate(steps, cond=utt["cond"].to(device), speaker=speaker,
                                       generator=torch.Generator().manual_seed(s + i),
                                       temperature=temperature, voiced_temperature=voiced_temperature,
                                       probability_floor=probability_floor, draw_shaping=draw_shaping)  # (1, steps)
                respoken = model.waveform(codes[0]).numpy()  # (steps,)
                scores = {"stoi": _stoi_or_nan(recording, respoken, rate),
                          "mcd_db": mel_cepstral_distortion(recording, respoken, rate, n_mels=model.cond_channels,
                                                            hop_length=dataset.hop_length,
                                                            n_fft=dataset.mel_options["n_fft"])}
                if recognise:
                    scores["heard_resynthesis"] = recognize(respoken, rate)
                    scores["wer_resynthesis"] = word_error_rate(row["text"], scores["heard_resynthesis"])
                row["draws"].append(scores)
                if out is not None:
                    write_wav(out / f"{voice}-{n + 1}{f'-draw{d + 1}' if d else ''}.wav", respoken, rate)
                done += 1
                if progress is not None:
                    progress(done, total)
            if out is not None:
                write_wav(out / f"{voice}-{n + 1}-recording.wav", recording, rate)
                (out / f"{voice}-{n + 1}.txt").write_text(row["text"] + "\n", encoding="utf-8")
            rows.append(row)
        per_draw = [{"seed": s, **{key: ([r["draws"][d][key] for r in rows] if key.startswith("heard")
                                         else float(np.mean([r["draws"][d][key] for r in rows])))
                                   for key in respoken_keys if key in rows[0]["draws"][0]}}
                    for d, s in enumerate(seeds)]
        summary = {"utterances": len(rows), "seconds": round(sum(r["seconds"] for r in rows), 2)}
        for key in ("stoi", "mcd_db", "wer_recording", "wer_resynthesis"):
            # the recordings' own per utterance; the re-spoken ones the mean of the draws' means (same utterances)
            source = rows if key == "wer_recording" else per_draw
            summary[key] = float(np.mean([x[key] for x in source])) if key in source[0] else None
        summary["texts"] = [r["text"] for r in rows]
        summary["heard_recording"] = [r.get("heard_recording") for r in rows]
        summary["heard_resynthesis"] = per_draw[0].get("heard_resynthesis", [None] * len(rows))
        if draws > 1:
            summary["draws"] = per_draw
        voices[voice] = summary
    mean = {key: (float(np.mean([v[key] for v in voices.values()])) if recognise or not key.startswith("wer")
                  else None) for key in ("stoi", "mcd_db", "wer_recording", "wer_resynthesis")}
    return {"voices": voices, "mean": mean, "utterances_per_voice": utterances_per_voice, "seed": seed,
            **({"draws": draws, "seeds": seeds} if draws > 1 else {}), "temperature": temperature,
            **({"voiced_temperature": voiced_temperature} if voiced_temperature is not None else {}),
            **({"probability_floor": probability_floor} if probability_floor else {}),
            **({"draw_shaping": draw_shaping} if draw_shaping else {})}
