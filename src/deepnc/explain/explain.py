""" "This looks like that": the evidence behind every prediction of a DNC model.

For each input: the predicted class and its score, and for the top few classes the
nearest sub-centroid, its cosine similarity and the training sample behind it (its
exemplar, see :mod:`deepnc.explain.snap`); plus the k nearest training samples overall
when the embeddings of the training set are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from deepnc.explain.embeddings import Embeddings, embed_batch, find_dnc_head
from deepnc.explain.snap import SnapResult

__all__ = ["ClassEvidence", "Explanation", "Neighbour", "explain_batch"]


@dataclass
class ClassEvidence:
    """Why class ``label`` scored what it did for one input.

    Attributes:
        label: class index.
        score: the class score s_c = max_k cos(x, p_ck), in [-1, 1].
        subcentroid: k of the nearest sub-centroid of the class.
        similarity: cos(x, p_ck) of that sub-centroid (equals ``score``).
        exemplar: index in the training set of the sample behind the sub-centroid, or -1.
        exemplar_similarity: cos(p_ck, exemplar); 1 for a snapped model.
    """

    label: int
    score: float
    subcentroid: int
    similarity: float
    exemplar: int = -1
    exemplar_similarity: float = float("nan")


@dataclass
class Neighbour:
    """One of the k training samples nearest to an input."""

    index: int
    label: int
    similarity: float


@dataclass
class Explanation:
    """The evidence for one input. ``classes[0]`` is the predicted class."""

    predicted: int
    score: float
    classes: list[ClassEvidence]
    neighbours: list[Neighbour] = field(default_factory=list)

    @property
    def exemplar(self) -> int:
        """Training index of the exemplar behind the prediction (-1 if unknown)."""
        return self.classes[0].exemplar


@torch.no_grad()
def explain_batch(
    model: nn.Module,
    images: torch.Tensor,
    *,
    exemplars: SnapResult | None = None,
    train: Embeddings | None = None,
    top_classes: int = 3,
    neighbours: int = 5,
) -> list[Explanation]:
    """Explain the predictions of ``model`` (eval mode) for a batch.

    Args:
        model: a model with one classification :class:`~deepnc.DNCHead`.
        images: ``(N, C, H, W)`` preprocessed like the training data.
        exemplars: the training sample behind every sub-centroid (from
            :func:`~deepnc.explain.snap_subcentroids`); without it ``exemplar`` is -1.
        train: embeddings of the training set, for the ``neighbours`` nearest samples.
        top_classes: how many classes (by score) get evidence, at least 1.
        neighbours: how many nearest training samples to list (0 for none).

    Returns:
        One :class:`Explanation` per image, in order.
    """
    head = find_dnc_head(model)
    if top_classes < 1:
        raise ValueError(f"top_classes must be >= 1, got {top_classes}")
    model.eval()
    embedded, _ = embed_batch(model, images)
    cosines = torch.einsum("nd,ckd->nck", embedded, head.subcentroids.float())  # (N, C, K)
    scores, nearest = cosines.max(dim=-1)  # (N, C)
    top = scores.topk(min(top_classes, head.num_classes), dim=1)
    nearby = None
    if train is not None and neighbours > 0:
        similarity = embedded.cpu() @ train.features.T  # (N, N_train)
        nearby = similarity.topk(min(neighbours, len(train)), dim=1)
    explanations = []
    for row in range(len(images)):
        evidence = []
        for score, label in zip(top.values[row].tolist(), top.indices[row].tolist(), strict=True):
            k = int(nearest[row, label])
            exemplar, exemplar_similarity = -1, float("nan")
            if exemplars is not None:
                exemplar = int(exemplars.indices[label, k])
                exemplar_similarity = float(exemplars.similarity[label, k])
            evidence.append(ClassEvidence(label, score, k, score, exemplar, exemplar_similarity))
        listed = []
        if nearby is not None:
            for index, similarity in zip(
                nearby.indices[row].tolist(), nearby.values[row].tolist(), strict=True
            ):
                listed.append(Neighbour(index, int(train.labels[index]), similarity))
        explanations.append(Explanation(evidence[0].label, evidence[0].score, evidence, listed))
    return explanations
