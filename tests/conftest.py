"""Hypothesis explores new random examples on every local run (that is how it finds bugs: one MaskedConv2d edge
case surfaced this way). CI loads the "ci" profile (HYPOTHESIS_PROFILE=ci, set by .ci/run): the same examples on
every run, derived from each test, so a commit that passed once does not fail CI by chance."""

import os

import pytest
import torch
from hypothesis import settings

from pixelwave import runtime

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def one_thread(monkeypatch):
    """Tiny models on one thread, in torch and in the commands (`runtime.default_threads`): two contending for a
    shared 2-core machine can be many times slower."""
    monkeypatch.setattr(runtime, "default_threads", lambda: 1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_vocoder(tmp_path):
    """(run folder, wav): a tiny mel-conditioned categorical WaveNet trained one step on flite-sample, and a
    quarter second of a 150 Hz sine to re-speak: what the draw options' command-line tests need."""
    import numpy as np

    from pixelwave import audio
    from pixelwave.cli import main

    out = tmp_path / "vocoder"
    assert main(["train", "--model", "wavenet", "--data", "flite-sample", "--preset", "tiny", "--no-progress",
                 "--eval-every", "0", "--steps", "1", "--samples", "0", "--mel", "--unconditional", "--threads", "1",
                 "--out", str(out)]) == 0
    wav = tmp_path / "in.wav"
    t = np.arange(4000) / 16000
    audio.write_wav(wav, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    return out, wav
