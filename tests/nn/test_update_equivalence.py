"""The sync-free update reaches the buffers v0.1's update reached, in every mode.

``update_scenarios.py`` says how the reference file was made. Integer buffers (counts,
steps since used, update counts, memory pointers) must be equal, float ones (the
sub-centroids, the memories) within 1e-5.
"""

import pytest
import torch
from safetensors.torch import load_file

from helpers.update_scenarios import GOLDEN, SCENARIOS, run


@pytest.fixture(scope="module")
def golden():
    return load_file(GOLDEN)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_update_reaches_v0_1s_buffers(golden, name):
    reached = run(name)
    expected = {k: v for k, v in golden.items() if k.startswith(f"{name}/")}
    assert sorted(reached) == sorted(expected)
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(reached[key], value, atol=1e-5, rtol=0, msg=key)
        else:
            assert torch.equal(reached[key], value), key
