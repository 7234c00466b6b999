"""Explanations: sub-centroids as real training images, and the evidence for every prediction.

Computation (:mod:`~deepnc.explain.embeddings`, :mod:`~deepnc.explain.snap`,
:mod:`~deepnc.explain.evidence`) returns data; drawing and file writing live in
:mod:`~deepnc.explain.render` and :mod:`~deepnc.explain.report`.
"""

from deepnc.explain.embeddings import Embeddings, embed_batch, embed_dataset, find_dnc_head
from deepnc.explain.evidence import ClassEvidence, Explanation, Neighbour, explain_batch
from deepnc.explain.snap import (
    SnapResult,
    apply_snap,
    own_class_occupancy,
    snap_subcentroids,
    subcentroid_similarity,
)

__all__ = [
    "ClassEvidence",
    "Embeddings",
    "Explanation",
    "Neighbour",
    "SnapResult",
    "apply_snap",
    "embed_batch",
    "embed_dataset",
    "explain_batch",
    "find_dnc_head",
    "own_class_occupancy",
    "snap_subcentroids",
    "subcentroid_similarity",
]
