"""Every default of the method, written once: the head, the bank, the clustering, the
estimator and dense heads all read theirs from here.

The values and why (``docs/method.md`` says more):

- ``NUM_SUBCENTROIDS = 4`` and ``TAU = 0.1``: the paper's K and temperature for ImageNet.
- ``MEMORY_SIZE = 64``: features kept per class, so that a class with few samples per
  batch still clusters enough of them.
- ``MOMENTUM = 0.999``: the paper's mu, the long-schedule limit of every other choice
  (:func:`~deepnc.nn.momentum.half_life_momentum`).
- ``SINKHORN_EPS = 0.05`` and ``SINKHORN_ITERATIONS = 3``: the balanced assignment's
  entropy weight and rounds (SwAV's and the paper's).
- ``DEAD_AFTER = 20``: updates without a sample before a sub-centroid is re-seeded.
- ``SEED_SAMPLES_PER_CLASS = 256``: k-means++ seeding looks at no more per class.
- ``CHECKED_UPDATES = 10``: updates whose inputs ``validate="first"`` checks at once.
- ``PARTIAL_FIT_MOMENTUM = 0.9``: :class:`~deepnc.sklearn.DNCClassifier`'s mu, since its
  ``partial_fit`` makes tens of steps, not thousands.
- ``DENSE_HEAD``: what a dense (segmentation) head changes: K = 10 and no memory (a
  batch has pixels enough).
"""

from __future__ import annotations

__all__ = [
    "CHECKED_UPDATES",
    "DEAD_AFTER",
    "DENSE_HEAD",
    "MEMORY_SIZE",
    "MOMENTUM",
    "NUM_SUBCENTROIDS",
    "PARTIAL_FIT_MOMENTUM",
    "SEED_SAMPLES_PER_CLASS",
    "SINKHORN_EPS",
    "SINKHORN_ITERATIONS",
    "TAU",
]

NUM_SUBCENTROIDS = 4
TAU = 0.1
MEMORY_SIZE = 64
MOMENTUM = 0.999
SINKHORN_EPS = 0.05
SINKHORN_ITERATIONS = 3
DEAD_AFTER = 20
SEED_SAMPLES_PER_CLASS = 256
CHECKED_UPDATES = 10
PARTIAL_FIT_MOMENTUM = 0.9
DENSE_HEAD = {"num_subcentroids": 10, "memory_size": 0}
