"""What a sub-centroid bank has learnt, for logging and for spotting collapse."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["BankDiagnostics", "diagnose"]


@dataclass(frozen=True)
class BankDiagnostics:
    """What the bank has learnt, for logging and for spotting collapse.

    Attributes:
        initialised: ``(C,)`` bool, classes whose sub-centroids were seeded.
        assigned: ``(C, K)`` int64 samples assigned to each sub-centroid since the last
            :meth:`SubCentroidBank.reset_statistics`.
        occupancy: ``(C, K)`` the same as fractions of the class's samples (rows sum to
            1; NaN for a class with none).
        intra_class_cosine: ``(C,)`` mean cosine between distinct sub-centroids of a
            class (1.0 means collapsed onto one vector; NaN for K = 1 or unseeded).
        correct_fraction: ``(C,)`` fraction of the class's samples seen by updates that
            the model classified correctly (NaN for a class never seen).
        overall_correct_fraction: the same over all classes (NaN before any update).
    """

    initialised: torch.Tensor
    assigned: torch.Tensor
    occupancy: torch.Tensor
    intra_class_cosine: torch.Tensor
    correct_fraction: torch.Tensor
    overall_correct_fraction: float


def diagnose(
    subcentroids: torch.Tensor,
    initialised: torch.Tensor,
    assigned: torch.Tensor,
    seen: torch.Tensor,
    correct: torch.Tensor,
) -> BankDiagnostics:
    """Occupancy, intra-class similarity and accuracy from a bank's buffers
    (``SubCentroidBank.diagnostics()`` passes its own).

    Args:
        subcentroids: ``(C, K, D)`` unit rows; ``initialised``: ``(C,)`` bool.
        assigned: ``(C, K)`` int64 samples per sub-centroid.
        seen, correct: ``(C,)`` int64 samples seen by updates, and correctly classified.
    """
    assigned = assigned.clone()
    total = assigned.sum(dim=1, keepdim=True)
    occupancy = assigned.double() / total.double()
    gram = subcentroids @ subcentroids.transpose(1, 2)  # (C, K, K)
    num_k = subcentroids.shape[1]
    off_diagonal = gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=1)
    intra = off_diagonal / (num_k * (num_k - 1)) if num_k > 1 else gram[:, 0, 0] * torch.nan
    intra = torch.where(initialised, intra, torch.nan)
    seen_count, correct_count = seen.double(), correct.double()
    any_seen = int(seen.sum())
    overall = float(correct_count.sum() / seen_count.sum()) if any_seen else float("nan")
    return BankDiagnostics(
        initialised=initialised.clone(),
        assigned=assigned,
        occupancy=occupancy,
        intra_class_cosine=intra,
        correct_fraction=correct_count / seen_count,
        overall_correct_fraction=overall,
    )
