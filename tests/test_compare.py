"""`pixelwave compare`: equal parameter counts, one training loop, the seed's table."""

import argparse
import json

import pytest
import torch

from pixelwave.compare import add_compare_arguments, matched_model, run_compare
from pixelwave.data import load
from pixelwave.errors import UserError


@pytest.fixture(autouse=True)
def one_thread():
    """run_compare is called here without `main`, which sets the threads: tiny models on one, as in test_train.py
    (2 threads on busy shared cores can be many times slower, and these runs have a time budget)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def args(*argv):
    p = argparse.ArgumentParser()
    add_compare_arguments(p)
    return p.parse_args(list(argv))


def test_models_are_sized_to_the_same_parameter_count():
    data = load("mnist-sample-binary", "test")
    for name in ("pixelcnn", "gated_pixelcnn", "pixelvae", "pixelsnail"):
        model = matched_model(name, data, 20_000)
        n = sum(p.numel() for p in model.parameters())
        assert 0.7 * 20_000 < n < 1.3 * 20_000, (name, n)


def test_compare_writes_the_table_curves_and_grids(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = run_compare(args("--models", "pixelcnn,gated_pixelcnn", "--budget-minutes", "0.01", "--params", "3000",
                          "--batch-size", "8", "--out", str(out)))
    assert rc == 0
    table = (out / "table.md").read_text().splitlines()
    assert table[0].startswith("| model | NLL test (bits/dim)") and len(table) == 4
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["model"] for r in results] == ["pixelcnn", "gated_pixelcnn"]
    for r in results:
        assert 0 < r["bits_per_dim"] < 1.5 and r["steps"] >= 1 and r["images_per_second"] > 0
        assert "test/bits_per_dim" in r["curves"]
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert (out / "samples_pixelcnn.png").is_file() and (out / "samples_gated_pixelcnn.png").is_file()
    assert "table.md" in capsys.readouterr().out
    with pytest.raises(UserError, match="exists"):
        run_compare(args("--models", "pixelcnn", "--out", str(out)))


@pytest.mark.parametrize("argv, message", [
    (("--models", "wavenet"), "not an image model"),
    (("--models", "pixelcnn,pixelcnn"), "once"),
    (("--budget-minutes", "0"), "budget"),
    (("--data", "speech-sample"), "image data"),
])
def test_bad_compare_input(tmp_path, argv, message):
    with pytest.raises(UserError, match=message):
        run_compare(args(*argv, "--out", str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
