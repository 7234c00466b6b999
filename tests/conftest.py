import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a stray hub download must fail fast


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
