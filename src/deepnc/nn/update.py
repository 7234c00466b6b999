"""The tensor work of one sub-centroid update, as functions of tensors: the cosines of
samples to their own class's sub-centroids, the assignment of samples to sub-centroids
(balanced by Sinkhorn), the sums of the samples in each (class slot, sub-centroid) cell,
the momentum move, and the re-seeding of dead sub-centroids.
:meth:`SubCentroidBank.step <deepnc.SubCentroidBank.step>` strings them together."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnc.nn.grouping import chunk_by_class, class_counts
from deepnc.nn.sinkhorn import sinkhorn_segments

__all__ = ["assign", "cell_sums", "move", "own_class_scores", "reseed_dead"]


def own_class_scores(
    features: torch.Tensor, labels: torch.Tensor, subcentroids: torch.Tensor
) -> torch.Tensor:
    """``(M, K)`` cosine of each feature ``(M, D)`` to the K sub-centroids of its own class
    (``labels`` ``(M,)``, ``subcentroids`` ``(C, K, D)``).

    Costs ``M * K * D`` (one batched matmul over same-class chunks of the features), not
    the ``M * C * K * D`` of scoring every class.
    """
    chunks = chunk_by_class(labels, subcentroids.shape[0])
    padded = chunks.pad(features.float())  # (R, width, D)
    scores = torch.bmm(padded, subcentroids[chunks.row_class].transpose(1, 2))
    return scores[chunks.row, chunks.column]


def assign(
    rule: str,
    scores: torch.Tensor,
    ids: torch.Tensor,
    num_ids: int,
    *,
    eps: float,
    iterations: int,
    random_draws: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(M,)`` int64 sub-centroid of each sample within its class.

    Args:
        rule: ``"sinkhorn"`` (balanced within each id, the method), ``"nearest"`` or
            ``"random"`` (the ablations; see :class:`~deepnc.SubCentroidBank`).
        scores: ``(M, K)`` fp32 cosine of each sample to its class's sub-centroids.
        ids: ``(M,)`` int64 in ``[0, num_ids)``: the groups balanced separately.
        eps, iterations: the entropy weight and rounds of the Sinkhorn solver.
        random_draws: ``(M,)`` int64 random integers, for ``"random"``.
    """
    if rule == "sinkhorn":
        assignments, _ = sinkhorn_segments(scores, ids, num_ids, eps=eps, iterations=iterations)
        return assignments
    if rule == "nearest":
        return scores.argmax(dim=1)
    if random_draws is None:
        raise ValueError("the random assignment needs random_draws")
    return random_draws % scores.shape[1]


