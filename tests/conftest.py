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
