"""Hypothesis explores new random examples on every local run (that is how it finds bugs: one MaskedConv2d edge
case surfaced this way). CI loads the "ci" profile (HYPOTHESIS_PROFILE=ci, set by .ci/run): the same examples on
every run, derived from each test, so a commit that passed once does not fail CI by chance."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
