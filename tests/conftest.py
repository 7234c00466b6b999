import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a stray hub download must fail fast


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


# Property tests draw the same examples on every run, so a CI result is reproducible;
# HYPOTHESIS_PROFILE=explore draws new ones to hunt for bugs.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
