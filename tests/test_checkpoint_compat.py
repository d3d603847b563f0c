"""Checkpoints saved by release 0.1.0 (tests/fixtures/checkpoints-0.1.0, made by make_release_checkpoints.py at
commit 0ff27b5) still load, through pw.load and the CLI's path, and give the log-likelihoods that release gave.
They have no manifest.json: each load says, in one warning, that it was not verified."""

import json
from pathlib import Path

import pytest
import torch

import pixelwave as pw
from pixelwave.checkpoint import UnverifiedCheckpoint

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE = FIXTURES / "checkpoints-0.1.0"
EXPECTED = json.loads((RELEASE / "expected.json").read_text())


def _maker():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_release_checkpoints",
                                                  FIXTURES / "make_release_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_release_checkpoint_loads_and_scores_the_same(name):
    with pytest.warns(UnverifiedCheckpoint, match=f"{name} has no manifest.json .*without verification"):
        model = pw.load(RELEASE / name).double()
    batch = _maker().inputs(name, model)
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    torch.manual_seed(1)
    with torch.no_grad():
        got = model.log_prob(**batch)
    torch.testing.assert_close(got, torch.tensor(EXPECTED[name], dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_a_changed_weight_changes_the_score():
    """The comparison above can fail: the same checkpoint with one weight moved scores differently."""
    model = pw.load(RELEASE / "gated_pixelcnn", verify=False).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    batch = _maker().inputs("gated_pixelcnn", model)
    with torch.no_grad():
        got = model.log_prob(**batch)
    assert not torch.allclose(got, torch.tensor(EXPECTED["gated_pixelcnn"], dtype=torch.float64))
