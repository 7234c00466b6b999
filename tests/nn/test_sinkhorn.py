import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepnc.nn import sinkhorn


def random_scores(*shape, generator=None):
    return torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1


def test_marginals_are_uniform_after_enough_iterations():
    scores = random_scores(40, 5)
    _, plan = sinkhorn(scores, eps=0.05, iterations=500, return_plan=True)
    assert plan.sum().item() == pytest.approx(1.0, abs=1e-9)
    # every sample carries 1/N, every sub-centroid receives 1/K
    assert torch.allclose(plan.sum(1) * 40, torch.ones(40, dtype=plan.dtype), atol=1e-3)
    assert torch.allclose(plan.sum(0) * 5, torch.ones(5, dtype=plan.dtype), atol=1e-3)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_plan_matches_pot(seed, eps):
    generator = torch.Generator().manual_seed(seed)
    n, k = 12 + seed, 3 + seed % 3
    scores = random_scores(n, k, generator=generator)
    _, plan = sinkhorn(scores, eps=eps, iterations=3000, return_plan=True)
    reference = ot.sinkhorn(
        np.full(n, 1 / n),
        np.full(k, 1 / k),
        -scores.numpy(),
        reg=eps,
        numItermax=100_000,
        stopThr=1e-13,
    )
    np.testing.assert_allclose(plan.numpy(), reference, atol=1e-6)


def test_batched_equals_each_problem_alone_and_padding_changes_nothing():
    generator = torch.Generator().manual_seed(1)
    sizes = [7, 1, 0, 12, 3]
    k, width = 4, 15
    problems = [random_scores(n, k, generator=generator) for n in sizes]
    padded = torch.zeros(len(sizes), width, k, dtype=torch.float64)
    mask = torch.zeros(len(sizes), width, dtype=torch.bool)
    for b, problem in enumerate(problems):
        # padding is put in the middle too and filled with junk: it must be ignored
        rows = torch.randperm(width, generator=generator)[: len(problem)].sort().values
        padded[b] = 123.0
        padded[b, rows] = problem
        mask[b, rows] = True
    assignments, plan = sinkhorn(padded, mask, iterations=5, return_plan=True)
    for b, problem in enumerate(problems):
        alone, alone_plan = sinkhorn(problem, iterations=5, return_plan=True)
        assert torch.equal(assignments[b][mask[b]], alone)
        assert torch.allclose(plan[b][mask[b]], alone_plan, atol=1e-12)
        assert (assignments[b][~mask[b]] == -1).all()
        assert (plan[b][~mask[b]] == 0).all()


@pytest.mark.parametrize("eps", [0.01, 0.02, 0.05])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_nan_for_cosine_scores_with_small_eps(eps, dtype):
    scores = random_scores(3, 200, 10).to(dtype)
    scores[0, :, 0] = 1.0  # extreme and tied values
    scores[1] = -1.0
    assignments, plan = sinkhorn(scores, eps=eps, iterations=10, return_plan=True)
    assert torch.isfinite(plan).all()
    assert plan.dtype == torch.float32  # never iterates in low precision
    assert ((assignments >= 0) & (assignments < 10)).all()


def test_balance_spreads_samples_that_all_prefer_one_subcentroid():
    # Every sample prefers sub-centroid 0; nearest assignment would collapse onto it.
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.85, 0.0, 0.3]] * 4)
    assignments = sinkhorn(scores, eps=0.05, iterations=50)
    assert torch.bincount(assignments, minlength=3).tolist() == [4, 4, 4]


def test_default_three_iterations_already_balance_well():
    generator = torch.Generator().manual_seed(3)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=generator), dim=1)
    samples = torch.nn.functional.normalize(torch.randn(400, 16, generator=generator), dim=1)
    assignments = sinkhorn(samples @ centres.T)
    counts = torch.bincount(assignments, minlength=4)
    assert counts.min() >= 60  # 100 each when perfectly balanced


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(eps=0.0), ValueError, "eps"),
        (dict(eps=-1.0), ValueError, "eps"),
        (dict(eps=math.nan), ValueError, "eps"),
        (dict(iterations=0), ValueError, "iterations"),
        (dict(iterations=1.5), TypeError, "iterations"),
    ],
)
def test_bad_hyper_parameters_name_themselves(kwargs, error, words):
    with pytest.raises(error, match=words):
        sinkhorn(torch.rand(4, 2), **kwargs)


def test_bad_inputs_are_rejected():
    with pytest.raises(TypeError, match="scores"):
        sinkhorn(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="scores"):
        sinkhorn(torch.rand(4))
    with pytest.raises(ValueError, match="K >= 1"):
        sinkhorn(torch.rand(4, 0))
    with pytest.raises(ValueError, match="mask"):
        sinkhorn(torch.rand(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        sinkhorn(torch.rand(2, 4, 3), torch.ones(2, 4))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    width=st.integers(0, 20),
    k=st.integers(1, 6),
    eps=st.floats(0.01, 1.0),
    iterations=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_properties_on_random_shapes(batch, width, k, eps, iterations, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = random_scores(batch, width, k, generator=generator).float()
    mask = torch.rand(batch, width, generator=generator) < 0.7
    assignments, plan = sinkhorn(scores, mask, eps=eps, iterations=iterations, return_plan=True)
    assert assignments.shape == (batch, width) and plan.shape == (batch, width, k)
    assert torch.isfinite(plan).all() and (plan >= 0).all()
    assert torch.equal(assignments == -1, ~mask)
    assert ((assignments[mask] >= 0) & (assignments[mask] < k)).all()
    # the last half-step normalises samples: each real row carries exactly 1/N_b
    counts = mask.sum(1, keepdim=True).clamp(min=1)
    row_mass = plan.sum(-1) * counts
    assert torch.allclose(row_mass[mask], torch.ones_like(row_mass[mask]), atol=1e-4)
    # hard assignments are the argmax of the plan
    chosen = plan.gather(-1, assignments.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert torch.all(chosen[mask] >= plan.amax(-1)[mask] - 1e-7)
