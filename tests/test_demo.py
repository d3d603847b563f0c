"""`make demo` end to end, shortened: a few seconds of training, then every picture and sound from the shipped
models. What is checked is that each step ran and wrote its files; what they show is docs/results.md's."""

import shutil

import soundfile as sf

from pixelwave import demo


def test_the_demo_writes_every_picture_and_sound(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--train-seconds", "2", "--seconds", "0.05"]) == 0
    said = capsys.readouterr().out
    assert "test" in said and "bits/dim" in said  # the short training run ends with its held-out figure
    assert "p(class | kept part)" in said  # the second completion draws its class from the posterior
    for name in ("samples.png", "completion_0.png", "completion_1.png", "receptive_field.png", "vocoder.wav",
                 "vocoder.png", "speech/en-us.wav", "speech/en-gb-scotland.png"):
        assert (out / name).is_file(), name
    assert (out / "gated_pixelcnn" / "model.safetensors").is_file()
    assert sf.info(str(out / "speech" / "en-gb.wav")).frames == 800
    assert sf.info(str(out / "vocoder.wav")).duration > 2  # a whole held-out sentence, re-spoken
    assert (out / "say.wav").is_file() == (shutil.which("flite") is not None)
