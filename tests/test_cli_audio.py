"""WaveNet through the command line: train -> eval -> generate -> resynthesize on the embedded speech sample with
tiny models, the `data speech` builder, and bad input -> one line on stderr, exit code 2, nothing overwritten."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import pixelwave as pw
from pixelwave import runtime
from pixelwave.cli import main
from pixelwave.data import speech
from pixelwave.fast import wavenet_step

TINY = ["--model", "wavenet", "--data", "speech-sample", "--preset", "tiny", "--no-progress", "--eval-every", "0"]
SPEECH = speech.SENTENCES.parent  # the embedded corpus: VOICE/NNN.flac
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and 2 OpenMP threads on busy shared cores can be 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def commands_on_one_thread():
    """The commands here too (`main` sets torch's threads for each command, by default from the idle cores)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "default_threads", lambda: 1)
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs: speaker-conditioned (the accents), and mel-conditioned without speakers (a vocoder)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("audio")
    speakers, mel = root / "speakers", root / "mel"
    assert main(["train", *TINY, "--steps", "2", "--out", str(speakers)]) == 0
    assert main(["train", *TINY, "--steps", "2", "--out", str(mel), "--mel", "--unconditional", "--n-mels", "20",
                 "--hop-length", "100", "--n-fft", "400", "--samples", "1"]) == 0
    return speakers, mel


def bad(argv, capsys, expected):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (argv, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("pixelwave: error:"), err
    assert "Traceback" not in err
    assert expected in err, (argv, err)
    return err


def tone(path, seconds=0.2, rate=8000):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


# ------------------------------------------------------------------------------------------------ train / eval
def test_train_saves_the_model_speakers_and_tensorboard(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    speakers, mel = runs
    model = pw.load(speakers)
    assert model.model_name == "wavenet" and model.num_speakers == 4 and model.cond_channels is None
    assert (model.config.layers, model.config.stacks, model.config.residual_channels) == (2, 1, 8)  # tiny
    info = json.loads((speakers / "data.json").read_text())
    assert info["speakers"] == ACCENTS and info["sample_rate"] == 16000 and info["crop"] == 400
    vocoder = pw.load(mel)
    assert vocoder.num_speakers is None and (vocoder.cond_channels, vocoder.hop_length) == (20, 100)
    mel_info = json.loads((mel / "data.json").read_text())
    assert mel_info["mel"]["n_fft"] == 400 and "cond_context" not in mel_info  # crops of their own frames

    events = EventAccumulator(str(speakers / "tb"), size_guidance={"audio": 0}).Reload()
    assert {"train/bits_per_sample", "test/bits_per_sample"} <= set(events.Tags()["scalars"])
    assert sorted(events.Tags()["audio"]) == sorted(f"samples/{a}" for a in ACCENTS)  # a clip per accent
    (clip,) = events.Audio("samples/en-gb")
    assert clip.sample_rate == 16000
    events = EventAccumulator(str(mel / "tb"), size_guidance={"audio": 0}).Reload()
    # the vocoder re-speaks a held-out utterance, logged beside its recording, with its MCD (0.5 s: too short
    # for STOI, which is then left out rather than logged as a made-up figure)
    assert sorted(events.Tags()["audio"]) == ["recordings", "samples"]
    assert "speech/mcd_db" in events.Tags()["scalars"] and "speech/stoi" not in events.Tags()["scalars"]


def test_eval_in_bits_per_sample_with_the_runs_audio_options(runs, capsys):
    speakers, mel = runs
    assert main(["eval", str(speakers), "--data", "speech-sample", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bits_per_sample"] == result["bits_per_dim"]
    assert 4 < result["bits_per_sample"] < 9  # an untrained model: about log2(256) = 8 bits
    assert result["samples_per_example"] == 400 and result["sample_rate"] == 16000  # crop from data.json
    assert 30 < result["seconds"] < 40  # the whole held-out split (35 s) in 400-sample crops
    assert main(["eval", str(mel), "--data", "speech-sample", "--no-speech-scores"]) == 0  # loads mel frames
    line = capsys.readouterr().out
    assert "bits/sample" in line and "at 16000 Hz" in line


def test_cond_hidden_needs_mel_and_the_run_keeps_it(tmp_path, capsys):
    args = [*TINY, "--steps", "1", "--samples", "0", "--unconditional", "--cond-hidden", "4"]
    bad(["train", *args, "--out", str(tmp_path / "no-mel")], capsys, "cond_hidden is a network on the mel frames")
    assert main(["train", *args, "--mel", "--n-mels", "20", "--hop-length", "100", "--n-fft", "400",
                 "--out", str(tmp_path / "mel")]) == 0
    assert pw.load(tmp_path / "mel").config.cond_hidden == 4
    assert "cond_context" not in json.loads((tmp_path / "mel" / "data.json").read_text())  # off by default
    mel_args = ["--mel", "--n-mels", "20", "--hop-length", "100", "--n-fft", "400"]
    ctx = tmp_path / "ctx"
    assert main(["train", *args, *mel_args, "--cond-context", "3", "--out", str(ctx)]) == 0
    assert json.loads((ctx / "data.json").read_text())["cond_context"] == pw.load(ctx).cond_context == 3
    capsys.readouterr()
    assert main(["eval", str(ctx), "--data", "speech-sample", "--no-speech-scores", "--json"]) == 0  # crops alike
    assert json.loads(capsys.readouterr().out)["bits_per_sample"] > 0
    assert main(["train", *args, *mel_args, "--out", str(ctx), "--resume", "--steps", "2"]) == 0  # keeps 3
    assert json.loads((ctx / "data.json").read_text())["cond_context"] == 3
    bad(["train", *args[:-2], "--cond-context", "2", "--out", str(tmp_path / "x")], capsys, "add --mel")
    bad(["train", *args, *mel_args, "--cond-context", "-1", "--out", str(tmp_path / "x")], capsys, ">= 0")
    bad(["train", *args, *mel_args, "--cond-context", "2", "--out", str(ctx), "--resume", "--steps", "3"], capsys,
        "trained with --cond-context 3")


def test_resume_takes_the_runs_audio_options(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "1", "--crop", "800", "--out", str(out), "--samples", "0"]) == 0
    # The preset says crop 400; the run was made with 800 and resumes with it without being told.
    assert main(["train", *TINY, "--steps", "2", "--out", str(out), "--samples", "0", "--resume"]) == 0
    assert json.loads((out / "data.json").read_text())["crop"] == 800
    assert json.loads(next(out.glob("checkpoints/step-000002/state.json")).read_text())["step"] == 2


# ------------------------------------------------------------------------------------------------ generate
def test_generate_writes_a_wav_and_its_picture(runs, tmp_path, capsys):
    from PIL import Image

    speakers, _ = runs
    out = tmp_path / "gb.wav"
    assert main(["generate", str(speakers), "--seconds", "0.05", "--speaker", "en-gb", "--out", str(out)]) == 0
    assert "en-gb" in capsys.readouterr().out
    info = sf.info(str(out))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 800, 1, "PCM_16")
    assert Image.open(out.with_suffix(".png")).size[0] > 400
    wave = sf.read(str(out))[0]
    # The same seed gives the same audio, another speaker other audio, --force replaces.
    again, other = tmp_path / "again.wav", tmp_path / "us.wav"
    assert main(["generate", str(speakers), "--seconds", "0.05", "--speaker", "en-gb", "--out", str(again)]) == 0
    assert main(["generate", str(speakers), "--seconds", "0.05", "--speaker", "0", "--out", str(other)]) == 0
    assert np.array_equal(sf.read(str(again))[0], wave)
    assert not np.array_equal(sf.read(str(other))[0], wave)
    assert main(["generate", str(speakers), "--seconds", "0.05", "--speaker", "en-gb", "--seed", "1", "--naive",
                 "--out", str(out), "--force"]) == 0
    assert not np.array_equal(sf.read(str(out))[0], wave)


def test_generate_several_clips_in_one_batch(runs, tmp_path, capsys):
    """-n N: N clips from one batched draw, <stem>-1.wav .. -N.wav and one picture; the batch is the model's
    batched generation (the same codes as model.generate(batch=N) from the seed), and nothing is overwritten."""
    from PIL import Image

    speakers, _ = runs
    out = tmp_path / "gb.wav"
    args = ["generate", str(speakers), "--seconds", "0.02", "--speaker", "en-gb", "--seed", "3", "-n", "3"]
    assert main([*args, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "3 clips of 0.02 s" in said and "960 samples" in said
    wavs = [tmp_path / f"gb-{i}.wav" for i in (1, 2, 3)]
    assert not out.exists() and all(w.is_file() for w in wavs)
    assert Image.open(tmp_path / "gb.png").size[1] > 3 * 200  # a panel per clip
    got = np.stack([sf.read(str(w))[0] for w in wavs])  # floats, 16-bit steps of 1 / 32768
    from pixelwave.cli.common import load_checkpoint

    model, info = load_checkpoint(str(speakers), torch.device("cpu"))
    codes = model.generate(320, batch=3, speaker=info["speakers"].index("en-gb"),
                           generator=torch.Generator().manual_seed(3))
    want = pw.audio.mu_law_decode(codes, model.levels).numpy()
    assert np.abs(got - want).max() <= 2 / 32768  # the WAV's 16-bit rounding
    assert len({w.tobytes() for w in got}) == 3  # three different clips
    before = wavs[1].read_bytes()
    bad([*args, "--seed", "4", "--out", str(out)], capsys, "gb-1.wav exists")  # one-line error, nothing written
    assert wavs[1].read_bytes() == before


def test_generate_announces_a_first_compile_outside_its_timing(runs, tmp_path, capsys, monkeypatch):
    """On a machine where the fused kernel is not built yet, generate says it is compiling (it takes seconds)
    before it starts the clock of the samples/s it reports; later runs say nothing."""
    import re
    import time

    from pixelwave.fast import _build

    speakers, _ = runs
    monkeypatch.setattr(_build, "built", lambda source: False)
    first_call, kernel = [True], wavenet_step.kernel

    def slow_first_build():  # stands in for the compile: 2 s, once
        if first_call.pop() if first_call else False:
            time.sleep(2.0)
        return kernel()

    monkeypatch.setattr(wavenet_step, "kernel", slow_first_build)
    assert main(["generate", str(speakers), "--seconds", "0.01", "--speaker", "en-gb", "--out",
                 str(tmp_path / "a.wav")]) == 0
    out = capsys.readouterr().out.splitlines()
    if wavenet_step.disabled():
        assert not any("compiling" in line for line in out)
    else:
        assert out[0].startswith("compiling the fast WaveNet kernel") and not first_call
        assert float(re.search(r"samples in ([0-9.]+) s", out[-1]).group(1)) < 1.5  # the 2 s are not in it
    monkeypatch.undo()
    assert main(["generate", str(speakers), "--seconds", "0.01", "--speaker", "en-gb", "--out",
                 str(tmp_path / "b.wav")]) == 0
    assert "compiling" not in capsys.readouterr().out


def test_resynthesize_follows_a_recording(runs, tmp_path, capsys):
    _, mel = runs
    out = tmp_path / "re.wav"
    assert main(["resynthesize", str(mel), "--input", str(SPEECH / "en-gb" / "001.flac"), "--seconds", "0.1",
                 "--out", str(out)]) == 0
    assert sf.info(str(out)).frames == 1600  # 16 mel frames of 100 samples
    assert out.with_suffix(".png").is_file()
    # Any rate and format: an 8 kHz WAV is resampled to the model's 16 kHz first (0.2 s -> 3,200 samples).
    assert main(["resynthesize", str(mel), "--input", str(tone(tmp_path / "tone.wav")), "--out",
                 str(tmp_path / "tone_re.wav")]) == 0
    assert sf.info(str(tmp_path / "tone_re.wav")).frames == 3200


@pytest.mark.skipif(not wavenet_step.available(), reason="no fused kernel here: --bf16 says so (tested below)")
def test_generate_and_resynthesize_in_bf16(runs, tmp_path, capsys):
    """--bf16: the fused step with bfloat16 weights; the same seed gives the same audio, not the float32 audio."""
    speakers, mel = runs
    args = ["generate", str(speakers), "--seconds", "0.1", "--speaker", "en-gb"]
    assert main([*args, "--out", str(tmp_path / "a.wav"), "--bf16"]) == 0
    assert "cached, bf16)" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "b.wav"), "--bf16"]) == 0
    assert main([*args, "--out", str(tmp_path / "f.wav")]) == 0
    a, b, f = (sf.read(str(tmp_path / n))[0] for n in ("a.wav", "b.wav", "f.wav"))
    assert np.array_equal(a, b) and not np.array_equal(a, f)
    assert main(["resynthesize", str(mel), "--input", str(SPEECH / "en-gb" / "001.flac"), "--seconds", "0.05",
                 "--out", str(tmp_path / "re.wav"), "--bf16"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("samples/s, bf16)")
    bad([*args, "--out", str(tmp_path / "n.wav"), "--bf16", "--naive"], capsys, "cannot be combined with --naive")
    assert not (tmp_path / "n.wav").exists()


def test_bf16_without_the_fused_step_is_one_line(runs, tmp_path, capsys, monkeypatch):
    speakers, _ = runs
    monkeypatch.setenv("PIXELWAVE_NO_FAST", "1")
    bad(["generate", str(speakers), "--speaker", "en-us", "--out", str(tmp_path / "x.wav"), "--bf16"], capsys,
        "--bf16 cannot run here: disabled by PIXELWAVE_NO_FAST")
    assert not (tmp_path / "x.wav").exists()


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_audio_input_one_line_exit_2_nothing_overwritten(runs, tmp_path, capsys):
    speakers, mel = runs
    (tmp_path / "text.wav").write_text("not audio, just words\n" * 50)
    good = tone(tmp_path / "good.wav", seconds=0.5)
    (tmp_path / "cut.wav").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    image_ckpt = tmp_path / "image"
    pw.save(pw.models.PixelCNN(channels=1, levels=2, hidden=4, layers=2, kernel_size=3), image_ckpt)
    precious = tmp_path / "keep.wav"
    precious.write_bytes(b"precious")
    png_only = tmp_path / "pic.wav"
    (tmp_path / "pic.png").write_bytes(b"precious too")
    out = str(tmp_path / "o.wav")
    S, M = str(speakers), str(mel)
    cases = [
        (["resynthesize", M, "--input", str(tmp_path / "text.wav"), "--out", out], "not a readable audio file"),
        (["resynthesize", M, "--input", str(tmp_path / "cut.wav"), "--out", out], "truncated"),
        (["resynthesize", M, "--input", str(tmp_path / "missing.wav"), "--out", out], "no such audio file"),
        (["generate", S, "--speaker", "en-au", "--out", out], "en-us, en-gb, en-gb-scotland, en-029"),
        (["generate", S, "--out", out], "pass --speaker"),
        (["generate", M, "--out", out], "resynthesize"),  # a vocoder needs a recording
        (["resynthesize", M, "--input", str(good), "--speaker", "en-gb", "--out", out], "without speakers"),
        (["resynthesize", S, "--input", str(good), "--speaker", "en-gb", "--out", out], "no mel conditioning"),
        (["generate", str(image_ckpt), "--out", out], "pixelwave sample"),
        (["sample", S, "--out", str(tmp_path / "x.png")], "pixelwave generate"),
        (["complete", S, "--image", str(tmp_path / "x.png"), "--keep", "top-half", "--out",
          str(tmp_path / "x.png")], "pixelwave generate"),
        (["eval", S, "--data", "mnist-sample"], "image data"),
        (["generate", S, "--speaker", "en-gb", "--out", str(tmp_path / "o.mp3")], ".wav"),
        (["generate", S, "--speaker", "en-gb", "--out", str(precious)], "--force"),
        (["generate", S, "--speaker", "en-gb", "--out", str(png_only)], "pic.png exists"),
        (["train", *TINY, "--hidden", "8", "--out", str(tmp_path / "r")], "--hidden"),
        (["train", *TINY, "--n-mels", "20", "--out", str(tmp_path / "r")], "--mel"),
        (["train", *TINY, "--layers", "3", "--stacks", "2", "--out", str(tmp_path / "r")], "equal stacks"),
        (["train", *TINY, "--crop", "10000000", "--out", str(tmp_path / "r")], "shorter crop"),
        (["train", "--model", "pixelcnn", "--data", "mnist-sample", "--crop", "400", "--out", str(tmp_path / "r")],
         "--crop"),
    ]
    for argv, expected in cases:
        bad(argv, capsys, expected)
    assert precious.read_bytes() == b"precious" and (tmp_path / "pic.png").read_bytes() == b"precious too"
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "o.png").exists()
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------ data speech
def test_data_speech_without_espeak_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    bad(["data", "speech", "--out", str(tmp_path / "corpus")], capsys, "apt-get install espeak-ng")
    assert not (tmp_path / "corpus").exists()


def test_data_speech_without_flite_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    bad(["data", "speech", "--engine", "flite", "--out", str(tmp_path / "corpus")], capsys,
        "flite is not installed: apt-get install flite")
    assert not (tmp_path / "corpus").exists()


def test_data_speech_never_overwrites(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("mine")
    bad(["data", "speech", "--out", str(tmp_path / "full")], capsys, "not an empty folder")
    assert (tmp_path / "full" / "mine.txt").read_text() == "mine"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_data_speech_builds_a_corpus_that_loads_as_wav_dir(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("Good morning.\nThe rain stopped.\nSee you soon.\n")
    out = tmp_path / "corpus"
    assert main(["data", "speech", "--out", str(out), "--voices", "en-us,en-gb-scotland", "--sentences",
                 str(tmp_path / "s.txt"), "--test-every", "3", "--sample-rate", "8000", "--no-progress"]) == 0
    assert f"wav:{out}" in capsys.readouterr().out
    from pixelwave.data import load

    test = load(f"wav:{out}", "test", sample_rate=8000, crop=800)
    assert test.speakers == ["en-us", "en-gb-scotland"] and test.texts == ["See you soon."] * 2


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")
def test_data_speech_flite_with_an_unseen_voice(tmp_path, capsys):
    (tmp_path / "s.txt").write_text("Good morning.\nThe rain stopped.\nSee you soon.\n")
    out = tmp_path / "corpus"
    assert main(["data", "speech", "--engine", "flite", "--voices", "slt,awb", "--test-voices", "kal16",
                 "--sentences", str(tmp_path / "s.txt"), "--test-every", "3", "--no-progress", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "flite voices (slt, awb, kal16) (unseen, test only: kal16)" in said and f"wav:{out}" in said
    from pixelwave.data import load

    test = load(f"wav:{out}", "test", crop=800)
    assert test.speakers == ["slt", "awb", "kal16"] and test.texts == ["See you soon."] * 3
    assert sorted(p.name for p in out.iterdir()) == ["awb", "kal16", "metadata.json", "slt"]


# ------------------------------------------------------------------------------------------------ speech scores
@pytest.fixture(scope="module")
def flite_vocoder(tmp_path_factory):
    """A tiny mel WaveNet trained 2 steps on flite-sample (speaker-conditional): its scores are poor by design."""
    out = tmp_path_factory.mktemp("flite") / "vocoder"
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--no-progress",
                 "--eval-every", "0", "--steps", "2", "--mel", "--samples", "1", "--sample-seconds", "1",
                 "--out", str(out)]) == 0
    return out


def test_training_logs_speech_scores_of_re_spoken_clips(flite_vocoder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(flite_vocoder / "tb"), size_guidance={"audio": 0}).Reload()
    voices = ["slt", "rms", "awb", "kal16"]
    assert sorted(events.Tags()["audio"]) == sorted([f"samples/{v}" for v in voices] +
                                                    [f"recordings/{v}" for v in voices])
    (mcd,) = events.Scalars("speech/mcd_db")
    assert 1 < mcd.value < 50 and mcd.step == 2  # an untrained model: far from its recordings
    if importlib.util.find_spec("pystoi") is not None:
        (stoi,) = events.Scalars("speech/stoi")
        assert -1 <= stoi.value < 0.8


speech_extra = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("pocketsphinx", "pystoi", "jiwer")),
    reason="the speech-eval extra is not installed (pip install pixelwave[speech-eval])")


@speech_extra
def test_eval_scores_a_vocoder_per_voice(flite_vocoder, capsys, tmp_path, monkeypatch):
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-utterances", "1",
                 "--speech-out", str(tmp_path / "wavs")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "bits/sample" in out[0] and out[2].split() == ["voice", "utts", "seconds", "STOI", "MCD", "dB", "WER",
                                                          "rec", "WER", "re-spoken"]
    assert [line.split()[0] for line in out[3:]] == ["slt", "rms", "awb", "kal16", "mean"]
    assert len(list((tmp_path / "wavs").glob("*.wav"))) == 8
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-utterances", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    scores = result["speech_scores"]
    assert set(scores["voices"]) == {"slt", "rms", "awb", "kal16"} and scores["utterances_per_voice"] == 1
    assert set(scores["mean"]) == {"stoi", "mcd_db", "wer_recording", "wer_resynthesis"}
    assert scores["mean"]["wer_recording"] < 0.5 and scores["voices"]["kal16"]["texts"]
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--no-speech-scores", "--json"]) == 0
    assert "speech_scores" not in json.loads(capsys.readouterr().out)
    # --speech-seed draws the re-spoken utterances anew (the recordings stay)
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-utterances", "1", "--json",
                 "--speech-seed", "1000", "--speech-out", str(tmp_path / "other")]) == 0
    other = json.loads(capsys.readouterr().out)["speech_scores"]
    assert other["seed"] == 1000
    differ = {f.name: f.read_bytes() != (tmp_path / "other" / f.name).read_bytes()
              for f in (tmp_path / "wavs").glob("*.wav")}
    assert len(differ) == 8 and sum(differ.values()) == 4, differ  # the four re-spoken, not the four recordings
    # --speech-draws 2: the draws of seeds 0 and 1000 in one report, and their means
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-utterances", "1", "--json",
                 "--speech-draws", "2", "--speech-out", str(tmp_path / "both")]) == 0
    report = json.loads(capsys.readouterr().out)
    both = report["speech_scores"]
    assert both["draws"] == 2 and both["seeds"] == [0, 1000]
    for name, v in both["voices"].items():
        one, two = scores["voices"][name], other["voices"][name]
        for key in ("stoi", "mcd_db", "wer_resynthesis"):
            assert [d[key] for d in v["draws"]] == [one[key], two[key]], (name, key)
            assert v[key] == pytest.approx((one[key] + two[key]) / 2)
        assert v["wer_recording"] == one["wer_recording"] and v["heard_resynthesis"] == one["heard_resynthesis"]
    assert both["mean"]["mcd_db"] == pytest.approx((scores["mean"]["mcd_db"] + other["mean"]["mcd_db"]) / 2)
    assert (tmp_path / "both" / "awb-1-draw2.wav").read_bytes() == (tmp_path / "other" / "awb-1.wav").read_bytes()
    assert len(list((tmp_path / "both").glob("*.wav"))) == 12
    # a pretrained model's card (tools/pretrained.py) keeps each draw beside the means
    tool_file = Path(__file__).resolve().parents[1] / "tools" / "pretrained.py"
    spec = importlib.util.spec_from_file_location("pretrained_tool", tool_file)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "run", lambda command, capture=False: json.dumps(report))
    card = {"eval_command": "pixelwave eval pretrained:vocoder --data flite-sample --speech-draws 2"}
    tool.score(card, pw.load(flite_vocoder))
    kept = card["speech_scores"]
    assert kept["draws"] == 2 and kept["seeds"] == [0, 1000] and kept["data"] == "flite-sample"
    for name, v in both["voices"].items():
        assert kept["voices"][name]["wer_resynthesis"] == round(v["wer_resynthesis"], 4)
        assert [d["seed"] for d in kept["voices"][name]["draws"]] == [0, 1000]
        assert [d["wer_resynthesis"] for d in kept["voices"][name]["draws"]] == [
            round(d["wer_resynthesis"], 4) for d in v["draws"]]
    # eval without a recognizer reports no WER: the card keeps None rather than failing to round it
    for v in report["speech_scores"]["voices"].values():
        v["wer_recording"] = v["wer_resynthesis"] = None
        for d in v["draws"]:
            d["wer_resynthesis"] = None
    tool.score(card, pw.load(flite_vocoder))
    assert all(v["wer_recording"] is None and v["stoi"] is not None and v["draws"][0]["wer_resynthesis"] is None
               for v in card["speech_scores"]["voices"].values())
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-utterances", "1",
                 "--speech-draws", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "means of 2 draws, seeds 0, 1000" in table[1] and table[2].endswith("WER per draw")
    assert len(table[3].split()) == 9  # slt's seven columns and its two draws' WER
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-draws", "0"]) == 2
    assert "--speech-draws" in capsys.readouterr().err


