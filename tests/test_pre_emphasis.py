"""Pre-emphasis (`--pre-emphasis ALPHA`): the WaveNet models the codes of x_t - ALPHA x_(t-1), and every path from
codes to audio (resynthesize, say, eval's speech scores, TensorBoard clips) undoes it. The filters are each
other's exact inverse, the data's codes are the emphasised recording's while its mel frames stay the recording's,
and a run remembers the setting from training to generation."""

import json

import numpy as np
import pytest
import torch

from pixelwave import audio
from pixelwave.cli import main
from pixelwave.data.audio import load_audio
from pixelwave.models.wavenet import WaveNet

RATE = 16000


def recursive_de_emphasis(x: np.ndarray, alpha: float) -> np.ndarray:
    """y_t = x_t + alpha y_(t-1), one sample at a time: the definition `de_emphasis` must equal."""
    y, prev = np.empty_like(x, dtype=np.float64), 0.0
    for t, v in enumerate(x):
        prev = v + alpha * prev
        y[t] = prev
    return y


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.85, 0.97])
def test_the_filters_are_each_others_inverse(alpha):
    x = torch.rand(3, 4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    e = audio.pre_emphasis(x, alpha)
    assert torch.equal(e[:, 0], x[:, 0])  # nothing before t = 0
    assert torch.allclose(e[:, 1:], x[:, 1:] - alpha * x[:, :-1], rtol=0, atol=1e-15)
    assert torch.allclose(audio.de_emphasis(e, alpha), x, rtol=0, atol=1e-12)
    assert np.allclose(audio.de_emphasis(x[0], alpha).numpy(), recursive_de_emphasis(x[0].numpy(), alpha),
                       rtol=0, atol=1e-12)


def test_emphasis_tilts_the_spectrum_and_checks_alpha():
    # A low and a high sine of the same amplitude: after emphasis the high one is much the louder.
    t = np.arange(8000) / RATE
    low = audio.pre_emphasis(np.sin(2 * np.pi * 200 * t), 0.85)[100:].std()
    high = audio.pre_emphasis(np.sin(2 * np.pi * 6000 * t), 0.85)[100:].std()
    assert float(high / low) > 8  # |1 - 0.85 e^-iw| at 6 kHz over 200 Hz: ~10x
    for bad in (1.0, -0.1, True, "0.8"):
        with pytest.raises(ValueError, match="pre-emphasis must be a number in"):
            audio.pre_emphasis(np.zeros(4), bad)
        with pytest.raises(ValueError, match="pre-emphasis must be a number in"):
            audio.de_emphasis(np.zeros(4), bad)


def test_the_data_codes_the_emphasised_recording_and_keeps_its_frames():
    plain = load_audio("flite-sample", split="test", crop=2000, with_mel=True)
    emph = load_audio("flite-sample", split="test", crop=2000, with_mel=True, pre_emphasis=0.85)
    assert "pre_emphasis" not in plain.info() and emph.info()["pre_emphasis"] == 0.85
    assert torch.equal(plain.mel, emph.mel)  # the conditioning is the recording's, emphasis or not
    for i in (0, 5):
        wave = emph.recording(i)  # the file read again: not emphasised
        n = int(emph.lengths[i])
        start = int(emph.offsets[i])
        want = audio.mu_law_encode(audio.pre_emphasis(torch.from_numpy(wave), 0.85), emph.levels)
        assert torch.equal(emph.codes[start: start + n].long(), want)  # per utterance: no leak from the last
        assert not torch.equal(emph.codes[start: start + n], plain.codes[start: start + n])
        # decoding undoes the emphasis: back to the recording within the coding's error, shaped by the filter
        assert np.abs(emph.waveform(emph.codes[start: start + n]) - wave).max() < 0.05
    with pytest.raises(Exception, match="pre_emphasis must be a number in"):
        load_audio("flite-sample", split="test", pre_emphasis=1.5)


def test_the_model_decodes_through_the_inverse_filter():
    codes = torch.randint(0, 16, (2, 300), generator=torch.Generator().manual_seed(1))
    plain = WaveNet(layers=2, stacks=1, residual_channels=4, gate_channels=4, skip_channels=4, levels=16)
    assert torch.equal(plain.waveform(codes), audio.mu_law_decode(codes, 16))
    m = WaveNet(layers=2, stacks=1, residual_channels=4, gate_channels=4, skip_channels=4, levels=16,
                pre_emphasis=0.85)
    want = recursive_de_emphasis(audio.mu_law_decode(codes[1], 16).double().numpy(), 0.85)
    assert m.waveform(codes).dtype == torch.float32
    assert np.allclose(m.waveform(codes)[1].numpy(), want, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="pre_emphasis must be in"):
        WaveNet(layers=2, stacks=1, pre_emphasis=1.0)
    with pytest.raises(ValueError, match="pre_emphasis needs another output"):
        WaveNet(layers=2, stacks=1, cond_channels=8, hop_length=4, sample_rate=RATE, output="lpc_mixture",
                pre_emphasis=0.85)


def test_a_run_keeps_the_emphasis_from_training_to_resynthesis(tmp_path, capsys, monkeypatch, one_thread):
    import soundfile as sf

    out = tmp_path / "emph"
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--no-progress",
                 "--eval-every", "0", "--steps", "2", "--samples", "0", "--mel", "--unconditional",
                 "--pre-emphasis", "0.85", "--out", str(out)]) == 0
    assert json.loads((out / "data.json").read_text())["pre_emphasis"] == 0.85
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "flite-sample", "--no-speech-scores", "--json"]) == 0
    assert 0 < json.loads(capsys.readouterr().out)["bits_per_sample"] < 9
    # resynthesize writes what the model's waveform() makes of the codes it draws (the inverse filter, tested
    # above): spy on it, and compare with the file, to 16-bit PCM's step
    made = []

    def spy(self, codes):
        made.append(real(self, codes))
        return made[-1]

    real = WaveNet.waveform
    monkeypatch.setattr(WaveNet, "waveform", spy)
    wav = tmp_path / "in.wav"
    t = np.arange(4800) / RATE
    audio.write_wav(wav, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), RATE)
    assert main(["resynthesize", str(out), "--input", str(wav), "--out", str(tmp_path / "re.wav")]) == 0
    got, rate = sf.read(str(tmp_path / "re.wav"), dtype="float64")
    assert rate == RATE and len(made) == 1 and made[0].shape == (1, 4800)
    assert np.abs(got - np.clip(made[0][0].numpy(), -1, 1)).max() <= 1 / 32767
    capsys.readouterr()
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--mel",
                 "--pre-emphasis", "1.2", "--out", str(tmp_path / "x")]) == 2
    assert "pre_emphasis must be a number in [0, 1)" in capsys.readouterr().err
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--mel",
                 "--output", "lpc_mixture", "--pre-emphasis", "0.85", "--out", str(tmp_path / "y")]) == 2
    assert "pre_emphasis needs another output" in capsys.readouterr().err
