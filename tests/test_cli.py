"""The command line end to end: train -> eval -> sample -> complete, and bad input -> one line, exit code 2."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixelwave as pw
from pixelwave.cli import main

TINY = ["--preset", "tiny", "--no-progress", "--eval-every", "0", "--samples", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    rc = main(["train", "--model", "gated_pixelcnn", "--data", "mnist-sample-binary", "--steps", "3",
               "--out", str(out), *TINY])
    assert rc == 0
    return out


def test_train_writes_a_loadable_run(run_dir):
    model = pw.load(run_dir)
    assert model.model_name == "gated_pixelcnn" and model.num_classes == 10 and model.levels == 2
    info = json.loads((run_dir / "data.json").read_text())
    assert info["size"] == [28, 28] and info["num_classes"] == 10
    assert len(info["class_counts"]) == 10 and sum(info["class_counts"]) == 4500  # the training split's labels


def test_eval_json(run_dir, capsys):
    assert main(["eval", str(run_dir), "--data", "mnist-sample-binary", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 500 and 0 < result["bits_per_dim"] < 2


def test_sample_grid_one_row_per_class(run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "-n", "10", "--out", str(out), "--scale", "1"]) == 0
    img = Image.open(out)
    assert img.size == (2 + 1 * 30, 2 + 10 * 30)  # 10 rows (classes) of 1 sample, 28 px + 2 px padding
    assert main(["sample", str(run_dir), "-n", "4", "--class", "3", "--out", str(tmp_path / "g3.png")]) == 0


def test_complete_keeps_the_top_half(run_dir, tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:14, 10:18] = 255
    Image.fromarray(digit).save(tmp_path / "in.png")
    out = tmp_path / "done.png"
    rc = main(["complete", str(run_dir), "--image", str(tmp_path / "in.png"), "--keep", "top-half", "--class", "1",
               "-n", "2", "--out", str(out), "--scale", "1"])
    assert rc == 0
    grid = np.array(Image.open(out))  # original | kept | 2 completions, 2 px padding
    panels = [grid[2:30, 2 + k * 30: 30 + k * 30] for k in range(4)]
    for completion in panels[2:]:
        assert np.array_equal(completion[:14], digit[:14])
    mask = np.zeros((28, 28), dtype=np.uint8)
    mask[:, :7] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    rc = main(["complete", str(run_dir), "--image", str(tmp_path / "in.png"), "--keep", str(tmp_path / "mask.png"),
               "--class", "1", "-n", "1", "--out", str(tmp_path / "m.png")])
    assert rc == 0


def test_complete_without_class_draws_it_from_the_posterior(run_dir, tmp_path, capsys):
    from pixelwave.posterior import class_posterior

    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    Image.fromarray(digit).save(tmp_path / "in.png")
    argv = ["--image", str(tmp_path / "in.png"), "--keep", "top-half", "-n", "3", "--scale", "1"]
    assert main(["complete", str(run_dir), *argv, "--out", str(tmp_path / "done.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("p(class | kept part) with a prior of the training labels: ")
    top = [(name, float(p)) for name, p in re.findall(r"(\S+) \((\d\.\d+)\)", lines[0].split(": ", 1)[1])]
    counts = torch.tensor(json.loads((run_dir / "data.json").read_text())["class_counts"], dtype=torch.float64)
    keep = torch.zeros(28, 28, dtype=torch.bool)
    keep[:14] = True
    x = torch.from_numpy(digit // 255).long()[None, None]  # (1, 1, 28, 28)
    posterior = class_posterior(pw.load(run_dir), x, keep, counts)[0]
    assert [name for name, _ in top] == [str(k) for k in posterior.argsort(descending=True)[:3].tolist()]
    assert [p for _, p in top] == pytest.approx(posterior.sort(descending=True).values[:3].tolist(), abs=5e-4)
    assert lines[1].startswith("completing under classes drawn from it: ") and len(lines[1].split(",")) == 3
    grid = np.array(Image.open(tmp_path / "done.png"))  # original | kept | 3 completions, 2 px padding
    for k in (2, 3, 4):
        assert np.array_equal(grid[2:16, 2 + k * 30: 30 + k * 30], digit[:14])

    # A run from before the label counts were recorded: a uniform prior, and a note that says so.
    old = tmp_path / "old-run"
    shutil.copytree(run_dir, old)
    info = json.loads((old / "data.json").read_text())
    del info["class_counts"]
    (old / "data.json").write_text(json.dumps(info))
    assert main(["complete", str(old), *argv, "--out", str(tmp_path / "old.png")]) == 0
    out = capsys.readouterr().out
    assert "note:" in out and "with a uniform prior: " in out
    # Any other kept part: the posterior would not be exact, so the class must be given.
    err = bad(["complete", str(run_dir), "--image", str(tmp_path / "in.png"), "--keep", "left-half",
               "--out", str(tmp_path / "left.png")], capsys)
    assert "--class" in err and "raster order" in err


def test_receptive_field_figure(tmp_path, capsys):
    out = tmp_path / "rf.png"
    assert main(["receptive-field", "--model", "pixelcnn,gated_pixelcnn", "--layers", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    pixelcnn_line, gated_line = [line for line in text.splitlines() if "blind spot" in line]
    assert "blind spot: 0" not in pixelcnn_line and gated_line.endswith("blind spot: 0")
    assert Image.open(out).size[0] > 300


def bad(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("pixelwave: error:"), err
    assert "Traceback" not in err
    return err


def test_bad_input_one_line_exit_2(run_dir, tmp_path, capsys):
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "cfg.json").write_text(json.dumps({"hidden": 8, "no_such_flag": 1}))
    (tmp_path / "cfg_type.json").write_text(json.dumps({"hidden": "wide"}))
    grid = str(tmp_path / "x.png")
    cases = [
        (["train", "--model", "nope", "--data", "mnist-sample", "--out", str(tmp_path / "r")], "nope"),
        (["train", "--model", "pixelcnn", "--data", "nope", "--out", str(tmp_path / "r")], "unknown data"),
        (["train", "--model", "pixelcnn", "--data", f"images:{tmp_path / 'empty'}", "--out", str(tmp_path / "r")],
         "empty"),
        (["train", "--model", "pixelcnn", "--data", "mnist-sample", "--config", str(tmp_path / "cfg.json")],
         "no_such_flag"),
        (["train", "--model", "pixelcnn", "--data", "mnist-sample", "--config", str(tmp_path / "cfg_type.json")],
         "hidden"),
        (["train", "--model", "pixelcnn", "--data", "mnist-sample", "--hidden", "-3"], "hidden"),
        (["sample", str(run_dir), "--class", "12", "--out", grid], "out of range"),
        (["sample", str(tmp_path), "--out", grid], "not a pixelwave checkpoint"),
        (["sample", str(tmp_path / "missing"), "--out", grid], "no such"),
        (["eval", str(run_dir), "--data", "mnist-sample"], "levels"),
        (["complete", str(run_dir), "--image", str(tmp_path / "garbage.png"), "--keep", "top-half", "--class", "1",
          "--out", grid], "not a readable image"),
        (["complete", str(run_dir), "--image", str(tmp_path / "small.png"), "--keep", "top-half", "--class", "1",
          "--out", grid], "10x10"),
        (["receptive-field", "--model", "wavenet", "--layers", "3", "--out", grid], "wavenet"),
    ]
    for argv, expected in cases:
        err = bad(argv, capsys)
        assert expected in err, (argv, err)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "r").exists()


def test_nothing_is_overwritten(run_dir, tmp_path, capsys):
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    err = bad(["train", "--model", "gated_pixelcnn", "--data", "mnist-sample-binary", "--out", str(run_dir),
               *TINY], capsys)
    assert "--resume" in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"precious")
    bad(["sample", str(run_dir), "-n", "2", "--out", str(existing)], capsys)
    assert existing.read_bytes() == b"precious"


def test_console_script_exit_code(tmp_path):
    """The installed entry point, in a real process: one line on stderr, exit 2, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    r = subprocess.run([sys.executable, "-m", "pixelwave", "eval", str(tmp_path), "--data", "mnist-sample"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_resume_takes_the_saved_model_sizes(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--model", "pixelcnn", "--data", "mnist-sample-binary", "--out", str(out), *TINY]
    assert main([*base, "--hidden", "6", "--steps", "2"]) == 0
    assert main([*base, "--steps", "4", "--resume"]) == 0  # sizes come from the run, not the preset
    model = pw.load(out)
    assert model.config.hidden == 6
    assert json.loads(next(out.glob("checkpoints/step-000004/state.json")).read_text())["step"] == 4
    err = bad([*base, "--hidden", "12", "--steps", "6", "--resume"], capsys)
    assert "--resume" in err


def commands_of(prefix: list[str], capsys) -> list[str]:
    """The commands under `prefix`, as argparse names them for an unknown one (none: a command, not a group)."""
    main([*prefix, "no-such-command"])
    found = re.search(r"invalid choice: 'no-such-command' \(choose from (.*)\)", capsys.readouterr().err)
    return re.findall(r"'([^']+)'", found.group(1)) if found else []


def help_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_every_command_help_ends_with_an_example(capsys):
    from pixelwave.cli import build_parser

    top = commands_of([], capsys)
    assert {"train", "eval", "sample", "complete", "generate", "data", "compare"} <= set(top)
    paths = [[c] for c in top] + [["data", c] for c in commands_of(["data"], capsys)]
    assert ["data", "speech"] in paths
    for path in paths:
        lines = help_of(path, capsys).rstrip().splitlines()
        example = lines[-1].strip()
        assert lines[-2] == "example:" and example.startswith(f"pixelwave {' '.join(path)} "), (path, lines[-2:])
        build_parser().parse_args(shlex.split(example)[1:])  # the example is a valid command line
        if path not in (["data"], ["verify"]):  # these run no torch: building a parser, hashing files
            assert "--threads" in "\n".join(lines), path


def test_overview_with_help_and_without_arguments(capsys):
    text = help_of([], capsys)
    assert text.rstrip().splitlines()[-1].strip().startswith("pixelwave ")
    for command in commands_of([], capsys):
        assert re.search(rf"^  {command} .*\n +pixelwave {command} ", text, re.M), command  # what it does, an example
    assert main([]) == 2  # no command: argparse's usage error, with the overview as the usage
    out, err = capsys.readouterr()
    assert out == "" and err == text


def test_threads_default_by_the_machine_and_threads_overrides(tmp_path, monkeypatch):
    from pixelwave import runtime
    from pixelwave.cli import images

    seen = []
    monkeypatch.setattr(images, "cmd_receptive_field", lambda args, parser: seen.append(torch.get_num_threads()) or 0)
    monkeypatch.setattr(runtime, "default_threads", lambda: 3)
    before = torch.get_num_threads()
    argv = ["receptive-field", "--model", "pixelcnn", "--layers", "2", "--out", str(tmp_path / "rf.png")]
    assert main(argv) == 0 and main([*argv, "--threads", "2"]) == 0
    assert seen == [3, 2] and torch.get_num_threads() == before  # set for the command, then as it was
