"""A slow, straightforward per-class sub-centroid update, for tests and benchmarks only.

It loops over the classes in Python and solves each class's Sinkhorn problem alone.
:meth:`deepnc.nn.bank.SubCentroidBank.update` must give the same result (the tests
check it) while batching every class into one problem set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnc.nn import defaults
from deepnc.nn.sinkhorn import sinkhorn

__all__ = ["per_class_update"]


@torch.no_grad()
def per_class_update(
    subcentroids: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    momentum: float,
    scores: torch.Tensor | None = None,
    eps: float = defaults.SINKHORN_EPS,
    iterations: int = defaults.SINKHORN_ITERATIONS,
) -> torch.Tensor:
    """Momentum update of every class present, one class at a time.

    Args:
        subcentroids: ``(C, K, D)`` unit sub-centroids (all classes seeded).
        features: ``(M, D)`` unit features, all correctly classified.
        labels: ``(M,)`` int64 classes.
        scores: ``(M, K)`` cosine of each feature to its class's sub-centroids, when
            the caller has it (the head's forward does); computed otherwise.

    Returns:
        The updated ``(C, K, D)`` sub-centroids (a new tensor).
    """
    updated = subcentroids.clone()
    for cls in torch.unique(labels).tolist():
        members = features[labels == cls]
        own = members @ subcentroids[cls].T if scores is None else scores[labels == cls]
        assignments = sinkhorn(own, eps=eps, iterations=iterations)
        for k in range(subcentroids.shape[1]):
            assigned = members[assignments == k]
            if len(assigned):
                mean = F.normalize(assigned.sum(dim=0), dim=0)
                moved = momentum * subcentroids[cls, k] + (1 - momentum) * mean
                updated[cls, k] = F.normalize(moved, dim=0)
    return updated
