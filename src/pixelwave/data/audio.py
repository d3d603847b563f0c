"""Audio data sets by name, all read from local files (nothing is fetched at run time).

    speech-sample  the embedded accent corpus: espeak-ng, 4 English accents, 16 kHz
                   (see data/assets/speech/README.md)
    flite-sample   the embedded flite corpus: CMU voices slt, rms, awb (train and test) and kal16 (test only,
                   an unseen voice), 16 kHz; speech a recogniser reads (see data/assets/flite/README.md)
    wav:DIR        WAV / FLAC / OGG files under DIR; one subfolder per speaker if there are subfolders.
                   A DIR made by `pixelwave data speech` (it holds metadata.json) takes speakers and split
                   from that file.
    vctk:DIR       the VCTK corpus layout: wav48*/pXXX/*.wav|.flac (v0.92: *_mic1 only), txt/pXXX/*.txt and,
                   if present, speaker-info.txt (accent, gender, ... kept in info()["speaker_info"])

Every file is read with soundfile, mixed down to mono, resampled to `sample_rate` with soxr, cut of leading
and trailing silence (`pixelwave.audio.trim_silence`: 10 ms frames quieter than `trim_db` dB below the
loudest frame, keeping 50 ms; trim_db=None keeps everything) and mu-law encoded, after `pre_emphasis` when one
is asked for (the codes are then the emphasised signal's; mel frames are always the recording's own). Bad files
raise UserError naming the file.

Held-out split (wav:DIR and vctk:DIR without metadata.json): within each speaker the files are ordered by the
SHA-1 of their path relative to DIR and the first ceil(test_fraction * n) are the test split (none for a
speaker with a single file): deterministic, and it depends on file names only.

Examples are fixed-length crops of `crop` samples, so every example has `dims = crop` values:
- the training split (random_crops=True) has one example per whole crop-length of audio in each utterance;
  `batch` draws, for example i, a uniformly random crop of i's utterance from the generator it is given;
- the test split (random_crops=False) is every utterance cut into consecutive non-overlapping crops from its
  start: the same examples every time, and the whole held-out audio except each utterance's last partial crop.
Utterances shorter than one crop give no examples. `utterance(i)` returns a whole utterance for other scoring.
With mel features (with_mel=True) crops start on a frame boundary (a multiple of hop_length) and carry their
crop // hop_length frames; frame f of an utterance is centred on its sample f * hop_length. With `context` = c
they also carry the c frames of the utterance before and after their own (zeros past the utterance's ends, as
the conditioning's zero padding of a whole utterance), and the batch says so ("context": c): a crop is then
conditioned as its samples are in the whole utterance (`WaveNet.cond_context`), not on padding at its ends.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pixelwave.audio import (
    PITCH_ROWS,
    de_emphasis,
    features,
    mu_law_decode,
    mu_law_encode,
    pitch_min_fft,
    read_audio,
    trim_silence,
)
from pixelwave.audio import pre_emphasis as emphasised
from pixelwave.errors import UserError

__all__ = ["AudioDataset", "load_audio", "NAMES", "SPEECH_SAMPLE", "FLITE_SAMPLE"]

NAMES = ("speech-sample", "flite-sample", "wav:DIR", "vctk:DIR")
SPLITS = ("train", "test")
SPEECH_SAMPLE = Path(__file__).with_name("assets") / "speech"
FLITE_SAMPLE = Path(__file__).with_name("assets") / "flite"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
CORPUS_FORMAT = "pixelwave-speech-corpus"


@dataclass
class AudioDataset:
    """Utterances as mu-law codes, cut into crop-length examples. Same protocol as data.base.ImageDataset.

    codes: (N,) all utterances back to back (uint8 for <= 256 levels); offsets/lengths: (U,) per utterance;
    speaker: (U,) int64 or None; mel: (F, n_mels) all frames back to back, frame_offsets (U,), or None.
    """

    name: str
    split: str
    sample_rate: int
    levels: int
    crop: int
    codes: torch.Tensor
    offsets: torch.Tensor
    lengths: torch.Tensor
    speaker: torch.Tensor | None = None
    speakers: list[str] | None = None
    mel: torch.Tensor | None = None
    frame_offsets: torch.Tensor | None = None
    mel_options: dict | None = None
    random_crops: bool = True
    sources: list[str] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    speaker_info: dict | None = None
    trim_db: float | None = 40.0
    pre_emphasis: float = 0.0  # the codes are mu-law codes of x_t - pre_emphasis * x_(t-1)
    context: int = 0  # mel frames of the utterance on each side of a crop's own (zeros past its ends)
    kind: str = field(default="audio", init=False)

    def __post_init__(self):
        hop = self.hop_length or 1
        if self.crop < 1 or self.crop % hop:
            raise UserError(f"crop must be a positive multiple of hop_length ({hop}), got {self.crop}")
        per_utt = torch.div(self.lengths, self.crop, rounding_mode="floor")  # whole crops in each utterance
        self._window_utt = torch.repeat_interleave(torch.arange(len(self.lengths)), per_utt)  # (N_examples,)
        first = torch.cumsum(per_utt, 0) - per_utt  # index of each utterance's first example
        self._window_start = (torch.arange(len(self._window_utt)) - first[self._window_utt]) * self.crop

    # ------------------------------------------------------------------ the protocol
    @property
    def hop_length(self) -> int | None:
        return self.mel_options["hop_length"] if self.mel_options else None

    @property
    def n_mels(self) -> int | None:
        return self.mel_options["n_mels"] if self.mel_options else None

    @property
    def pitch(self) -> bool:
        """Whether every frame also carries the pitch rows (`pixelwave.audio.pitch`) under its mel bands."""
        return bool(self.mel_options and self.mel_options.get("pitch"))

    @property
    def cond_channels(self) -> int | None:
        """Rows of a conditioning frame: the mel bands, and the pitch rows with `pitch`."""
        return None if self.mel_options is None else self.n_mels + PITCH_ROWS * self.pitch

    @property
    def dims(self) -> int:
        return self.crop

    def __len__(self) -> int:
        return len(self._window_utt)

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Examples `idx` as model inputs: {"a": LongTensor (B, crop), "speaker": LongTensor (B,) | None,
        "cond": FloatTensor (B, cond_channels, crop // hop_length + 2 context) | None}, and "context": context
        when that is not 0. Random crops come from `generator`."""
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        utt = self._window_utt[idx]  # (B,)
        if self.random_crops:
            step = self.hop_length or 1  # crops start on a frame boundary when there are frames
            room = torch.div(self.lengths[utt] - self.crop, step, rounding_mode="floor") + 1  # valid starts
            r = torch.rand(len(idx), generator=generator, dtype=torch.float64)
            start = torch.minimum((r * room).long(), room - 1) * step  # (B,)
        else:
            start = self._window_start[idx]
        pos = (self.offsets[utt] + start)[:, None] + torch.arange(self.crop)  # (B, crop)
        out = {"a": self.codes[pos].long(), "speaker": None, "cond": None}
        if self.speaker is not None:
            out["speaker"] = self.speaker[utt]
        if self.mel is not None:
            c = self.context
            local = (start // self.hop_length)[:, None] + torch.arange(-c, self.crop // self.hop_length + c)
            inside = (local >= 0) & (local < (self.lengths[utt] // self.hop_length)[:, None])  # (B, F + 2c)
            fpos = self.frame_offsets[utt][:, None] + local.clamp(min=0)  # (B, F + 2c)
            mel = self.mel[fpos.clamp(max=len(self.mel) - 1)] * inside[..., None]  # (B, F + 2c, C)
            out["cond"] = mel.transpose(1, 2).contiguous()  # (B, C, F + 2c)
            if c:
                out["context"] = c
        return out

    def info(self) -> dict:
        """JSON-serialisable description saved with a run: what generate / resynthesize need to match."""
        return {"kind": self.kind, "name": self.name, "sample_rate": self.sample_rate, "levels": self.levels,
                "crop": self.crop, "speakers": self.speakers,
                "num_speakers": None if self.speakers is None else len(self.speakers),
                "n_mels": self.n_mels, "hop_length": self.hop_length, "mel": self.mel_options,
                "trim_db": self.trim_db, "speaker_info": self.speaker_info,
                # absent when off: data.json of earlier runs stays as it was
                **({"pre_emphasis": self.pre_emphasis} if self.pre_emphasis else {}),
                **({"cond_context": self.context} if self.context else {})}

    def waveform(self, codes: torch.Tensor):
        """Codes of this data set as a float waveform, numpy float32: decoded, and de-emphasised if emphasised."""
        wave = mu_law_decode(codes.long(), self.levels)
        return (de_emphasis(wave, self.pre_emphasis).float() if self.pre_emphasis else wave).numpy()

    # ------------------------------------------------------------------ whole utterances
    @property
    def num_utterances(self) -> int:
        return len(self.lengths)

    @property
    def seconds(self) -> float:
        return float(self.lengths.sum()) / self.sample_rate

    def utterance(self, i: int) -> dict:
        """Utterance i whole, as a batch of one: {"a": (1, T), "speaker": (1,) | None, "cond": (1, cond_channels,
        F) | None}; with mel features T is cut to F * hop_length, whole frames."""
        n = int(self.lengths[i])
        frames = None
        if self.mel is not None:
            frames = n // self.hop_length
            n = frames * self.hop_length
        start = int(self.offsets[i])
        out = {"a": self.codes[start: start + n].long()[None], "speaker": None, "cond": None}
        if self.speaker is not None:
            out["speaker"] = self.speaker[i: i + 1]
        if self.mel is not None:
            f0 = int(self.frame_offsets[i])
            out["cond"] = self.mel[f0: f0 + frames].t()[None].contiguous()  # (1, cond_channels, F)
        return out

    def recording(self, i: int):
        """Utterance i as a float waveform before mu-law coding: numpy float32 (lengths[i],), its file read again
        (resampled and trimmed as at loading). What speech scores compare a re-spoken utterance against. A data
        set made in memory (no source files) has nothing finer than its codes: they are decoded."""
        if i >= len(self.sources):
            start, n = int(self.offsets[i]), int(self.lengths[i])
            return self.waveform(self.codes[start: start + n])
        wave = _read_utterance(self.sources[i], self.sample_rate, self.trim_db)
        if len(wave) != int(self.lengths[i]):
            raise UserError(f"{self.sources[i]}: changed since the data set was loaded ({len(wave)} samples, "
                            f"was {int(self.lengths[i])})")
        return wave


# ---------------------------------------------------------------------------------------------------- loading
def load_audio(name: str, split: str = "train", sample_rate: int = 16000, crop: int = 8000, levels: int = 256,
               with_mel: bool = False, n_mels: int = 80, hop_length: int = 200, n_fft: int = 800,
               pitch: bool = False, trim_db: float | None = 40.0, pre_emphasis: float = 0.0,
               test_fraction: float = 0.1, random_crops: bool | None = None, speakers: list[str] | None = None,
               context: int = 0) -> AudioDataset:
    """Load the audio data set `name` (see the module docstring) as an AudioDataset.

    pitch: with_mel, each frame also carries log f0 and the voicing (`pixelwave.audio.pitch`) under its mel
    bands. pre_emphasis: alpha in [0, 1); the codes are those of `pixelwave.audio.pre_emphasis(wave, alpha)`
    (samples it pushes past +-1 clip, as loud audio does). random_crops: None = random crops for 'train', fixed
    consecutive crops for 'test'. speakers: keep only these speakers (the speaker table, and so the ids, stay
    those of the whole data set). context: with_mel, frames of the utterance on each side of a crop's own.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"audio data set name must be a non-empty string, got {name!r}; "
                        f"known: {', '.join(NAMES)}")
    if split not in SPLITS:
        raise UserError(f"split must be 'train' or 'test', got {split!r}")
    for flag, v in (("sample_rate", sample_rate), ("crop", crop), ("n_mels", n_mels),
                    ("hop_length", hop_length), ("n_fft", n_fft)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"{flag} must be a positive integer, got {v!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or not 2 <= levels <= 65536:
        raise UserError(f"levels must be an integer from 2 to 65536, got {levels!r}")
    if pitch and not with_mel:
        raise UserError("pitch rows ride on the mel frames: pitch needs with_mel (--pitch needs --mel)")
    if isinstance(context, bool) or not isinstance(context, int) or context < 0 or (context and not with_mel):
        raise UserError(f"context must be an integer >= 0 (mel frames on each side of a crop; needs with_mel), "
                        f"got {context!r}")
    if with_mel and crop % hop_length:
        raise UserError(f"crop ({crop}) must be a multiple of hop_length ({hop_length}) with mel features")
    if isinstance(pre_emphasis, bool) or not isinstance(pre_emphasis, int | float) or not 0 <= pre_emphasis < 1:
        raise UserError(f"pre_emphasis must be a number in [0, 1), got {pre_emphasis!r}")
    if not 0 <= test_fraction < 1:
        raise UserError(f"test_fraction must be in [0, 1), got {test_fraction}")

    if name in ("speech-sample", "flite-sample"):
        files, table, info = _corpus_files(SPEECH_SAMPLE if name == "speech-sample" else FLITE_SAMPLE, split)
    elif name.startswith(("wav:", "vctk:")):
        kind, _, folder = name.partition(":")
        if not folder:
            raise UserError(f"{name!r} names no folder; write {kind}:DIR")
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise UserError(f"{name}: folder {root} does not exist")
        if kind == "wav" and (root / "metadata.json").is_file():
            files, table, info = _corpus_files(root, split)
        elif kind == "wav":
            files, table, info = _wav_files(root, split, test_fraction)
        else:
            files, table, info = _vctk_files(root, split, test_fraction)
    else:
        raise UserError(f"unknown audio data set {name!r}; known: {', '.join(NAMES)}")

    if speakers is not None:
        if table is None:
            raise UserError(f"{name} has no speakers to select from")
        unknown = [s for s in speakers if s not in table]
        if unknown:
            raise UserError(f"{name} has no speaker {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(table)})")
        files = [f for f in files if f[1] in speakers]
    if not files:
        raise UserError(f"{name}: no audio files in the {split} split")

    mel_options = (dict(n_mels=n_mels, hop_length=hop_length, n_fft=n_fft, f_min=0.0, f_max=sample_rate / 2)
                   if with_mel else None)
    if pitch:
        if n_fft < (need := pitch_min_fft(sample_rate)):
            raise UserError(f"--n-fft {n_fft} is too short for the pitch frames (--pitch): they need >= {need} "
                            f"samples at {sample_rate} Hz (f0 down to 60 Hz)")
        mel_options["pitch"] = True  # absent (not False) without: data.json of earlier runs stays as it was
    chunks, mels, lengths, frame_counts, spk, sources, texts = [], [], [], [], [], [], []
    for path, speaker, text in files:
        wave = _read_utterance(path, sample_rate, trim_db)
        chunks.append(torch.from_numpy(wave))
        if with_mel:
            frames = len(wave) // hop_length  # whole frames only: what an utterance's crops can use
            mel = features(torch.from_numpy(wave), sample_rate, n_mels, hop_length, n_fft,
                           pitch_rows=pitch)  # (cond_channels, F')
            mels.append(mel[:, :frames].t())  # (F, cond_channels)
            frame_counts.append(frames)
        lengths.append(len(wave))
        spk.append(None if table is None else table.index(speaker))
        sources.append(str(path))
        texts.append(text)
    dtype = torch.uint8 if levels <= 256 else torch.int32
    lengths_t = torch.tensor(lengths, dtype=torch.long)
    frames_t = torch.tensor(frame_counts, dtype=torch.long)
    ds = AudioDataset(
        name=name, split=split, sample_rate=sample_rate, levels=levels, crop=crop,
        # one pass over all the audio; emphasis per utterance, so that none leaks into the next
        codes=mu_law_encode(torch.cat([emphasised(c, pre_emphasis) for c in chunks] if pre_emphasis else chunks),
                            levels).to(dtype),
        offsets=torch.cumsum(lengths_t, 0) - lengths_t, lengths=lengths_t,
        speaker=None if table is None else torch.tensor(spk, dtype=torch.long), speakers=table,
        mel=torch.cat(mels).float() if with_mel else None,
        frame_offsets=torch.cumsum(frames_t, 0) - frames_t if with_mel else None, mel_options=mel_options,
        random_crops=(split == "train") if random_crops is None else bool(random_crops),
        sources=sources, texts=texts, speaker_info=info, trim_db=trim_db, pre_emphasis=float(pre_emphasis),
        context=context)
    if len(ds) == 0:
        raise UserError(f"{name}: no {split} utterance is as long as one crop ({crop} samples, "
                        f"{crop / sample_rate:.2f} s; the longest is {max(lengths) / sample_rate:.2f} s): "
                        f"use a shorter crop")
    return ds


def _read_utterance(path, sample_rate: int, trim_db: float | None):
    """One file as the data set holds it before mu-law coding: mono float32 (T,) at `sample_rate`, trimmed."""
    wave, _ = read_audio(path, sample_rate)
    if trim_db is not None:
        wave = trim_silence(wave, sample_rate, top_db=trim_db)
    if len(wave) == 0:
        raise UserError(f"{path}: silent (nothing above the trim threshold of {trim_db} dB)")
    return wave


# Each finder returns ([(path, speaker | None, text | None)] of the split, speaker table | None, info | None).
def _corpus_files(root: Path, split: str):
    """A folder written by data.speech.build_speech_corpus: metadata.json names speakers, texts, split."""
    meta_path = root / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
        table = list(meta["speakers"])
        rows = [(root / u["file"], u["speaker"], u.get("text"), u["split"]) for u in meta["utterances"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{meta_path}: not a pixelwave speech corpus metadata file ({e})") from None
    if meta.get("format") != CORPUS_FORMAT:
        raise UserError(f"{meta_path}: not a pixelwave speech corpus metadata file "
                        f"(format {meta.get('format')!r})")
    for _, speaker, _, _ in rows:
        if speaker not in table:
            raise UserError(f"{meta_path}: utterance speaker {speaker!r} is not in its speaker list")
    return [(p, s, t) for p, s, t, sp in rows if sp == split], table, None


def _held_out(root: Path, paths: list[Path], test_fraction: float) -> set[Path]:
    """One speaker's test files: the first ceil(fraction * n) by SHA-1 of relative path (none if n < 2)."""
    if len(paths) < 2 or test_fraction == 0:
        return set()
    ranked = sorted(paths, key=lambda p: hashlib.sha1(p.relative_to(root).as_posix().encode()).hexdigest())
    return set(ranked[: math.ceil(test_fraction * len(paths))])


def _split_by_speaker(root: Path, groups: dict, split: str, test_fraction: float, texts=None):
    files = []
    for speaker, paths in groups.items():
        test = _held_out(root, paths, test_fraction)
        files += [(p, speaker, texts.get(p) if texts else None) for p in sorted(paths)
                  if (p in test) == (split == "test")]
    return files


def _wav_files(root: Path, split: str, test_fraction: float):
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not found:
        raise UserError(f"wav:{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    top = [p for p in found if p.parent == root]
    nested = [p for p in found if p.parent != root]
    if top and nested:
        raise UserError(f"wav:{root}: audio files both in the folder and in subfolders; put them all in "
                        f"speaker subfolders or none")
    if top:
        return _split_by_speaker(root, {None: top}, split, test_fraction), None, None
    groups: dict[str, list[Path]] = {}
    for p in nested:
        groups.setdefault(p.relative_to(root).parts[0], []).append(p)
    table = sorted(groups)
    return _split_by_speaker(root, groups, split, test_fraction), table, None


def _vctk_files(root: Path, split: str, test_fraction: float):
    audio_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("wav"))
    if not audio_dirs:
        raise UserError(f"vctk:{root}: no wav48*/ folder (VCTK layout: wav48*/pXXX/*.wav, txt/pXXX/*.txt)")
    audio = audio_dirs[0] if len(audio_dirs) == 1 else next(
        (d for d in audio_dirs if d.name == "wav48_silence_trimmed"), audio_dirs[0])
    groups: dict[str, list[Path]] = {}
    for spk_dir in sorted(d for d in audio.iterdir() if d.is_dir()):
        paths = sorted(p for p in spk_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        stems = {p.stem for p in paths}
        # VCTK 0.92 has two microphones per utterance (_mic1, _mic2): keep mic1 where there is one.
        paths = [p for p in paths if not (p.stem.endswith("_mic2") and p.stem[:-1] + "1" in stems)]
        if paths:
            groups[spk_dir.name] = paths
    if not groups:
        raise UserError(f"vctk:{audio}: no speaker folders with audio files (expected pXXX/*.wav in it)")
    texts = {}
    for paths in groups.values():
        for p in paths:
            stem = p.stem[:-5] if p.stem.endswith(("_mic1", "_mic2")) else p.stem
            txt = root / "txt" / p.parent.name / f"{stem}.txt"
            if txt.is_file():
                texts[p] = txt.read_text(errors="replace").strip()
    table = sorted(groups)
    files = _split_by_speaker(root, groups, split, test_fraction, texts)
    return files, table, _vctk_speaker_info(root, table)


def _vctk_speaker_info(root: Path, table: list[str]) -> dict | None:
    """speaker-info.txt: 'ID AGE GENDER ACCENTS REGION' (IDs '225' in v0.80, 'p225' in v0.92)."""
    path = next((p for p in (root / "speaker-info.txt", root / "speaker_info.txt") if p.is_file()), None)
    if path is None:
        return None
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0].upper() == "ID":
            continue
        sid = parts[0] if parts[0].startswith("p") else f"p{parts[0]}"
        if sid in table:
            info[sid] = {"age": parts[1], "gender": parts[2], "accent": parts[3] if len(parts) > 3 else None,
                         "region": " ".join(parts[4:]) or None}
    return info or None
