"""Models shipped in the package: `pretrained:NAME` loads and scores as its card says, in the library and every
command that takes a checkpoint; unknown names and writes to a shipped model are refused in one line."""

import fnmatch
import hashlib
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import torch

import pixelwave as pw
from pixelwave import checkpoint, pretrained
from pixelwave.cli import main
from pixelwave.errors import UserError

NAME = "mnist-gated"
CKPT = f"pretrained:{NAME}"


def bad(argv, capsys) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def fingerprint() -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in pretrained.ROOT.rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


def test_the_image_model_is_shipped():
    assert NAME in pretrained.names()
    folder = pretrained.path(NAME)
    assert {"config.json", "model.safetensors", "data.json", "card.json"} <= {p.name for p in folder.iterdir()}
    assert pretrained.size_on_disk(NAME) < 2_000_000


def test_every_card_is_complete():
    for name in pretrained.names():
        card = pretrained.card(name)  # raises naming any missing field
        model = pw.load(pretrained.PREFIX + name)
        assert card["name"] == name and card["model"] == model.model_name
        assert card["parameters"] == sum(p.numel() for p in model.parameters())
        words = shlex.split(card["train_command"])
        words = words[next(i for i, w in enumerate(words) if "=" not in w):]
        assert words[:2] == ["pixelwave", "train"] and "--out" in words, card["train_command"]
        assert shlex.split(card["eval_command"])[:3] == ["pixelwave", "eval", pretrained.PREFIX + name]
        assert card["data"] in card["train_command"] or "--preset" in card["train_command"]
        # held out from the training data, or (a corpus built for training: data_command) the embedded test split
        assert card["heldout"]["data"] == card["data"] or card.get("data_command")
        assert card["heldout"]["split"] == "test"
        assert card["heldout"]["metric"] in ("bits/dim", "bits/sample") and card["heldout"]["value"] > 0
        assert card["training_seconds"] > 0 and card["steps"] > 0 and card["heldout"]["examples"] > 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", card["date"])
        assert card["machine"]["cpu"] and card["machine"]["threads"] >= 1


def test_load_scores_test_images_near_the_card():
    """A few hundred held-out digits score within 10% of the card's figure (measured on the whole split)."""
    card = pretrained.card(NAME)
    model = pw.load(CKPT)
    assert model.model_name == "gated_pixelcnn" and model.levels == 2 and model.num_classes == 10
    test = pw.data.load(card["data"], split="test")
    batch = test.batch(torch.arange(200))
    with torch.no_grad():
        bpd = pw.bits_per_dim(model.log_prob(batch["x"], batch["y"]), test.dims).item()
    assert abs(bpd - card["heldout"]["value"]) < 0.1 * card["heldout"]["value"], (bpd, card["heldout"])


def test_every_loader_resolves_the_name():
    assert checkpoint.read_config(CKPT)["model"] == "gated_pixelcnn"
    a, b = checkpoint.load(CKPT), pw.load(pretrained.path(NAME))
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_unknown_name_is_one_line_listing_the_shipped_ones(tmp_path, capsys):
    with pytest.raises(ValueError) as e:
        pw.load("pretrained:nope")
    assert NAME in str(e.value) and "nope" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, UserError)
    for argv in (["sample", "pretrained:nope", "-n", "2", "--out", str(tmp_path / "x.png")],
                 ["eval", "pretrained:nope", "--data", "mnist-sample-binary"],
                 ["generate", "pretrained:nope", "--out", str(tmp_path / "x.wav")],
                 ["pretrained", "nope"]):
        assert NAME in bad(argv, capsys), argv
    assert not list(tmp_path.iterdir())


