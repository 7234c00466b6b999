"""Reject what the model does not know: distance-based open-set recognition.

A DNC model scores every input by how close it lies to the nearest sub-centroid, a real
cosine similarity in ``[-1, 1]``; far from every sub-centroid means "none of the
classes". Scores (higher = more confidently known):

- ``"similarity"``: cosine to the nearest sub-centroid (DNC);
- ``"margin"``: that cosine minus the best cosine of any other class, in ``[0, 2]`` (DNC);
- ``"max_softmax"``, ``"max_logit"``: the usual baselines of a softmax model.

:func:`calibrate_threshold` picks the threshold that keeps a chosen fraction of held-out
in-distribution inputs; :func:`predict` returns :data:`REJECT` for the inputs below it.

>>> logits = torch.tensor([[9.0, 1.0], [3.0, 2.5]])  # DNC logits, tau = 0.1
>>> [round(v, 4) for v in confidence_scores(logits, "similarity", tau=0.1).tolist()]
[0.9, 0.3]
>>> with_rejection(logits, confidence_scores(logits, "similarity", tau=0.1), 0.5).tolist()
[0, -1]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from deepnc.nn.hooks import single_dnc_head

__all__ = [
    "REJECT",
    "SCORES",
    "calibrate_threshold",
    "confidence_scores",
    "ood_metrics",
    "predict",
    "with_rejection",
]

REJECT = -1
SCORES = ("similarity", "margin", "max_softmax", "max_logit")
_RANGES = {"similarity": (-1.0, 1.0), "margin": (0.0, 2.0), "max_softmax": (0.0, 1.0)}


def confidence_scores(logits: torch.Tensor, kind: str = "similarity", *, tau: float | None = None):
    """``(N,)`` scores from ``(N, C)`` logits; ``tau`` is needed for the DNC scores."""
    if kind not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got {kind!r}")
    logits = logits.float()
    if kind in ("similarity", "margin"):
        if tau is None:
            raise ValueError(f"the {kind!r} score needs the DNC head's tau")
        cosines = logits * tau
        if kind == "similarity":
            return cosines.amax(dim=1)
        if cosines.shape[1] < 2:
            raise ValueError("the margin score needs at least 2 classes")
        top2 = cosines.topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]
    if kind == "max_softmax":
        return F.softmax(logits, dim=1).amax(dim=1)
    return logits.amax(dim=1)


def check_threshold(threshold: float, kind: str) -> None:
    """Raise ``ValueError`` for a threshold outside the range the score can take."""
    if kind in _RANGES:
        low, high = _RANGES[kind]
        if not low <= threshold <= high:
            raise ValueError(
                f"a {kind!r} threshold must lie in [{low}, {high}], the range of the score; "
                f"got {threshold}"
            )


def with_rejection(logits: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(N,)`` predicted classes, :data:`REJECT` where ``scores < threshold``."""
    predicted = logits.argmax(dim=1)
    return torch.where(scores < threshold, torch.full_like(predicted, REJECT), predicted)


def calibrate_threshold(scores: torch.Tensor, tpr: float = 0.95) -> float:
    """The threshold that keeps at least ``tpr`` of the in-distribution ``scores`` (``(N,)``).

    Use scores of held-out in-distribution data (a validation split), not of training data.
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1], got {tpr}")
    scores = scores.flatten().double()
    if scores.numel() == 0 or not torch.isfinite(scores).all():
        raise ValueError("calibration needs a non-empty set of finite scores")
    kept = max(1, int(torch.ceil(torch.tensor(tpr * scores.numel())).item()))
    return float(scores.sort(descending=True).values[kept - 1])


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    reject_below: float | None = None,
    score: str = "similarity",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted (N,), scores (N,))`` of a classifier, with :data:`REJECT` for inputs
    scoring below ``reject_below`` (None: never reject).

    The DNC scores need a model with one DNC head; the softmax scores work for any model.
    """
    tau = None
    if score in ("similarity", "margin"):
        tau = single_dnc_head(model, f"the {score!r} score needs").tau
    if reject_below is not None:
        check_threshold(reject_below, score)
    model.eval()
    logits = model(images)
    scores = confidence_scores(logits, score, tau=tau)
    if reject_below is None:
        return logits.argmax(dim=1), scores
    return with_rejection(logits, scores, reject_below), scores


def ood_metrics(known: torch.Tensor, unknown: torch.Tensor, tpr: float = 0.95) -> dict:
    """How well scores separate known (positive) from unknown inputs.

    Returns:
        ``{"auroc", "fpr_at_tpr", "threshold"}``: the area under the ROC curve, and the
        fraction of unknown inputs accepted at the threshold that keeps ``tpr`` of the
        known ones.
    """
    scores = torch.cat([known.flatten(), unknown.flatten()]).double()
    truth = torch.cat([torch.ones(known.numel()), torch.zeros(unknown.numel())]).long()
    threshold = calibrate_threshold(known, tpr)
    return {
        "auroc": float(binary_auroc(scores, truth)),
        "fpr_at_tpr": float((unknown.double() >= threshold).float().mean()),
        "threshold": threshold,
    }
