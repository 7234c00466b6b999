"""Balanced assignment of samples to sub-centroids by Sinkhorn-Knopp.

DNC assigns the features of one class to its K sub-centroids by solving an
entropy-regularised transport problem on the *transportation polytope*: every
sample carries mass 1/N and every sub-centroid receives mass 1/K (equipartition).
Equipartition is what stops all sub-centroids of a class from collapsing onto one
mode. This module solves many such problems at once, one per class, padded to a
common number of samples and masked, in the log domain so that small ``eps`` never
overflows.
"""

from __future__ import annotations

import math

import torch

from deepnc.nn import defaults
from deepnc.nn.grouping import class_counts
from deepnc.utils.validate import check_positive_float, check_positive_int

__all__ = ["sinkhorn", "sinkhorn_segments"]


def sinkhorn(
    scores: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    eps: float = defaults.SINKHORN_EPS,
    iterations: int = defaults.SINKHORN_ITERATIONS,
    return_plan: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Balanced hard assignment of samples to sub-centroids, for a batch of problems.

    Solves, for each problem ``b`` independently,
    ``max_Q <Q, S_b> + eps * H(Q)`` subject to ``Q 1_K = 1/N_b`` and ``Q^T 1_N = 1/K``,
    with a few log-domain Sinkhorn-Knopp iterations (each one normalises the
    sub-centroid marginals, then the sample marginals), and returns the hard
    assignment ``argmax_k Q[n, k]`` of every valid sample.

    Args:
        scores: ``(B, N, K)`` or ``(N, K)`` similarities (cosines, in [-1, 1] for DNC)
            between N samples and K sub-centroids, for B independent problems.
        mask: ``(B, N)`` or ``(N,)`` bool, True where a sample is real and False where
            it is padding. Default: every sample is real. A problem may have no real
            sample at all; its plan is all zeros.
        eps: entropy weight (> 0). Smaller is closer to the exact transport
            problem and needs more iterations.
        iterations: number of Sinkhorn-Knopp iterations (>= 1).
        return_plan: also return the soft transport plan.

    Returns:
        ``assignments``: ``(B, N)`` (or ``(N,)``) int64 sub-centroid index of each
        sample, ``-1`` at padding. With ``return_plan=True``, a tuple
        ``(assignments, plan)`` where ``plan`` is ``(B, N, K)`` (or ``(N, K)``),
        float, zero at padding, each problem's total mass 1: after the last
        iteration every real row sums to ``1/N_b`` and every column to about ``1/K``.

    Example:
        >>> scores = torch.tensor([[0.9, 0.8], [0.9, 0.1]])  # both prefer sub-centroid 0
        >>> sinkhorn(scores, iterations=50).tolist()  # the less attached one goes to 1
        [1, 0]
    """
    check_positive_float("eps", eps)
    check_positive_int("iterations", iterations)
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating point tensor, got {_describe(scores)}")
    unbatched = scores.dim() == 2
    if scores.dim() not in (2, 3):
        raise ValueError(f"scores must have shape (N, K) or (B, N, K), got {tuple(scores.shape)}")
    if unbatched:
        scores = scores.unsqueeze(0)
    batch, num_samples, num_clusters = scores.shape
    if num_clusters == 0:
        raise ValueError("scores must have at least one sub-centroid (K >= 1), got K = 0")
    if mask is None:
        mask = torch.ones(batch, num_samples, dtype=torch.bool, device=scores.device)
    else:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        if unbatched:
            mask = mask.unsqueeze(0)
        if mask.shape != (batch, num_samples):
            raise ValueError(
                f"mask must have shape {(batch, num_samples)} to match scores, "
                f"got {tuple(mask.shape)}"
            )

    segments = torch.arange(batch, device=scores.device).unsqueeze(1).expand_as(mask)[mask]
    flat_assignments, flat_plan = sinkhorn_segments(
        scores[mask], segments, batch, eps=eps, iterations=iterations
    )
    plan = flat_plan.new_zeros(batch, num_samples, num_clusters)
    plan[mask] = flat_plan
    assignments = torch.full_like(mask, -1, dtype=torch.long)
    assignments[mask] = flat_assignments
    if unbatched:
        assignments, plan = assignments.squeeze(0), plan.squeeze(0)
    return (assignments, plan) if return_plan else assignments


def sinkhorn_segments(
    scores: torch.Tensor,
    segments: torch.Tensor,
    num_segments: int,
    *,
    eps: float = defaults.SINKHORN_EPS,
    iterations: int = defaults.SINKHORN_ITERATIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same balanced assignment for problems given flat, one segment id per sample.

    This is the form the sub-centroid update uses: classes of very different sizes
    cost their samples only, where a padded layout costs classes x largest class.

    Args:
        scores: ``(M, K)`` similarity of each sample to the K sub-centroids of its problem.
        segments: ``(M,)`` int64 problem of each sample, in ``[0, num_segments)``.
        num_segments: number of problems (some may have no sample).
        eps, iterations: as :func:`sinkhorn`.

    Returns:
        ``(assignments (M,) int64, plan (M, K) float)``; each problem's plan sums to 1.
    """
    check_positive_float("eps", eps)
    check_positive_int("iterations", iterations)
    dtype = torch.promote_types(scores.dtype, torch.float32)  # never iterate in fp16/bf16
    num_clusters = scores.shape[1]
    sizes = class_counts(segments, num_segments).clamp(min=1).to(dtype)
    log_row_mass = -sizes.log()[segments].unsqueeze(1)  # log(1/N_b) of each sample, (M, 1)
    log_col_mass = -math.log(num_clusters)
    log_q = scores.to(dtype) / eps
    for _ in range(iterations):
        column = _segment_logsumexp(log_q, segments, num_segments)  # (num_segments, K)
        log_q = log_q - column[segments] + log_col_mass
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) + log_row_mass
    plan = log_q.exp()
    return plan.argmax(dim=1), plan


def _segment_logsumexp(values: torch.Tensor, segments: torch.Tensor, num_segments: int):
    """``(S, K)`` logsumexp of the rows of ``values`` ``(M, K)`` in each segment."""
    index = segments.unsqueeze(1).expand_as(values)
    peak = values.new_full((num_segments, values.shape[1]), -math.inf)
    peak = peak.scatter_reduce(0, index, values, reduce="amax", include_self=True)
    peak = torch.where(torch.isfinite(peak), peak, 0.0)  # empty segments
    total = values.new_zeros(num_segments, values.shape[1])
    total.index_add_(0, segments, (values - peak[segments]).exp())
    return peak + total.log()


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype}"
    return type(value).__name__
