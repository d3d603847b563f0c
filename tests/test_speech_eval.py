"""Speech scores: MCD by hand, STOI, PocketSphinx WER, and a mel WaveNet re-speaking held-out utterances."""

import importlib.util
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from pixelwave import speech_eval as se
from pixelwave.audio import log_mel, read_audio
from pixelwave.data.audio import load_audio
from pixelwave.errors import UserError
from pixelwave.models import WaveNet

RATE = 16000
has = {m: importlib.util.find_spec(m) is not None for m in ("pystoi", "pocketsphinx", "jiwer")}
needs_stoi = pytest.mark.skipif(not has["pystoi"],
                                reason="pystoi is not installed (pip install pixelwave[speech-eval])")
needs_asr = pytest.mark.skipif(not (has["pocketsphinx"] and has["jiwer"]),
                               reason="pocketsphinx/jiwer are not installed (pip install pixelwave[speech-eval])")


@pytest.fixture(scope="module")
def speech():
    """A held-out flite-sample recording (slt) and its text."""
    test = load_audio("flite-sample", "test")
    return test.recording(0), test.texts[0]


def noise_like(wave, scale=0.1, seed=0):
    return (scale * np.random.default_rng(seed).standard_normal(len(wave))).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- MCD
def test_mcd_is_zero_for_identical_audio_and_ignores_gain(speech):
    wave, _ = speech
    assert se.mel_cepstral_distortion(wave, wave, RATE) == 0.0
    assert se.mel_cepstral_distortion(wave, 0.5 * wave, RATE) < 0.3  # c_0 (loudness) is not compared
    assert se.mel_cepstral_distortion(wave, noise_like(wave), RATE) > 5.0


def test_mel_cepstrum_of_one_cosine_is_half_its_amplitude():
    n, a, k = 80, 0.7, 3
    x = a * np.cos(np.pi * k * (np.arange(n) + 0.5) / n)[:, None] * np.ones((1, 5))  # (n_mels, F)
    c = se.mel_cepstrum(x)
    assert np.allclose(c[k], a / 2) and np.allclose(np.delete(c, k, axis=0), 0, atol=1e-12)


def test_mcd_matches_a_hand_computation(speech):
    wave, _ = speech
    wave = wave[:8000]
    other = np.roll(wave, 400) * 0.8 + noise_like(wave, 0.01)
    # by hand: log-mel, DCT-II with 1/N via scipy, c1..c24, 10 sqrt(2)/ln 10 per frame, frame mean
    from scipy.fft import dct

    a, b = (log_mel(torch.from_numpy(w).float(), RATE, 80, 200, 800).double().numpy() for w in (wave, other))
    ca, cb = (dct(m, type=2, axis=0, norm=None) / (2 * 80) for m in (a, b))  # scipy's DCT-II is 2 sum cos
    per_frame = 10 * math.sqrt(2) / math.log(10) * np.sqrt(((ca[1:25] - cb[1:25]) ** 2).sum(axis=0))
    assert se.mel_cepstral_distortion(wave, other, RATE) == pytest.approx(per_frame.mean(), rel=1e-9)
    # and one coefficient moved by a known amount: MCD = 10 sqrt(2)/ln 10 * a/2
    n, amp = 80, 0.4
    bump = amp * np.cos(np.pi * 5 * (np.arange(n) + 0.5) / n)[:, None]
    diff = se.mel_cepstrum(a + bump)[1:25] - se.mel_cepstrum(a)[1:25]
    assert 10 * math.sqrt(2) / math.log(10) * np.sqrt((diff ** 2).sum(axis=0)) == pytest.approx(
        10 * math.sqrt(2) / math.log(10) * amp / 2)


# ---------------------------------------------------------------------------------------------------- STOI
@needs_stoi
def test_stoi_is_one_for_identical_speech_and_lower_for_noise(speech):
    wave, _ = speech
    assert se.stoi(wave, wave, RATE) == pytest.approx(1.0, abs=1e-6)
    noisy = se.stoi(wave, wave + noise_like(wave, 0.3), RATE)
    unrelated = se.stoi(wave, noise_like(wave), RATE)
    assert unrelated < noisy < 0.9 and unrelated < 0.5


# ---------------------------------------------------------------------------------------------------- WER
def test_text_normalisation():
    assert se.normalise_text("Alice's 42 cats--don't `run' 1,200 times!") == \
        "alice's forty two cats don't run one thousand two hundred times"
    assert se.normalise_text("A well-known, OLD 'tale'.") == "a well known old tale"


@needs_asr
def test_word_error_rate_counts_words_after_normalisation():
    assert se.word_error_rate("The cat sat.", "the cat sat") == 0.0
    assert se.word_error_rate("The cat sat on the mat.", "the dog sat on mat") == pytest.approx(2 / 6)
    assert se.word_error_rate("Two cats.", "") == 1.0
    with pytest.raises(ValueError, match="no words"):
        se.word_error_rate("...", "a")