def cell_sums(
    features: torch.Tensor,
    ids: torch.Tensor,
    assignments: torch.Tensor,
    num_slots: int,
    num_k: int,
    rows_per_slot: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sums (S, K, D) fp32, counts (S, K) int64)`` of the samples in each cell.

    Args:
        features: ``(M, D)``.
        ids: ``(M,)`` int64 class slot of each sample in ``[0, S]`` (``S``: left out).
        assignments: ``(M,)`` int64 sub-centroid of each within its class, in ``[0, K)``.
        num_slots, num_k: S and K.
        rows_per_slot: L > 0 when the samples come slot by slot, L rows each: the sums
            are then one batched matmul over one-hot assignments instead of a scatter,
            which compiled CPU code would run as per-element atomic adds.
    """
    dim = features.shape[1]
    if rows_per_slot:
        used = (ids < num_slots).view(num_slots, rows_per_slot, 1)
        # (not F.one_hot, which checks its input's range on the host)
        choices = torch.arange(num_k, device=ids.device)
        one_hot = (assignments.view(num_slots, rows_per_slot, 1) == choices) & used  # (S, L, K)
        stored = features.float().view(num_slots, rows_per_slot, dim)
        with torch.autocast(features.device.type, enabled=False):  # fp32 under autocast
            sums = torch.bmm(one_hot.transpose(1, 2).float(), stored)
        return sums, one_hot.sum(dim=1)
    cells = ids * num_k + assignments  # (M,) in [0, (S + 1) K); the last K are discarded
    num_cells = num_slots * num_k
    sums = torch.zeros(num_cells + num_k, dim, device=features.device)
    sums.index_add_(0, cells, features.float())
    counts = class_counts(cells, num_cells + num_k)[:num_cells]
    return sums[:num_cells].view(num_slots, num_k, dim), counts.view(num_slots, num_k)


def move(
    current: torch.Tensor,
    sums: torch.Tensor,
    counts: torch.Tensor,
    momentum: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows (S, K, D), moved (S, K) bool)``: ``p <- normalise(mu p + (1 - mu) mean)``
    for every sub-centroid that received a sample.

    Args:
        current: ``(S, K, D)`` the slots' unit sub-centroids.
        sums, counts: ``(S, K, D)`` and ``(S, K)`` of :func:`cell_sums`.
        momentum: mu, a float or ``(S, 1, 1)`` per class.
    """
    means = F.normalize(sums, dim=-1)
    blend = momentum * current + (1 - momentum) * means
    # A mean exactly opposite its sub-centroid can cancel it: keep the old one then.
    length = blend.norm(dim=-1, keepdim=True)
    moved = (counts > 0).unsqueeze(-1) & torch.isfinite(length) & (length > 1e-6)
    rows = torch.where(moved, blend / length.clamp(min=1e-12), current)
    return rows, moved.squeeze(-1)


def reseed_dead(
    rows: torch.Tensor,
    features: torch.Tensor,
    ids: torch.Tensor,
    scores: torch.Tensor,
    counts: torch.Tensor,
    steps_since_used: torch.Tensor,
    dead_after: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, steps_since_used)`` after the sub-centroids unused for ``dead_after``
    updates are moved onto poorly fitted samples of their class.

    Args:
        rows: ``(S, K, D)`` the slots' sub-centroids after this update.
        features: ``(M, D)`` the update's samples; ``ids`` ``(M,)`` their class slots
            (``S`` for left-out samples, which sort last); ``scores`` ``(M, K)`` their
            cosines to their class's sub-centroids.
        counts: ``(S, K)`` this update's samples per sub-centroid.
        steps_since_used: ``(S, K)`` int64 consecutive updates without a sample, before
            this one. Only classes with at least K samples judge their sub-centroids.
    """
    num_slots, num_k = counts.shape
    sizes = class_counts(ids, num_slots + 1)[:num_slots]
    eligible = (sizes >= num_k).unsqueeze(1)  # (S, 1)
    unused = (counts == 0) & eligible
    since = torch.where(unused, steps_since_used + 1, torch.where(eligible, 0, steps_since_used))
    dead = since >= dead_after
    # Computed every step and kept only where a sub-centroid is dead, so that the step
    # never asks the host whether one is. A sample fits poorly when even its best
    # sub-centroid is far from it. Order the samples by slot, worst fitted first (one
    # integer sort: the slot in the high bits, the fit quantised to 2**-30 in the low
    # ones); the j-th dead sub-centroid of a class takes the j-th worst sample of it.
    fit = scores.float().amax(dim=1).clamp(-1.0, 1.0)
    quantised = ((fit.double() + 1.0) * 2**30).long()  # [0, 2**31]
    order = torch.argsort(ids * 2**32 + quantised, stable=True)
    starts = torch.cumsum(sizes, dim=0) - sizes
    rank = (dead.cumsum(dim=1) - 1).clamp(min=0)
    rank = torch.minimum(rank, (sizes - 1).clamp(min=0).unsqueeze(1))
    position = (starts.unsqueeze(1) + rank).clamp(max=ids.numel() - 1)
    fresh = F.normalize(features[order[position]].float(), dim=-1)  # (S, K, D)
    return torch.where(dead.unsqueeze(-1), fresh, rows), since.masked_fill(dead, 0)