def test_eval_without_the_speech_extra_says_how_to_install(flite_vocoder, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # as if not installed: `import` raises ImportError
    monkeypatch.setitem(sys.modules, "pystoi", None)
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--speech-utterances", "1"]) == 0
    captured = capsys.readouterr()
    assert "bits/sample" in captured.out and "STOI" not in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "pip install 'pixelwave[speech-eval]'" in err[0] and "Traceback" not in captured.err
    assert main(["eval", str(flite_vocoder), "--data", "flite-sample", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speech_scores"] is None and "speech-eval" in result["speech_scores_note"]


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")
def test_say_renders_text_with_the_front_end_then_the_vocoder(flite_vocoder, tmp_path, capsys):
    """flite speaks, its log-mel frames drive the WaveNet: the output is as long as flite's rendering in whole
    mel frames, and a speaker-conditional vocoder is conditioned on the voice when it knows it."""
    from pixelwave.data.speech import synthesise

    out = tmp_path / "say.wav"
    assert main(["say", "Hello.", "--voice", "awb", "--model", str(flite_vocoder), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "speaker awb" in said and "flite's awb" in said and out.with_suffix(".png").is_file()
    front = synthesise("Hello.", "awb", sample_rate=16000)
    hop = json.loads((flite_vocoder / "data.json").read_text())["hop_length"]
    assert sf.info(str(out)).frames == -(-len(front) // hop) * hop
    bad(["say", "Hello.", "--voice", "awb", "--model", str(flite_vocoder), "--out", str(out)], capsys, "--force")
    bad(["say", "  ", "--voice", "awb", "--model", str(flite_vocoder), "--out", str(tmp_path / "e.wav")], capsys,
        "empty")
    bad(["say", "Hi.", "--voice", "nobody", "--engine", "flite", "--model", str(flite_vocoder), "--out",
         str(tmp_path / "n.wav")], capsys, "flite has no voice nobody")
    # espeak-ng's voice is not among the vocoder's speakers: it must be told which speaker to use
    bad(["say", "Hi.", "--voice", "en-gb", "--model", str(flite_vocoder), "--out", str(tmp_path / "g.wav")], capsys,
        "pass --speaker")


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")
def test_say_takes_the_shipped_vocoder_that_knows_the_voice(tmp_path, capsys):
    """Without --model, `say` re-speaks a voice pretrained:vocoder was trained on with it, and any other voice with
    the speaker-independent pretrained:vocoder-lpc (saying so); --model overrides."""
    from pixelwave import pretrained
    from pixelwave.cli.audio import default_say_model

    known = pretrained.trained_voices("pretrained:vocoder")
    assert known == ["slt", "rms", "awb"] and pretrained.trained_voices("pretrained:vocoder-lpc") is None
    assert default_say_model("awb") == "pretrained:vocoder" and capsys.readouterr().out == ""
    assert default_say_model("kal16") == "pretrained:vocoder-lpc"
    assert "pretrained:vocoder was trained on slt, rms, awb only" in capsys.readouterr().out
    out = tmp_path / "k.wav"
    assert main(["say", "Hi.", "--voice", "kal16", "--out", str(out), "--threads", "1"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("vocoder: pretrained:vocoder-lpc") and "flite's kal16" in said and out.is_file()
    assert main(["say", "Hi.", "--voice", "awb", "--out", str(tmp_path / "a.wav"), "--threads", "1"]) == 0
    assert not capsys.readouterr().out.startswith("vocoder:")
