"""Audio: the mu-law codec, log-mel features, reading/writing files, the audio data sets and the embedded corpus."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelwave.audio import (
    log_mel,
    mel_filterbank,
    mu_law_decode,
    mu_law_encode,
    read_audio,
    silence_code,
    trim_silence,
    write_wav,
)
from pixelwave.data import audio as audio_data
from pixelwave.data import speech
from pixelwave.data.audio import load_audio
from pixelwave.errors import UserError


def tone(seconds, rate, freq=440.0, amp=0.5, channels=1):
    t = np.arange(int(round(seconds * rate))) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def with_silence(wave, rate, before=0.3, after=0.4):
    return np.concatenate([np.zeros(int(before * rate), np.float32), wave, np.zeros(int(after * rate), np.float32)])


def dominant_hz(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.argmax(spectrum) * rate / len(wave)


# ----------------------------------------------------------------------------------------------------- mu-law
@pytest.mark.parametrize("levels", [2, 3, 16, 255, 256, 1024, 65536])
def test_mu_law_decode_then_encode_is_exact(levels):
    c = torch.arange(levels)
    assert torch.equal(mu_law_encode(mu_law_decode(c, levels), levels), c)
    x = mu_law_decode(c, levels)
    assert x[0] == -1.0 and x[-1] == 1.0 and bool((x[1:] > x[:-1]).all())  # monotone, covering [-1, 1]


def companded(x, levels):
    mu = levels - 1
    return np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from([4, 16, 256, 4096]))
def test_mu_law_round_trip_is_within_half_a_bin(xs, levels):
    x = np.array(xs, dtype=np.float64)
    c = mu_law_encode(torch.from_numpy(x), levels)
    assert c.dtype == torch.int64 and int(c.min()) >= 0 and int(c.max()) < levels
    back = mu_law_decode(c, levels).double().numpy()
    # in the companded domain the bins are 2/mu wide and decode returns the centre of x's bin
    gap = np.abs(companded(back, levels) - companded(x, levels))
    assert gap.max() <= 1.0 / (levels - 1) + 1e-6


def test_mu_law_convention_is_pinned():
    assert mu_law_encode(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    assert silence_code(256) == 128 and silence_code(16) == 8
    assert mu_law_encode(torch.tensor([-3.0, 2.0])).tolist() == [0, 255]  # clipped, not wrapped
    assert abs(float(mu_law_decode(torch.tensor(128)))) < 1e-4
    # mu-law spends its codes near zero: 0.01 is many codes away from 0, 0.99 few from 1
    assert int(mu_law_encode(torch.tensor(0.01))) - 128 > 10
    assert 255 - int(mu_law_encode(torch.tensor(0.99))) <= 1


def test_mu_law_rejects_wrong_types():
    with pytest.raises(ValueError, match="float"):
        mu_law_encode(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="integer codes"):
        mu_law_decode(torch.tensor([0.5]))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        mu_law_decode(torch.tensor([256]))
    with pytest.raises(ValueError, match="levels"):
        mu_law_encode(torch.tensor([0.0]), levels=1)


# ----------------------------------------------------------------------------------------------------- log-mel
def test_mel_filterbank_shape_and_centres():
    fb = mel_filterbank(16000, 800, n_mels=40)
    assert fb.shape == (40, 401) and bool((fb >= 0).all())
    peaks = fb.argmax(1)
    assert bool((peaks[1:] >= peaks[:-1]).all())  # filters ordered by frequency
    bin_hz = 16000 / 800
    widths = (fb > 0).sum(1).float() * bin_hz
    assert torch.allclose((fb.sum(1) * bin_hz)[5:], torch.full((35,), 1.0), rtol=0.15)  # ~unit area
    assert widths[-1] > widths[5]  # mel scale: high filters are wider


def test_log_mel_frames_and_where_a_tone_lands():
    rate, hop = 16000, 200
    wave = torch.from_numpy(tone(1.0, rate, freq=1000.0))
    m = log_mel(wave, rate, n_mels=80, hop_length=hop, n_fft=800)
    assert m.shape == (80, 80)  # 16000 / 200 frames: a crop of F * hop samples has F frames
    assert log_mel(torch.zeros(16100), rate, hop_length=hop).shape[-1] == 81  # ceil(T / hop)
    fb = mel_filterbank(rate, 800, 80)
    band = int(fb[:, round(1000 / (rate / 800))].argmax())  # the filter that peaks on 1 kHz
    assert abs(int(m[:, 40].argmax()) - band) <= 1
    batch = log_mel(torch.stack([wave, 0.5 * wave]), rate)
    assert batch.shape == (2, 80, 80)
    assert torch.allclose(batch[0], m)
    loud = batch[1] > -9.0  # away from the 1e-5 floor, halving the wave lowers the log-magnitude by log 2
    assert loud.sum() > 200
    assert torch.allclose((batch[0] - batch[1])[loud], torch.full((int(loud.sum()),), math.log(2.0)), atol=1e-3)
    silent = log_mel(torch.zeros(400), rate)
    assert torch.allclose(silent, torch.full_like(silent, math.log(1e-5)))


# ----------------------------------------------------------------------------------------------------- files
def test_read_resamples_and_mixes_down(tmp_path):
    stereo = tone(0.5, 22050, freq=1000.0, channels=2)
    stereo[:, 1] *= 0.0  # mono = mean of the channels = half the left one
    sf.write(tmp_path / "a.wav", stereo, 22050)
    wave, rate = read_audio(tmp_path / "a.wav", 16000)
    assert rate == 16000 and wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 8000) <= 1
    assert abs(dominant_hz(wave, 16000) - 1000.0) < 5
    assert abs(np.abs(wave[1000:-1000]).max() - 0.25) < 0.01
    native, rate = read_audio(tmp_path / "a.wav")
    assert rate == 22050 and len(native) == len(stereo)


def test_write_wav_round_trip(tmp_path):
    x = tone(0.2, 8000, amp=0.3)
    write_wav(tmp_path / "o.wav", torch.from_numpy(x), 8000)
    info = sf.info(str(tmp_path / "o.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    back, _ = read_audio(tmp_path / "o.wav")
    assert np.abs(back - x).max() < 1e-4


def test_bad_files_raise_user_errors(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 20)
    x = tone(1.0, 16000)
    sf.write(tmp_path / "good.wav", x, 16000, subtype="PCM_16")
    sf.write(tmp_path / "good.flac", x, 16000, subtype="PCM_16")
    for name in ("good.wav", "good.flac"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    (tmp_path / "zero.wav").write_bytes(b"")
    cases = {"text.wav": "not a readable audio file", "cut-good.wav": "truncated", "cut-good.flac": None,
             "empty.wav": "empty", "zero.wav": "not a readable", "missing.wav": "no such"}
    cases["cut-good.flac"] = "truncated|not a readable"
    for name, message in cases.items():
        with pytest.raises(UserError, match=message) as e:
            read_audio(tmp_path / name)
        assert "\n" not in str(e.value) and name in str(e.value)
    assert len(read_audio(tmp_path / "good.flac")[0]) == 16000


def test_trim_silence_cuts_ends_only():
    rate = 16000
    speechlike = np.concatenate([tone(0.3, rate), np.zeros(4000, np.float32), tone(0.3, rate)])
    trimmed = trim_silence(with_silence(speechlike, rate, 0.5, 0.7), rate, margin_ms=50)
    assert abs(len(trimmed) - (len(speechlike) + 2 * 800)) <= 2 * 160  # the pause inside is kept
    assert len(trim_silence(np.zeros(1000, np.float32), rate)) == 0


# ----------------------------------------------------------------------------------------------------- data sets
def make_speakers(root, rates=(16000, 16000), files=5, suffix="wav"):
    """root/spkN/uttM.<suffix>: speaker N speaks noisy tones at 300 + 100 N Hz, 0.5 .. 0.9 s, silence around."""
    noise = np.random.default_rng(0)
    for n, rate in enumerate(rates):
        (root / f"spk{n}").mkdir(parents=True)
        for m in range(files):
            voiced = tone(0.5 + 0.1 * m, rate, freq=300 + 100 * n)
            voiced += noise.normal(0.0, 0.02, voiced.shape).astype(np.float32)  # no two crops alike
            wave = with_silence(voiced, rate)
            sf.write(root / f"spk{n}" / f"utt{m}.{suffix}", wave, rate, subtype="PCM_16")


def test_wav_folder_with_speakers_and_resampling(tmp_path):
    make_speakers(tmp_path, rates=(16000, 22050))
    train = load_audio(f"wav:{tmp_path}", "train", crop=1600)
    test = load_audio(f"wav:{tmp_path}", "test", crop=1600)
    assert train.speakers == test.speakers == ["spk0", "spk1"]
    assert train.num_utterances == 8 and test.num_utterances == 2  # ceil(10% of 5) per speaker held out
    assert not set(train.sources) & set(test.sources)
    # every 22,050 Hz file was resampled: trimmed lengths are those of the 16 kHz tones (+ margins)
    for i, src in enumerate(train.sources):
        m = int(src[-5])
        assert abs(int(train.lengths[i]) - (0.5 + 0.1 * m + 0.1) * 16000) < 400
    b = train.batch(torch.arange(len(train)), torch.Generator().manual_seed(0))
    assert b["a"].shape == (len(train), 1600) and b["a"].dtype == torch.long and b["cond"] is None
    assert set(b["speaker"].tolist()) == {0, 1}
    for row, spk in zip(b["a"], b["speaker"], strict=True):  # each crop is its speaker's tone
        wave = mu_law_decode(row).numpy()
        assert abs(dominant_hz(wave, 16000) - (300 + 100 * int(spk))) < 15
    info = train.info()
    assert json.loads(json.dumps(info)) == info
    assert info["sample_rate"] == 16000 and info["num_speakers"] == 2 and info["crop"] == train.dims == 1600


def test_wav_folder_without_speakers_and_flac(tmp_path):
    for m in range(3):
        sf.write(tmp_path / f"u{m}.flac", tone(0.4, 8000), 8000, subtype="PCM_16")
    ds = load_audio(f"wav:{tmp_path}", "train", sample_rate=8000, crop=800, trim_db=None)
    assert ds.speakers is None and ds.info()["num_speakers"] is None
    assert ds.batch(torch.tensor([0, 1]))["speaker"] is None
    assert len(ds) == 2 * 4  # two training files of 3,200 samples: 4 crops each


def test_batches_are_deterministic_and_crops_are_real_audio(tmp_path):
    make_speakers(tmp_path)
    ds = load_audio(f"wav:{tmp_path}", crop=2000)
    idx = torch.tensor([0, 3, 5, 1])
    b1 = ds.batch(idx, torch.Generator().manual_seed(7))
    b2 = ds.batch(idx, torch.Generator().manual_seed(7))
    b3 = ds.batch(idx, torch.Generator().manual_seed(8))
    assert torch.equal(b1["a"], b2["a"]) and not torch.equal(b1["a"], b3["a"])
    # a crop is a contiguous stretch of its utterance's codes
    utt = int(ds._window_utt[0])
    whole = ds.utterance(utt)["a"][0]
    crop = b1["a"][0]
    starts = [s for s in range(len(whole) - 2000 + 1) if torch.equal(whole[s: s + 2000], crop)]
    assert starts


def test_eval_crops_are_fixed_consecutive_windows(tmp_path):
    make_speakers(tmp_path)
    ds = load_audio(f"wav:{tmp_path}", "test", crop=1000)
    assert not ds.random_crops
    b = ds.batch(torch.arange(len(ds)), torch.Generator().manual_seed(1))
    assert torch.equal(b["a"], ds.batch(torch.arange(len(ds)), torch.Generator().manual_seed(2))["a"])
    expected = sum(int(n) // 1000 for n in ds.lengths)
    assert len(ds) == expected
    first = ds.utterance(0)["a"][0]
    assert torch.equal(b["a"][0], first[:1000]) and torch.equal(b["a"][1], first[1000:2000])


def test_mel_features_ride_along_with_crops(tmp_path):
    make_speakers(tmp_path)
    ds = load_audio(f"wav:{tmp_path}", crop=1600, with_mel=True, n_mels=20, hop_length=160, n_fft=400)
    b = ds.batch(torch.arange(4), torch.Generator().manual_seed(3))
    assert b["cond"].shape == (4, 20, 10) and b["cond"].dtype == torch.float32
    info = ds.info()
    assert (info["n_mels"], info["hop_length"], info["mel"]["n_fft"]) == (20, 160, 400)
    # the frames are the mel of the utterance at the crop's position (crops start on a frame boundary)
    for k in range(4):
        utt = ds.utterance(int(ds._window_utt[k]))
        whole = utt["a"][0]
        start = next(s for s in range(0, len(whole) - 1600 + 1, 160) if torch.equal(whole[s: s + 1600], b["a"][k]))
        assert torch.allclose(b["cond"][k], utt["cond"][0][:, start // 160: start // 160 + 10])
    with pytest.raises(UserError, match="multiple of hop_length"):
        load_audio(f"wav:{tmp_path}", crop=1000, with_mel=True, hop_length=160)


def test_crops_carry_their_utterances_frames_as_context(tmp_path):
    make_speakers(tmp_path)
    kw = dict(crop=1600, with_mel=True, n_mels=20, hop_length=160, n_fft=400)
    plain = load_audio(f"wav:{tmp_path}", "test", **kw)
    ds = load_audio(f"wav:{tmp_path}", "test", context=3, **kw)
    idx = torch.arange(len(ds))
    b, b0 = ds.batch(idx), plain.batch(idx)
    assert b["cond"].shape == (len(ds), 20, 16) and b["context"] == 3 and "context" not in b0
    assert torch.equal(b["cond"][..., 3:13], b0["cond"]) and ds.info()["cond_context"] == 3
    assert "cond_context" not in plain.info()
    # crop k of utterance 0 starts at frame 10 k: its context is the utterance's own frames, zeros past its ends
    utt = ds.utterance(0)["cond"][0]  # (20, F)
    frames = utt.shape[-1]
    for k in range(frames // 10):
        for j in range(16):
            f = 10 * k - 3 + j
            want = utt[:, f] if 0 <= f < frames else torch.zeros(20)
            assert torch.equal(b["cond"][k, :, j], want), (k, j)
    with pytest.raises(UserError, match="context must be an integer"):
        load_audio(f"wav:{tmp_path}", "test", crop=1600, context=2)


def make_vctk(root, version="0.92"):
    audio_dir = root / ("wav48_silence_trimmed" if version == "0.92" else "wav48")
    ext = "flac" if version == "0.92" else "wav"
    for n, spk in enumerate(["p225", "p226", "p301"]):
        (audio_dir / spk).mkdir(parents=True)
        (root / "txt" / spk).mkdir(parents=True)
        for m in range(1, 5):
            wave = with_silence(tone(0.4, 48000, freq=200 + 150 * n), 48000, 0.1, 0.1)
            mics = ("_mic1", "_mic2") if version == "0.92" else ("",)
            for mic in mics:
                sf.write(audio_dir / spk / f"{spk}_{m:03d}{mic}.{ext}", wave, 48000, subtype="PCM_16")
            (root / "txt" / spk / f"{spk}_{m:03d}.txt").write_text(f"Sentence {m} of {spk}.\n")
    ids = ["p225", "p226", "p301"] if version == "0.92" else ["225", "226", "301"]
    (root / "speaker-info.txt").write_text(
        "ID  AGE  GENDER  ACCENTS  REGION\n"
        f"{ids[0]}  23  F    English    Southern  England\n{ids[1]}  22  M    English    Surrey\n"
        f"{ids[2]}  23  F    American   North Carolina\n")


@pytest.mark.parametrize("version", ["0.92", "0.80"])
def test_vctk_layout(tmp_path, version):
    make_vctk(tmp_path, version)
    train = load_audio(f"vctk:{tmp_path}", "train", crop=1600)
    test = load_audio(f"vctk:{tmp_path}", "test", crop=1600)
    assert train.speakers == ["p225", "p226", "p301"]
    assert train.num_utterances == 9 and test.num_utterances == 3  # one of four per speaker held out
    assert all("mic2" not in s for s in train.sources + test.sources)  # one microphone per utterance
    assert train.texts[0].startswith("Sentence ")
    info = train.info()
    assert info["speaker_info"]["p301"]["accent"] == "American"
    assert info["speaker_info"]["p225"]["region"] == "Southern England"
    assert abs(int(train.lengths[0]) - 0.5 * 16000) < 400  # 48 kHz resampled to 16 kHz, trimmed


def test_split_is_deterministic_and_by_name(tmp_path):
    make_speakers(tmp_path / "a", files=10)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ta = load_audio(f"wav:{tmp_path / 'a'}", "test", crop=800)
    tb = load_audio(f"wav:{tmp_path / 'b'}", "test", crop=800)
    rel_a = sorted(str(Path(s).relative_to(tmp_path / "a")) for s in ta.sources)
    rel_b = sorted(str(Path(s).relative_to(tmp_path / "b")) for s in tb.sources)
    assert rel_a == rel_b and ta.num_utterances == 2


def test_bad_data_names_and_folders(tmp_path):
    with pytest.raises(UserError, match="speech-sample, flite-sample, wav:DIR, vctk:DIR"):
        load_audio("librispeech")
    with pytest.raises(UserError, match="does not exist"):
        load_audio(f"wav:{tmp_path / 'nope'}")
    with pytest.raises(UserError, match="names no folder"):
        load_audio("wav:")
    with pytest.raises(UserError, match="no audio files"):
        load_audio(f"wav:{tmp_path}")
    with pytest.raises(UserError, match="wav48"):
        load_audio(f"vctk:{tmp_path}")
    (tmp_path / "spk").mkdir()
    sf.write(tmp_path / "spk" / "u.wav", tone(0.2, 16000), 16000)
    (tmp_path / "spk" / "v.wav").write_text("not audio")
    with pytest.raises(UserError, match="v.wav: not a readable audio file"):
        load_audio(f"wav:{tmp_path}")
    (tmp_path / "spk" / "v.wav").unlink()
    with pytest.raises(UserError, match="use a shorter crop"):
        load_audio(f"wav:{tmp_path}", crop=16000)
    with pytest.raises(UserError, match="split"):
        load_audio(f"wav:{tmp_path}", split="valid")


# ----------------------------------------------------------------------------------------------------- corpus
def test_embedded_speech_sample():
    train = load_audio("speech-sample", "train")
    test = load_audio("speech-sample", "test")
    accents = ["en-us", "en-gb", "en-gb-scotland", "en-029"]
    assert train.speakers == test.speakers == accents
    assert train.sample_rate == 16000 and train.levels == 256
    assert train.num_utterances == 100 and test.num_utterances == 16
    assert sorted(set(train.speaker.tolist())) == sorted(set(test.speaker.tolist())) == [0, 1, 2, 3]
    assert not set(train.texts) & set(test.texts)  # held out by sentence
    assert 200 < train.seconds < 240 and 30 < test.seconds < 40
    b = train.batch(torch.arange(8), torch.Generator().manual_seed(0))
    assert b["a"].shape == (8, 8000) and b["speaker"].shape == (8,)
    # it is speech: energy varies along a crop, codes use much of the range
    assert int(b["a"].max()) - int(b["a"].min()) > 100
    info = train.info()
    assert info["name"] == "speech-sample" and json.loads(json.dumps(info)) == info


def test_embedded_corpus_metadata_matches_files():
    meta = json.loads((audio_data.SPEECH_SAMPLE / "metadata.json").read_text())
    sentences = speech.read_sentences()
    assert len(sentences) == meta["sentences"] == 104
    for u in meta["utterances"]:
        info = sf.info(str(audio_data.SPEECH_SAMPLE / u["file"]))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, u["samples"])
        assert u["text"] == sentences[u["sentence_id"]]
    total = sum(p.stat().st_size for p in audio_data.SPEECH_SAMPLE.rglob("*.flac"))
    assert 2e6 < total < 5e6


def test_corpus_builder_explains_missing_espeak(tmp_path, monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install espeak-ng"):
        speech.build_speech_corpus(tmp_path / "out")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_corpus_builder_makes_a_loadable_corpus(tmp_path):
    (tmp_path / "s.txt").write_text("# two sentences\nHello there.\n\nGood morning to you all.\nBye now.\n")
    meta = speech.build_speech_corpus(tmp_path / "out", voices=["en-us", "en-gb"],
                                      sentences_file=tmp_path / "s.txt", test_every=3)
    assert [(u["sentence_id"], u["speaker"], u["split"]) for u in meta["utterances"]] == [
        (0, "en-us", "train"), (0, "en-gb", "train"), (1, "en-us", "train"), (1, "en-gb", "train"),
        (2, "en-us", "test"), (2, "en-gb", "test")]
    ds = load_audio(f"wav:{tmp_path / 'out'}", "test", crop=1600)
    assert ds.speakers == ["en-us", "en-gb"] and ds.texts == ["Bye now.", "Bye now."]
    with pytest.raises(UserError, match="not empty"):
        speech.build_speech_corpus(tmp_path / "out")


# ----------------------------------------------------------------------------------------------- flite corpus
def test_embedded_flite_sample_holds_out_kal16_and_the_test_sentences():
    train = load_audio("flite-sample", "train")
    test = load_audio("flite-sample", "test")
    assert train.speakers == test.speakers == ["slt", "rms", "awb", "kal16"]
    assert train.num_utterances == 96 and test.num_utterances == 32
    assert sorted(set(train.speaker.tolist())) == [0, 1, 2]  # kal16 (3) is never heard in training
    assert sorted(set(test.speaker.tolist())) == [0, 1, 2, 3]
    assert not set(train.texts) & set(test.texts) and len(set(test.texts)) == 8
    assert 200 < train.seconds < 260 and 60 < test.seconds < 90


def test_embedded_flite_corpus_metadata_matches_files():
    meta = json.loads((audio_data.FLITE_SAMPLE / "metadata.json").read_text())
    sentences = speech.read_sentences()
    assert meta["engine"] == "flite" and meta["test_voices"] == ["kal16"] and meta["sentences"] == 104
    for u in meta["utterances"]:
        info = sf.info(str(audio_data.FLITE_SAMPLE / u["file"]))
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, u["samples"])
        assert u["text"] == sentences[u["sentence_id"]]
    total = sum(p.stat().st_size for p in audio_data.FLITE_SAMPLE.rglob("*.flac"))
    assert 3e6 < total < 7e6


def test_unseen_voices_speak_only_the_test_sentences():
    plan = speech._plan(6, ["a", "b"], ["u"], voices_per_sentence=1, test_every=3)
    assert plan == [(0, "a", "train"), (1, "b", "train"), (2, "a", "test"), (2, "b", "test"), (2, "u", "test"),
                    (3, "a", "train"), (4, "b", "train"), (5, "a", "test"), (5, "b", "test"), (5, "u", "test")]


def test_shipped_sentence_lists():
    alice = speech.read_sentences("alice")
    assert len(alice) == 423 and len(set(alice)) == 423
    assert all(5 <= len(s.split()) <= 16 and s[-1] in ".!?" and "`" not in s for s in alice)
    assert speech.read_sentences("pixelwave") == speech.read_sentences()
    with pytest.raises(UserError, match="shipped lists"):
        speech.read_sentences("no-such-list")


def test_corpus_builder_explains_missing_flite(tmp_path, monkeypatch):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="flite is not installed: apt-get install flite"):
        speech.build_speech_corpus(tmp_path / "out", engine="flite")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")
def test_flite_builder_makes_a_loadable_corpus_with_an_unseen_voice(tmp_path):
    (tmp_path / "s.txt").write_text("Hello there.\nGood morning to you all.\nBye now.\n")
    meta = speech.build_speech_corpus(tmp_path / "out", engine="flite", voices=["slt", "rms"],
                                      test_voices=["kal16"], sentences_file=tmp_path / "s.txt", test_every=3)
    assert meta["speakers"] == ["slt", "rms", "kal16"] and meta["synthesiser"].startswith("flite 2")
    assert [(u["sentence_id"], u["speaker"], u["split"]) for u in meta["utterances"]] == [
        (0, "slt", "train"), (0, "rms", "train"), (1, "slt", "train"), (1, "rms", "train"),
        (2, "slt", "test"), (2, "rms", "test"), (2, "kal16", "test")]
    train = load_audio(f"wav:{tmp_path / 'out'}", "train", crop=1600)
    test = load_audio(f"wav:{tmp_path / 'out'}", "test", crop=1600)
    assert train.speakers == ["slt", "rms", "kal16"] and sorted(set(train.speaker.tolist())) == [0, 1]
    assert test.texts == ["Bye now."] * 3 and test.speaker.tolist() == [0, 1, 2]
    # real speech at 16 kHz: a voice of its own per speaker, energy in the speech band
    wave, rate = read_audio(tmp_path / "out" / "kal16" / "002.flac")
    assert rate == 16000 and 0.3 < len(wave) / rate < 3 and 100 < dominant_hz(wave, rate) < 4000
    with pytest.raises(UserError, match="no voice nobody"):
        speech.build_speech_corpus(tmp_path / "other", engine="flite", voices=["slt", "nobody"])
