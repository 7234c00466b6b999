"""Snap sub-centroids to real training images: the paper's "ad-hoc explainability".

Every sub-centroid p_ck is matched with the most similar training sample of class c
(by default a distinct sample per sub-centroid of a class). The match can then replace
the sub-centroid, so the classifier decides by its distance to actual training images.

>>> from torch.nn.functional import normalize
>>> subcentroids = normalize(torch.tensor([[[1.0, 0], [0, 1]]]), dim=-1)  # C=1, K=2, D=2
>>> features = normalize(torch.tensor([[1.0, 0.1], [0.9, 0.2], [0.1, 1]]), dim=-1)
>>> snap_subcentroids(subcentroids, features, torch.tensor([0, 0, 0])).indices.tolist()
[[0, 2]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from deepnc.nn.head import DNCHead

__all__ = [
    "SnapResult",
    "apply_snap",
    "own_class_occupancy",
    "snap_subcentroids",
    "subcentroid_similarity",
]


@dataclass
class SnapResult:
    """The training sample behind every sub-centroid.

    Attributes:
        indices: ``(C, K)`` int64 positions in the embedded dataset; -1 for a sub-centroid
            that has no match (an unseeded class, or fewer samples than K when distinct).
        similarity: ``(C, K)`` cosine between the sub-centroid and its sample (NaN for -1).
    """

    indices: torch.Tensor
    similarity: torch.Tensor

    def to_json(self) -> dict:
        return {"indices": self.indices.tolist(), "similarity": self.similarity.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> SnapResult:
        return cls(torch.tensor(data["indices"]), torch.tensor(data["similarity"]))


def snap_subcentroids(
    subcentroids: torch.Tensor,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    distinct: bool = True,
) -> SnapResult:
    """Find, for every (class, sub-centroid), its most similar training sample of that class.

    Args:
        subcentroids: ``(C, K, D)`` unit vectors (zeros for an unseeded class).
        features: ``(N, D)`` unit embeddings of the training set.
        labels: ``(N,)`` their classes.
        distinct: give the K sub-centroids of a class K different samples, chosen to
            maximise their total similarity (an exact assignment); otherwise each takes
            its own nearest sample, duplicates allowed.

    Returns:
        :class:`SnapResult`.
    """
    subcentroids, features, labels = (
        subcentroids.detach().cpu(),
        features.detach().cpu(),
        labels.cpu(),
    )
    num_classes, num_subcentroids, _ = subcentroids.shape
    indices = torch.full((num_classes, num_subcentroids), -1, dtype=torch.long)
    similarity = torch.full((num_classes, num_subcentroids), float("nan"))
    for cls in range(num_classes):  # one matrix product per class; C is small next to N
        members = torch.nonzero(labels == cls).flatten()
        seeded = subcentroids[cls].norm(dim=-1) > 0
        if members.numel() == 0 or not bool(seeded.any()):
            continue
        scores = subcentroids[cls].float() @ features[members].float().T  # (K, N_c)
        scores[~seeded] = float("-inf")
        if not distinct:
            best, where = scores.max(dim=1)
            rows = torch.nonzero(seeded).flatten()
            indices[cls, rows] = members[where[rows]]
            similarity[cls, rows] = best[rows]
            continue
        # The best distinct assignment uses, for each row, one of its top-K columns.
        top = min(num_subcentroids, members.numel())
        candidates = scores[seeded].topk(top, dim=1).indices.flatten().unique()
        block = scores[seeded][:, candidates]
        rows, columns = linear_sum_assignment(block.numpy(), maximize=True)
        seeded_rows = torch.nonzero(seeded).flatten()[torch.as_tensor(rows)]
        chosen = candidates[torch.as_tensor(columns)]
        indices[cls, seeded_rows] = members[chosen]
        similarity[cls, seeded_rows] = block[torch.as_tensor(rows), torch.as_tensor(columns)]
    return SnapResult(indices, similarity)


@torch.no_grad()
def apply_snap(head: DNCHead, features: torch.Tensor, result: SnapResult) -> None:
    """Replace each matched sub-centroid of ``head`` by its training sample's embedding.

    Sub-centroids without a match (index -1) keep their value.
    """
    matched = result.indices >= 0
    if not bool(matched.any()):
        raise ValueError("no sub-centroid has a matching training sample: nothing to snap")
    bank = head.bank.subcentroids
    replacement = features.detach()[result.indices.clamp_min(0)].to(bank)
    bank.copy_(torch.where(matched.to(bank.device).unsqueeze(-1), replacement, bank))


def own_class_occupancy(
    subcentroids: torch.Tensor, features: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """``(C, K)`` int64: how many samples of a class have each of its sub-centroids nearest."""
    subcentroids, features, labels = (
        subcentroids.detach().cpu(),
        features.detach().cpu(),
        labels.cpu(),
    )
    num_classes, num_subcentroids, _ = subcentroids.shape
    counts = torch.zeros(num_classes, num_subcentroids, dtype=torch.long)
    for start in range(0, len(labels), 8192):
        chunk = slice(start, start + 8192)
        own = subcentroids[labels[chunk]].float()  # (n, K, D)
        scores = torch.einsum("nkd,nd->nk", own, features[chunk].float())
        nearest = scores.argmax(dim=1)
        counts.index_put_((labels[chunk], nearest), torch.ones_like(nearest), accumulate=True)
    return counts


def subcentroid_similarity(subcentroids: torch.Tensor) -> torch.Tensor:
    """``(C,)`` mean pairwise cosine between the distinct sub-centroids of each class.

    Near 1 means the K sub-centroids of a class collapsed onto one another.
    """
    subcentroids = subcentroids.detach().cpu()
    num_subcentroids = subcentroids.shape[1]
    if num_subcentroids < 2:
        return torch.full((subcentroids.shape[0],), float("nan"))
    gram = subcentroids.float() @ subcentroids.float().transpose(1, 2)
    off_diagonal = ~torch.eye(num_subcentroids, dtype=torch.bool)
    return gram[:, off_diagonal].mean(dim=1)
