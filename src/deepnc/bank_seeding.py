"""How a bank's classes get their first sub-centroids: k-means++ seeding from the first
real features of each class, and balanced k-means from scratch (the warm start).

Host-side steps (they read which classes are new back to the host), kept apart from the
per-step update of :mod:`deepnc.subcentroids`, which never syncs. :class:`BankSeeding` is
mixed into :class:`~deepnc.SubCentroidBank`; it uses the bank's buffers and its
:meth:`~deepnc.SubCentroidBank.step`.
"""

from __future__ import annotations

import torch

from deepnc._validate import check_positive_int
from deepnc.grouping import class_counts
from deepnc.seeding import seed_classes

__all__ = ["INIT_SAMPLES_PER_CLASS", "BankSeeding"]

INIT_SAMPLES_PER_CLASS = 256  # k-means++ seeding looks at no more than this many per class


class BankSeeding:
    """Seeding and balanced k-means for :class:`~deepnc.SubCentroidBank` (a mixin)."""

    _all_seeded: bool  # mirrors initialised.all(), refreshed on the host only

    @property
    def all_seeded(self) -> bool:
        """Whether every class has been seeded (a host-side flag, so reading it never
        syncs; once True, :meth:`initialise` costs nothing and steps stay on the device)."""
        return self._all_seeded

    def mark_seeded(self) -> None:
        """Refresh :attr:`all_seeded` after ``initialised`` was written directly (one sync)."""
        self._all_seeded = bool(self.initialised.all())

    def seed_new(
        self, features: torch.Tensor, labels: torch.Tensor, include: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Seed the unseeded classes present (:meth:`initialise`) and return ``(C,)`` bool,
        the classes seeded *before* this batch: the ones a step may move now (a class's
        seeding samples do not also move it). Once every class is seeded this reads a
        host-side flag only, so a compiled caller guards on it and makes no sync."""
        seeded_before = self.initialised.clone()
        if not self._all_seeded:
            self.initialise(features, labels, include=include)
        return seeded_before

    @torch.compiler.disable  # a host step: torch.compile runs it eagerly
    @torch.no_grad()
    def initialise(
        self, features: torch.Tensor, labels: torch.Tensor, include: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Seed the unseeded classes present in a batch by k-means++ on their samples.

        Once every class is seeded it returns at once without touching the device.

        Args:
            features: ``(M, D)`` unit-norm features.
            labels: ``(M,)`` int64 classes in ``[0, C)``.
            include: ``(M,)`` bool, the samples that may seed (default all).

        Returns:
            ``(C,)`` bool, the classes seeded by this call.
        """
        if self._all_seeded:
            return torch.zeros_like(self.initialised)
        present = class_counts(labels, self.num_classes, include) > 0
        new = present & ~self.initialised
        if not bool(new.any()):
            self.mark_seeded()
            return new
        keep = new[labels] if include is None else new[labels] & include
        classes, rows = seed_classes(
            features[keep],
            labels[keep],
            self.num_classes,
            self.num_subcentroids,
            max_per_class=INIT_SAMPLES_PER_CLASS,
            generators=(self._generator(salt=2), self._generator(salt=3)),
        )
        self._write_rows(classes, rows)
        self.initialised[classes] = True
        self.steps_since_used[classes] = 0
        self.mark_seeded()
        return new

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor, iterations: int = 10) -> None:
        """Balanced k-means of every class present, from scratch: the warm start.

        Each class in ``labels`` is seeded by k-means++ on its samples, then
        ``iterations`` rounds assign its samples to its sub-centroids by balanced
        Sinkhorn and move every sub-centroid onto the mean of its samples (momentum 0).
        Classes absent from ``labels`` keep their sub-centroids. The rounds count
        neither as momentum updates (``class_updates``) nor in ``diagnostics()``.
        A host-side step (seeding syncs): run it before training.

        Args:
            features: ``(M, D)`` unit-norm finite features.
            labels: ``(M,)`` int64 classes in ``[0, C)``.
            iterations: balanced assignment rounds (>= 0).
        """
        check_positive_int("iterations", iterations, minimum=0)
        present = class_counts(labels, self.num_classes) > 0
        self.initialised &= ~present  # re-seed the classes present
        self._all_seeded = False
        class_updates = self.class_updates.clone()
        self.initialise(features, labels)
        for _ in range(iterations):
            scores = self.own_class_scores(features, labels)
            self.step(features, labels, scores, momentum=0.0)
        self.class_updates.copy_(class_updates)
        self.steps_since_used[present] = 0
        self.reset_statistics()

    def _generator(self, salt: int) -> torch.Generator:
        """A CPU generator that every process builds identically, for seeding (a host
        step: it reads the update count back to the host)."""
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + int(self.num_updates)) * 8 + salt)
        return generator
