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

from deepnc._validate import check_positive_float, check_positive_int

__all__ = ["sinkhorn"]


def sinkhorn(
    scores: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    eps: float = 0.05,
    iterations: int = 3,
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
        >>> scores = torch.tensor([[0.9, 0.8], [0.8, 0.7]])  # both prefer sub-centroid 0
        >>> sinkhorn(scores, iterations=50).tolist()  # balance sends one of them to 1
        [0, 1]
    """
    check_positive_float("eps", eps)
    check_positive_int("iterations", iterations)
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating point tensor, got {_describe(scores)}")
    unbatched = scores.dim() == 2
    if scores.dim() not in (2, 3):
        raise ValueError(
            f"scores must have shape (N, K) or (B, N, K), got {tuple(scores.shape)}"
        )
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

    plan = _log_plan(scores, mask, eps, iterations).exp() * mask.unsqueeze(-1)
    assignments = plan.argmax(dim=-1).masked_fill(~mask, -1)
    if unbatched:
        assignments, plan = assignments.squeeze(0), plan.squeeze(0)
    return (assignments, plan) if return_plan else assignments


def _log_plan(
    scores: torch.Tensor, mask: torch.Tensor, eps: float, iterations: int
) -> torch.Tensor:
    """Log of the Sinkhorn plan, ``(B, N, K)``; padded rows hold finite junk."""
    dtype = torch.promote_types(scores.dtype, torch.float32)  # never iterate in fp16/bf16
    num_clusters = scores.shape[-1]
    valid = mask.unsqueeze(-1)
    samples_per_problem = mask.sum(dim=1, keepdim=True).clamp(min=1).to(dtype)  # (B, 1)
    log_row_mass = -samples_per_problem.log().unsqueeze(-1)  # log(1/N_b), (B, 1, 1)
    log_col_mass = -math.log(num_clusters)

    # Padded rows stay finite (0) so that no -inf - -inf ever appears; they are
    # excluded from every column sum and zeroed in the returned plan.
    log_q = torch.where(valid, scores.to(dtype) / eps, 0.0)
    for _ in range(iterations):
        column = torch.logsumexp(log_q.masked_fill(~valid, -math.inf), dim=1, keepdim=True)
        column = torch.where(torch.isfinite(column), column, 0.0)  # empty problems
        log_q = log_q - column + log_col_mass
        log_q = log_q - torch.logsumexp(log_q, dim=2, keepdim=True) + log_row_mass
    return log_q


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype}"
    return type(value).__name__
