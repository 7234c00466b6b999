""" "This looks like that": the evidence behind every prediction of a DNC model.

For each input: the predicted class and its score, and for the top few classes the
nearest sub-centroid, its cosine similarity and the training sample behind it (its
exemplar, see :mod:`deepnc.explain.snap`), and where both match
(:mod:`deepnc.explain.similarity_maps`); plus the k nearest training samples overall when
the embeddings of the training set are given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from deepnc.explain.embeddings import Embeddings, embed_batch, find_dnc_head
from deepnc.explain.similarity_maps import contributions, pooled_feature_maps
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
        map: ``(h, w)`` where the input matches the sub-centroid: each location's
            contribution to ``similarity`` (their mean is it; see
            :mod:`deepnc.explain.similarity_maps`), or None.
        exemplar_map: the same for the exemplar image, or None.
    """

    label: int
    score: float
    subcentroid: int
    similarity: float
    exemplar: int = -1
    exemplar_similarity: float = float("nan")
    map: torch.Tensor | None = field(default=None, repr=False)
    exemplar_map: torch.Tensor | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready: the numbers, without the maps."""
        return {
            name: getattr(self, name)
            for name in ("label", "score", "subcentroid", "similarity", "exemplar")
        } | {"exemplar_similarity": self.exemplar_similarity}


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

    def to_dict(self) -> dict:
        """JSON-ready: every number, without the maps."""
        return {
            "predicted": self.predicted,
            "score": self.score,
            "classes": [evidence.to_dict() for evidence in self.classes],
            "neighbours": [dataclasses.asdict(neighbour) for neighbour in self.neighbours],
        }


@torch.no_grad()
def explain_batch(
    model: nn.Module,
    images: torch.Tensor,
    *,
    exemplars: SnapResult | None = None,
    train: Embeddings | None = None,
    top_classes: int = 3,
    neighbours: int = 5,
    maps: bool = False,
    exemplar_images: Callable[[int], torch.Tensor] | None = None,
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
        maps: compute each class's similarity map on the input (``ClassEvidence.map``),
            and on its exemplar when ``exemplar_images`` gives it (``exemplar_map``).
        exemplar_images: training index -> ``(C, H, W)`` image preprocessed like
            ``images``.

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
    if maps:
        _add_maps(model, head, images, explanations, exemplar_images)
    return explanations


def _add_maps(model, head, images, explanations, exemplar_images) -> None:
    """Fill ``map`` (and ``exemplar_map``) of every class evidence, in place."""
    evidence = [e.classes for e in explanations]
    chosen = torch.stack(
        [torch.stack([head.subcentroids[e.label, e.subcentroid] for e in row]) for row in evidence]
    )  # (N, T, D)
    found = contributions(
        head.norm, pooled_feature_maps(model, images), chosen, head.projection
    ).maps
    for row, classes in enumerate(evidence):
        for column, item in enumerate(classes):
            item.map = found[row, column].cpu()
    if exemplar_images is None:
        return
    wanted = [item for classes in evidence for item in classes if item.exemplar >= 0]
    if not wanted:
        return
    pictures = torch.stack([exemplar_images(item.exemplar) for item in wanted]).to(images.device)
    targets = torch.stack([head.subcentroids[item.label, item.subcentroid] for item in wanted])
    found = contributions(
        head.norm, pooled_feature_maps(model, pictures), targets, head.projection
    ).maps
    for item, exemplar_map in zip(wanted, found, strict=True):
        item.exemplar_map = exemplar_map.cpu()