@needs_asr
def test_pocketsphinx_reads_a_flite_recording_but_not_noise(speech):
    wave, text = speech
    heard = se.recognize(wave, RATE)
    assert se.word_error_rate(text, heard) < 0.5, heard
    assert se.word_error_rate(text, se.recognize(noise_like(wave), RATE)) > 0.8


@needs_asr
def test_what_pocketsphinx_hears_does_not_depend_on_what_it_heard_before():
    """Each utterance is decoded from the same state: the decoder's noise and level estimates, which it carries
    from one utterance to the next, would make a recording's WER depend on the clips scored before it."""
    test = load_audio("flite-sample", "test")
    clips = [test.recording(i) for i in range(test.num_utterances)
             if test.speakers[int(test.speaker[i])] == "kal16"]
    first = [se.recognize(c, RATE) for c in clips]
    loud = (0.5 * np.random.default_rng(0).standard_normal(2 * RATE)).astype(np.float32)
    hum = (0.3 * np.sin(0.3 * np.arange(2 * RATE))).astype(np.float32)
    again = []
    for c in reversed(clips):
        se.recognize(loud, RATE)
        se.recognize(hum, RATE)
        again.append(se.recognize(c, RATE))
    assert again[::-1] == first


@needs_asr
@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")
def test_pocketsphinx_reads_a_fresh_flite_sentence_at_8khz(tmp_path):
    text = "Please call me when you arrive at the station."
    subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(tmp_path / "s.wav")], check=True)
    wave, rate = read_audio(tmp_path / "s.wav", 8000)  # resampled back up to 16 kHz inside recognize
    assert se.word_error_rate(text, se.recognize(wave, rate)) < 0.5


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch, speech):
    monkeypatch.setitem(sys.modules, "pystoi", None)  # `import pystoi` now raises ImportError
    with pytest.raises(se.MissingExtra, match=r"pystoi.*pip install 'pixelwave\[speech-eval\]'"):
        se.stoi(speech[0], speech[0], RATE)
    assert se.mel_cepstral_distortion(speech[0], speech[0], RATE) == 0.0  # MCD needs no extra


# ---------------------------------------------------------------------------------------------------- scoring
TINY = dict(layers=4, stacks=2, residual_channels=8, gate_channels=8, skip_channels=8, levels=256,
            cond_channels=80, hop_length=200)


@needs_stoi
@needs_asr
def test_score_resynthesis_reports_every_voice(tmp_path):
    test = load_audio("flite-sample", "test", with_mel=True)
    torch.manual_seed(0)
    model = WaveNet(**TINY, num_speakers=4)
    res = se.score_resynthesis(model, test, utterances_per_voice=1, out_dir=tmp_path)
    assert list(res["voices"]) == ["slt", "rms", "awb", "kal16"]
    for v in res["voices"].values():
        assert v["utterances"] == 1 and 0 <= v["wer_recording"] < 0.5 and v["wer_resynthesis"] >= 0.5
        assert -1 <= v["stoi"] < 0.7 and v["mcd_db"] > 3  # an untrained model babbles
    assert res["mean"]["mcd_db"] == pytest.approx(np.mean([v["mcd_db"] for v in res["voices"].values()]))
    assert sorted(p.name for p in tmp_path.iterdir())[:3] == ["awb-1-recording.wav", "awb-1.txt", "awb-1.wav"]
    assert (tmp_path / "awb-1.txt").read_text(encoding="utf-8") == res["voices"]["awb"]["texts"][0] + "\n"
    again = se.score_resynthesis(model, test, utterances_per_voice=1, recognise=False)
    assert again["voices"]["slt"]["mcd_db"] == res["voices"]["slt"]["mcd_db"]  # seeded: the same audio
    assert again["mean"]["wer_resynthesis"] is None


def test_score_resynthesis_needs_a_mel_model():
    test = load_audio("flite-sample", "test", with_mel=True)
    plain = WaveNet(layers=2, stacks=1, residual_channels=4, gate_channels=4, skip_channels=4, levels=16)
    with pytest.raises(UserError, match="no mel conditioning"):
        se.score_resynthesis(plain, test)
    with pytest.raises(UserError, match="mel features"):
        se.score_resynthesis(WaveNet(**TINY), load_audio("flite-sample", "test"))
    for draws in (0, True, 1.0):
        with pytest.raises(UserError, match="draws must be a positive integer"):
            se.score_resynthesis(WaveNet(**TINY), test, draws=draws)


@needs_stoi
def test_stoi_refuses_too_little_speech(speech):
    with pytest.raises(ValueError, match="too little speech"):
        se.stoi(speech[0][:3000], speech[0][:3000], RATE)
