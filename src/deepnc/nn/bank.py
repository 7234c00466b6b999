"""The sub-centroid bank: K unit vectors per class, estimated by clustering, never by gradient.

This is the clustering half of DNC training (``docs/method.md``): seed each
class's sub-centroids from its first real features (k-means++), then at every step
assign that class's correctly classified features to its sub-centroids by balanced
Sinkhorn clustering and move each sub-centroid towards the mean of its samples by
momentum. Every class is handled at once, with no Python loop over classes.

The methods in the order a run meets them: seeding (:meth:`~SubCentroidBank.initialise`,
:meth:`~SubCentroidBank.fit`: host steps, before training), the per-step update
(:meth:`~SubCentroidBank.update` -> :meth:`~SubCentroidBank.step`, no host sync once every
class is seeded; its tensor kernels are :mod:`deepnc.nn.update`), then
:meth:`~SubCentroidBank.diagnostics`.
"""

from __future__ import annotations

import torch
from torch import nn

from deepnc.nn import defaults, distributed
from deepnc.nn.counter_random import random_bits
from deepnc.nn.diagnostics import BankDiagnostics, diagnose
from deepnc.nn.grouping import ClassSlots, class_counts, class_slots, keep_per_class
from deepnc.nn.kmeans import seed_classes, seeding_generators
from deepnc.nn.memory import ClassMemory
from deepnc.nn.momentum import warmup_momentum
from deepnc.nn.update import assign, cell_sums, move, own_class_scores, reseed_dead
from deepnc.utils.validate import (
    check_choice,
    check_positive_float,
    check_positive_int,
    check_range,
)

__all__ = ["ASSIGNMENTS", "BankDiagnostics", "SubCentroidBank"]

ASSIGNMENTS = ("sinkhorn", "nearest", "random")


