"""Every image model through the same CLI: train -> eval -> sample, plus PixelVAE's reconstruct and bound."""

import json

import pytest
from PIL import Image

import pixelwave as pw
from pixelwave.cli import main

TINY = ["--preset", "tiny", "--no-progress", "--eval-every", "0", "--samples", "0", "--steps", "2"]


@pytest.mark.parametrize("model", ["pixelcnn_pp", "pixelrnn_row", "pixelrnn_diag", "pixelvae", "pixelsnail"])
def test_every_image_model_trains_evaluates_and_samples(model, tmp_path, capsys):
    out = tmp_path / model
    extra = ["--latent-stride", "4"] if model == "pixelvae" else []
    assert main(["train", "--model", model, "--data", "mnist-sample-binary", "--out", str(out), *TINY, *extra]) == 0
    assert pw.load(out).model_name == model
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "mnist-sample-binary", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bound"] == (model == "pixelvae") and 0 < result["bits_per_dim"] < 5
    assert main(["sample", str(out), "-n", "2", "--class", "3", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size[0] > 28


def test_pixelvae_eval_says_bound_and_reconstructs(tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train", "--model", "pixelvae", "--data", "mnist-sample-binary", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--data", "mnist-sample-binary"]) == 0
    assert "upper bound" in capsys.readouterr().out
    assert main(["reconstruct", str(out), "--data", "mnist-sample-binary", "-n", "3", "--out",
                 str(tmp_path / "r.png"), "--scale", "1"]) == 0
    assert Image.open(tmp_path / "r.png").size == (2 + 3 * 30, 2 + 2 * 30)
    other = tmp_path / "pcnn"
    assert main(["train", "--model", "pixelcnn", "--data", "mnist-sample-binary", "--out", str(other), *TINY]) == 0
    capsys.readouterr()
    assert main(["reconstruct", str(other), "--data", "mnist-sample-binary", "--out", str(tmp_path / "x.png")]) == 2
    assert "pixelvae" in capsys.readouterr().err


def test_flags_of_other_models_are_refused(tmp_path, capsys):
    rc = main(["train", "--model", "pixelrnn_row", "--data", "mnist-sample-binary", "--kernel-size", "5",
               "--out", str(tmp_path / "r"), *TINY])
    assert rc == 2 and "--kernel-size does not apply" in capsys.readouterr().err
    rc = main(["receptive-field", "--model", "pixelvae", "--layers", "2", "--out", str(tmp_path / "rf.png")])
    assert rc == 2
    # a preset's kernel size for the image models is simply not used by a model without one
    assert main(["train", "--model", "pixelrnn_diag", "--data", "mnist-sample-binary", "--out", str(tmp_path / "d"),
                 *TINY, "--preset", "demo", "--hidden", "6", "--layers", "1"]) == 0


def test_receptive_field_of_every_causal_model(tmp_path, capsys):
    out = tmp_path / "rf.png"
    assert main(["receptive-field", "--model", "pixelcnn,gated_pixelcnn,pixelrnn_row,pixelrnn_diag,pixelcnn_pp,"
                 "pixelsnail", "--layers", "2", "--hidden", "8", "--size", "9", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "blind spot" in line]
    assert len(lines) == 6
    assert lines[3].endswith("blind spot: 0")  # Diagonal BiLSTM: every earlier pixel
    assert lines[5].endswith("sees 49 earlier pixels; blind spot: 0")  # PixelSNAIL: attention reads them all


def test_compare_on_the_cli(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "pixelrnn_row,pixelcnn", "--budget-minutes", "0.005", "--params", "2000",
                 "--batch-size", "4", "--out", str(out)]) == 0
    assert "| pixelrnn_row |" in (out / "table.md").read_text()


def test_time_limit_stops_training_and_saves(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "pixelcnn", "--data", "mnist-sample-binary", "--out", str(out), *TINY]
    assert main([*argv[:-2], "--steps", "50", "--time-limit", "1e-6"]) == 0
    assert "--time-limit" in capsys.readouterr().out
    steps = [p.name for p in (out / "checkpoints").iterdir()]
    assert steps == ["step-000001"] and pw.load(out).model_name == "pixelcnn"