def test_cli_commands_take_pretrained_names(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["sample", CKPT, "-n", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    digit = tmp_path / "digit.png"
    test = pw.data.load("mnist-sample-binary", split="test")
    from PIL import Image

    Image.fromarray((test.batch(torch.tensor([0]))["x"][0, 0] * 255).to(torch.uint8).numpy()).save(digit)
    assert main(["complete", CKPT, "--image", str(digit), "--keep", "top-half", "--class", "7", "-n", "1",
                 "--out", str(tmp_path / "c.png")]) == 0
    capsys.readouterr()
    assert main(["eval", CKPT, "--data", "mnist-sample-binary", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    card = pretrained.card(NAME)
    assert result["examples"] == card["heldout"]["examples"] and result["checkpoint"] == CKPT
    assert result["bits_per_dim"] == pytest.approx(card["heldout"]["value"], rel=1e-3)
    assert "image" in bad(["generate", CKPT, "--out", str(tmp_path / "speech.wav")], capsys)  # resolved, refused


def test_pretrained_command_lists_and_prints_the_card(capsys):
    card = pretrained.card(NAME)
    assert main(["pretrained"]) == 0
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if line.startswith(CKPT))
    assert "gated_pixelcnn" in row and f"{card['heldout']['value']:.4f} bits/dim" in row and " MB" in row
    assert main(["pretrained", NAME]) == 0
    text = capsys.readouterr().out
    assert card["train_command"] in text and card["eval_command"] in text and card["machine"]["cpu"] in text
    assert main(["pretrained", NAME, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == card
    with pytest.raises(SystemExit) as done:
        main(["pretrained", "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].strip().startswith("pixelwave pretrained ")


def test_shipped_models_cannot_be_written(tmp_path, capsys):
    before = fingerprint()
    model = pw.load(CKPT)
    for target in (CKPT, "pretrained:new", pretrained.path(NAME), pretrained.ROOT / "new"):
        with pytest.raises(UserError, match="read-only"):
            pw.save(model, target)
    for out in (CKPT, "pretrained:new", str(pretrained.path(NAME))):
        err = bad(["train", "--preset", "tiny", "--model", "gated_pixelcnn", "--data", "mnist-sample-binary",
                   "--out", out, "--overwrite"], capsys)
        assert "read-only" in err
    assert fingerprint() == before and not (pretrained.ROOT / "new").exists()
    assert not Path("pretrained:new").exists() and not Path(CKPT).exists()


def test_the_wheel_carries_the_shipped_files():
    """pyproject's package-data matches every shipped file, as it does the embedded data."""
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["pixelwave"]
    package = pretrained.ROOT.parent
    for name in pretrained.names():
        for file in pretrained.path(name).iterdir():
            relative = file.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_the_vocoder_re_speaks_a_held_out_recording(tmp_path, capsys):
    """pretrained:vocoder: the issue's recipe (categorical, --pitch, pre-emphasis, --cond-hidden), drawn at its
    card's temperature, probability floor and draw shaping; its card holds the speech scores it was measured with
    (every voice, the unseen kal16 too), trained in <= 2 hours on 2 threads: STOI >= 0.85 on the three training
    voices, WER <= the recording's + 0.15 on slt and rms (awb: 0.015 over, on the mean of four draws). It re-speaks a
    held-out flite-sample sentence."""
    import soundfile as sf

    from pixelwave.data.audio import FLITE_SAMPLE

    card = pretrained.card("vocoder")
    model = pw.load("pretrained:vocoder")
    assert model.num_speakers is None and model.config.output == "categorical" and model.config.pitch
    assert model.cond_channels == model.config.mel_bands + 4 == 84 and model.config.cond_hidden == 128
    assert pretrained.temperature("pretrained:vocoder") == card["temperature"] == 0.7
    assert pretrained.probability_floor("pretrained:vocoder") == card["probability_floor"] == 0.002
    assert pretrained.probability_floor("pretrained:vocoder-lpc") == 0.0
    assert pretrained.draw_shaping("pretrained:vocoder") == card["draw_shaping"] == 1
    assert pretrained.draw_shaping("pretrained:vocoder-lpc") == 0
    assert pretrained.size_on_disk("vocoder") <= 10_000_000
    assert card["training_seconds"] <= 2 * 3600 and card["machine"]["threads"] == 2  # the issue: <= 2 hours
    scores = card["speech_scores"]
    assert set(scores["voices"]) == {"slt", "rms", "awb", "kal16"} and scores["temperature"] == 0.7
    assert scores["probability_floor"] == 0.002 and scores["draw_shaping"] == 1
    assert scores["draws"] == 4 and scores["seeds"] == [0, 1000, 2000, 3000]  # the means of four draws
    assert all(0 < v["stoi"] <= 1 and v["utterances"] == scores["utterances_per_voice"]
               for v in scores["voices"].values())
    for v in scores["voices"].values():
        assert [d["seed"] for d in v["draws"]] == scores["seeds"]
        assert v["wer_resynthesis"] == pytest.approx(sum(d["wer_resynthesis"] for d in v["draws"]) / 4, abs=1e-4)
    for voice in ("slt", "rms", "awb"):  # STOI meets the goal; WER for slt and rms (awb: 0.212 on these 8
        v = scores["voices"][voice]        # sentences against 0.197; 0.27 on flite-alice's 42: docs/results.md)
        assert v["stoi"] >= 0.85, (voice, v)
        assert voice == "awb" or v["wer_resynthesis"] <= v["wer_recording"] + 0.15, (voice, v)
    out = tmp_path / "re.wav"
    assert main(["resynthesize", "pretrained:vocoder", "--input", str(FLITE_SAMPLE / "awb" / "012.flac"),
                 "--seconds", "0.5", "--out", str(out), "--threads", "1"]) == 0
    assert "0.50 s at 16000 Hz" in capsys.readouterr().out and sf.info(str(out)).frames == 8000


def test_the_lpc_vocoder_is_shipped_for_other_voices():
    """pretrained:vocoder-lpc: speaker-independent, mel-conditioned, LPCNet-style (at the card's temperature 0.7:
    at 1 its LPC filter makes the output too loud); its card's scores include the unseen voice kal16."""
    card = pretrained.card("vocoder-lpc")
    model = pw.load("pretrained:vocoder-lpc")
    assert model.num_speakers is None and model.cond_channels == 80 and model.config.output == "lpc_mixture"
    assert pretrained.temperature("pretrained:vocoder-lpc") == card["temperature"] == 0.7
    assert set(card["speech_scores"]["voices"]) == {"slt", "rms", "awb", "kal16"}
    assert "pretrained:vocoder" in card["description"]