class SubCentroidBank(nn.Module):
    """K sub-centroids per class, held as fp32 buffers of unit rows.

    Args:
        num_classes: C (>= 1).
        num_subcentroids: K per class (>= 1).
        dim: D, the embedding width (>= 1).
        momentum: mu in [0, 1): ``p <- normalise(mu p + (1 - mu) mean)``.
        momentum_warmup: W >= 0; the n-th update of a class uses
            ``min(mu, (1 + n) / (W + n))``, so that early sub-centroids follow a young
            network (:func:`~deepnc.nn.momentum.warmup_momentum`); 0: mu from the start.
        sinkhorn_eps: entropy weight of the balanced assignment (> 0).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (>= 1).
        assignment: ``"sinkhorn"`` (balanced, the method), ``"nearest"`` (plain
            nearest sub-centroid, an ablation that can collapse) or ``"random"``
            (uniform, what the official code effectively does; an ablation).
        dead_after: a sub-centroid that gets no sample in this many consecutive
            updates of its class (with at least K samples) is re-seeded from the
            class's worst-fitted sample (>= 1).
        seed: seeds the k-means++ draws, so runs (and all processes) agree.

    Buffers:
        subcentroids: ``(C, K, D)`` fp32, unit rows (zeros until a class is seeded).
        initialised: ``(C,)`` bool.
        steps_since_used: ``(C, K)`` int64 consecutive updates without a sample.
        assigned: ``(C, K)`` int64, seen: ``(C,)`` int64, correct: ``(C,)`` int64
            running statistics behind :meth:`diagnostics`.
        num_updates: ``()`` int64 number of :meth:`update` calls.
        class_updates: ``(C,)`` int64 momentum updates applied to each class.
    """

    subcentroids: torch.Tensor
    initialised: torch.Tensor
    steps_since_used: torch.Tensor
    assigned: torch.Tensor
    seen: torch.Tensor
    correct: torch.Tensor
    num_updates: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        num_subcentroids: int,
        dim: int,
        *,
        momentum: float = defaults.MOMENTUM,
        momentum_warmup: int = 0,
        sinkhorn_eps: float = defaults.SINKHORN_EPS,
        sinkhorn_iterations: int = defaults.SINKHORN_ITERATIONS,
        assignment: str = "sinkhorn",
        dead_after: int = defaults.DEAD_AFTER,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.num_subcentroids = check_positive_int("num_subcentroids", num_subcentroids)
        self.dim = check_positive_int("dim", dim)
        self.momentum = momentum
        self.momentum_warmup = check_positive_int("momentum_warmup", momentum_warmup, minimum=0)
        self.sinkhorn_eps = check_positive_float("sinkhorn_eps", sinkhorn_eps)
        self.sinkhorn_iterations = check_positive_int("sinkhorn_iterations", sinkhorn_iterations)
        self.assignment = check_choice("assignment", assignment, ASSIGNMENTS)
        self.dead_after = check_positive_int("dead_after", dead_after)
        self.seed = check_positive_int("seed", seed, minimum=0)
        shape = (num_classes, num_subcentroids)
        self.register_buffer("subcentroids", torch.zeros(*shape, dim))
        self.register_buffer("initialised", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("steps_since_used", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("assigned", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("correct", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("class_updates", torch.zeros(num_classes, dtype=torch.long))
        self._all_seeded = False  # mirrors initialised.all(), refreshed on the host only
        self.replicated = True  # every process holds these classes (False: a shard of them)
        self.register_load_state_dict_post_hook(_refresh_seeded)

    # ---------------------------------------------------- seeding (host steps)
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
            max_per_class=defaults.SEED_SAMPLES_PER_CLASS,
            generators=seeding_generators(self.seed, int(self.num_updates)),
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
            scores = own_class_scores(features, labels, self.subcentroids)
            self.step(features, labels, scores, momentum=0.0)
        self.class_updates.copy_(class_updates)
        self.steps_since_used[present] = 0
        self.reset_statistics()

    # ----------------------------------------------------------------- update API
    @property
    def momentum(self) -> float:
        """mu in [0, 1), settable (validated); see :func:`half_life_momentum`."""
        return self._momentum_value

    @momentum.setter
    def momentum(self, value: float) -> None:
        self._momentum_value = check_range(
            "momentum", value, 0.0, 1.0, low_open=False, high_open=True
        )

    @torch.no_grad()
    def update(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        correct: torch.Tensor | None = None,
        *,
        scores: torch.Tensor | None = None,
        max_per_class: int | None = None,
        include: torch.Tensor | None = None,
    ) -> None:
        """One clustering step from a flat batch of labelled unit features: unseeded
        classes present are seeded from their samples; every other class present with a
        correct sample is clustered over its correct samples and moved by momentum. Once
        every class is seeded this makes no host-device sync when ``scores`` is given.

        Args:
            features: ``(M, D)`` unit-norm features (finite where included).
            labels: ``(M,)`` int64 classes in ``[0, C)``.
            correct: ``(M,)`` bool, the samples classified correctly (default all).
            scores: ``(M, K)`` cosines to their class's sub-centroids, when the caller
                has them (the head does); else computed (a sync).
            max_per_class: cluster at most this many correct samples per class (a
                random subset drawn on the device); ``None`` for all.
            include: ``(M,)`` bool, the samples to use at all, for seeding too
                (default all): left-out ones are masked, never copied out.
        """
        if correct is None:
            correct = torch.ones_like(labels, dtype=torch.bool)
        if include is not None:
            correct = correct & include
        usable = correct & self.seed_new(features, labels, include=include)[labels]
        if max_per_class is not None:
            keys = random_bits(self.num_updates, labels.numel(), seed=self.seed, salt=1)
            usable &= keep_per_class(
                labels.masked_fill(~usable, self.num_classes),
                self.num_classes + 1,
                max_per_class,
                keys,
            )
        if scores is None:
            scores = own_class_scores(features, labels, self.subcentroids)
        self.step(features, labels, scores, include=usable)

    @torch.no_grad()
    def step(
        self,
        features: torch.Tensor,
        labels: torch.Tensor | None,
        scores: torch.Tensor,
        include: torch.Tensor | None = None,
        *,
        slots: ClassSlots | None = None,
        rows_per_slot: int = 0,
        momentum: float | None = None,
    ) -> None:
        """Assign, average and move: the momentum update of the classes in ``labels``.

        Static shapes and no host-device sync: the work is laid out in ``min(M, C)``
        class slots (a batch of M samples touches at most that many classes), unused
        slots masked.

        Args:
            features: ``(M, D)`` unit features of seeded classes.
            labels: ``(M,)`` int64 class of each (unused when ``slots`` is given).
            scores: ``(M, K)`` cosine of each feature to the K sub-centroids of its class.
            include: ``(M,)`` bool, the samples to use (default all); left-out ones go to
                a discarded extra slot rather than being copied out.
            slots: the samples' class slots when the caller has laid them out (the
                memory does); else computed from ``labels`` and ``include``.
            rows_per_slot: L > 0 when the samples come slot by slot, L rows each: the
                sums are then one batched matmul (see :func:`~deepnc.nn.update.cell_sums`).
            momentum: this step's mu instead of the bank's (0: a k-means round, what
                :meth:`fit` does).
        """
        self.num_updates += 1
        if slots is None:
            slots = class_slots(labels, include, self.num_classes)
        classes, ids = slots.classes, slots.ids
        num_slots, num_k = classes.numel(), self.num_subcentroids
        if num_slots == 0:
            return
        assignments = self._assign(scores.float(), ids, num_slots + 1)
        sums, counts = cell_sums(features, ids, assignments, num_slots, num_k, rows_per_slot)

        momentum = self._momentum(classes) if momentum is None else momentum
        rows, moved = move(self.subcentroids[classes], sums, counts, momentum)
        self.assigned.index_add_(0, classes, counts)
        self.class_updates.index_add_(0, classes, moved.any(dim=1).long())

        rows, since = reseed_dead(
            rows, features, ids, scores, counts, self.steps_since_used[classes], self.dead_after
        )
        self.steps_since_used[classes] = since
        self._write_rows(classes, rows)
        if self.replicated:
            distributed.share_from_first_process(self.subcentroids, self.steps_since_used)

    @torch.no_grad()
    def step_from_memory(self, memory: ClassMemory, slots: ClassSlots) -> None:
        """Cluster the memories of the slots' classes and move their sub-centroids.

        Args:
            memory: the head's :class:`~deepnc.ClassMemory` (L samples per class).
            slots: the S classes to move (``slots.valid`` masks unused slots).
        """
        classes = slots.classes
        filled = memory.filled()[classes] & slots.valid.unsqueeze(1)  # (S, L)
        stored = memory.features[classes].float()  # (S, L, D), fp32 whatever the storage
        with torch.autocast(stored.device.type, enabled=False):  # fp32 under autocast
            scores = torch.einsum("cld,ckd->clk", stored, self.subcentroids[classes])
        slot = torch.arange(classes.numel(), device=classes.device).unsqueeze(1)
        ids = torch.where(filled, slot, classes.numel()).view(-1)  # empty slots left out
        self.step(
            stored.view(-1, self.dim),
            None,
            scores.reshape(-1, self.num_subcentroids),
            slots=ClassSlots(classes=classes, valid=slots.valid, ids=ids),
            rows_per_slot=memory.length,
        )

    @torch.no_grad()
    def record_accuracy(
        self, labels: torch.Tensor, correct: torch.Tensor, include: torch.Tensor | None = None
    ) -> None:
        """Count seen and correctly classified samples per class (for diagnostics).

        Args:
            labels: ``(M,)`` int64 in ``[0, C)``.
            correct: ``(M,)`` bool.
            include: ``(M,)`` bool, the samples to count (default all).
        """
        seen = torch.ones_like(correct) if include is None else include
        self.seen += class_counts(labels, self.num_classes, seen)
        self.correct += class_counts(labels, self.num_classes, correct & seen)

    # ------------------------------------------------------------ diagnostics
    def diagnostics(self) -> BankDiagnostics:
        """Occupancy, intra-class similarity and accuracy of the updates so far."""
        return diagnose(self.subcentroids, self.initialised, self.assigned, self.seen, self.correct)

    @torch.no_grad()
    def reset_statistics(self) -> None:
        """Zero the counters behind :meth:`diagnostics` (not the sub-centroids)."""
        self.assigned.zero_()
        self.seen.zero_()
        self.correct.zero_()

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, num_subcentroids={self.num_subcentroids}, "
            f"dim={self.dim}, momentum={self.momentum}, assignment={self.assignment!r}"
        )

    # ---------------------------------------------------------------- helpers
    def _assign(self, scores: torch.Tensor, ids: torch.Tensor, num_ids: int) -> torch.Tensor:
        """``(M,)`` sub-centroid of each sample within its class (``ids`` numbers them)."""
        draws = None
        if self.assignment == "random":
            draws = random_bits(self.num_updates, ids.numel(), seed=self.seed, salt=4)
        options = {"eps": self.sinkhorn_eps, "iterations": self.sinkhorn_iterations}
        return assign(self.assignment, scores, ids, num_ids, random_draws=draws, **options)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before ``class_updates`` existed: every class is taken to
        # have had as many updates as the bank (past any warm-up, which is what it used).
        key = prefix + "class_updates"
        if key not in state_dict and prefix + "num_updates" in state_dict:
            count = state_dict[prefix + "num_updates"].to(self.class_updates)
            state_dict[key] = count.expand_as(self.class_updates).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _momentum(self, classes: torch.Tensor) -> torch.Tensor | float:
        """mu for the classes about to move: ``(C', 1, 1)``, or a float without warm-up."""
        if not self.momentum_warmup:
            return self.momentum
        return warmup_momentum(self.class_updates[classes], self.momentum_warmup, self.momentum)

    def _write_rows(self, classes: torch.Tensor, rows: torch.Tensor) -> None:
        """Set the sub-centroids of ``classes`` ``(S,)`` to ``rows`` ``(S, K, D)``.

        Out of place: the forward pass that scored this batch keeps the sub-centroids
        it used for its backward, so the update makes a new buffer instead of writing
        into that one (in place, backward would fail, under ``torch.compile`` too).
        """
        self.subcentroids = self.subcentroids.index_put((classes,), rows)


def _refresh_seeded(bank: SubCentroidBank, incompatible_keys) -> None:
    bank.mark_seeded()
