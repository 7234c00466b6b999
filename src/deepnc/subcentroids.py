"""The sub-centroid bank: K unit vectors per class, estimated by clustering, never by gradient.

This is the clustering half of DNC training (``docs/method.md``): seed each
class's sub-centroids from its first real features (k-means++), then at every step
assign that class's correctly classified features to its sub-centroids by balanced
Sinkhorn clustering and move each sub-centroid towards the mean of its samples by
momentum. Every class is handled at once, with no Python loop over classes. The seeding
(host-side steps) lives in :mod:`deepnc.bank_seeding`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepnc import distributed
from deepnc._validate import check_choice, check_positive_float, check_positive_int, check_range
from deepnc.bank_diagnostics import BankDiagnostics, bank_diagnostics
from deepnc.bank_seeding import BankSeeding
from deepnc.counter_random import random_bits
from deepnc.grouping import (
    ClassSlots,
    chunk_by_class,
    class_counts,
    class_slots,
    keep_per_class,
)
from deepnc.momentum import DEFAULT_MOMENTUM, warmup_momentum
from deepnc.subcentroid_update import assign, cell_sums, reseed_dead

__all__ = [
    "ASSIGNMENTS",
    "DEFAULT_DEAD_AFTER",
    "DEFAULT_MOMENTUM",
    "DEFAULT_SINKHORN_EPS",
    "DEFAULT_SINKHORN_ITERATIONS",
    "BankDiagnostics",
    "SubCentroidBank",
]

ASSIGNMENTS = ("sinkhorn", "nearest", "random")
# The method's defaults for the clustering, written once (the head and the estimator take
# theirs from here): the balanced assignment's entropy and rounds (mu: deepnc.momentum).
DEFAULT_SINKHORN_EPS = 0.05
DEFAULT_SINKHORN_ITERATIONS = 3
DEFAULT_DEAD_AFTER = 20  # updates without a sample before a sub-centroid is re-seeded


class SubCentroidBank(BankSeeding, nn.Module):
    """K sub-centroids per class, held as fp32 buffers of unit rows.

    Args:
        num_classes: C (>= 1).
        num_subcentroids: K per class (>= 1).
        dim: D, the embedding width (>= 1).
        momentum: mu in [0, 1): ``p <- normalise(mu p + (1 - mu) mean)``.
        momentum_warmup: W >= 0; the n-th update of a class (n = 0, 1, ...) uses
            ``min(mu, (1 + n) / (W + n))`` instead of mu, the warm-up of TensorFlow's
            ``ExponentialMovingAverage(num_updates=...)``, so that early sub-centroids
            follow the quickly changing features of a young network instead of
            keeping most of their first seeds. 0 disables it (mu from the start).
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
        momentum: float = DEFAULT_MOMENTUM,
        momentum_warmup: int = 0,
        sinkhorn_eps: float = DEFAULT_SINKHORN_EPS,
        sinkhorn_iterations: int = DEFAULT_SINKHORN_ITERATIONS,
        assignment: str = "sinkhorn",
        dead_after: int = DEFAULT_DEAD_AFTER,
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
        self.register_load_state_dict_post_hook(_refresh_seeded)

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
        """One clustering step from a flat batch of labelled unit features.

        Unseeded classes present in the batch are seeded from their samples; every
        other class present with at least one correct sample is clustered over its
        correct samples and moved by momentum. Nothing else changes. Once every class
        is seeded this makes no host-device sync when ``scores`` is given.

        Args:
            features: ``(M, D)`` unit-norm features (finite where included).
            labels: ``(M,)`` int64 classes in ``[0, C)``.
            correct: ``(M,)`` bool, which samples the model classified correctly
                (default: all of them).
            scores: ``(M, K)`` cosine of each feature to its class's sub-centroids
                as they are now, when the caller has it (the head's forward does);
                computed otherwise (with a sync: see :meth:`own_class_scores`).
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
            scores = self.own_class_scores(features, labels)
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

        Static shapes and no host-device sync: the work is laid out in
        ``min(M, C)`` class slots (a batch of M samples touches at most that many
        classes: at C = 1000 with a batch of 64, 64 slots, not 1000 rows), unused
        slots masked.

        Args:
            features: ``(M, D)`` unit features of seeded classes.
            labels: ``(M,)`` int64 class of each (unused when ``slots`` is given).
            scores: ``(M, K)`` cosine of each feature to the K sub-centroids of its class.
            include: ``(M,)`` bool, the samples to use (correctly classified ones);
                default all. Left-out samples go to a discarded extra slot rather
                than being copied out, which would cost a pass over the features.
            slots: the class slots of the samples, when the caller has laid them out
                (the head's memory does); computed from ``labels`` and ``include``
                otherwise.
            rows_per_slot: L > 0 when the samples come slot by slot, L rows each (row
                r belongs to slot r // L, or is left out): the sums are then one
                batched matmul instead of a scatter, which compiled CPU code would run
                as atomic adds.
            momentum: this step's mu instead of the bank's (0 moves every sub-centroid
                onto the mean of its samples: a k-means round, what :meth:`fit` does).
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

        current = self.subcentroids[classes]
        means = F.normalize(sums, dim=-1)
        momentum = self._momentum(classes) if momentum is None else momentum
        blend = momentum * current + (1 - momentum) * means
        # A mean exactly opposite its sub-centroid can cancel it: keep the old one then.
        length = blend.norm(dim=-1, keepdim=True)
        moved = blend / length.clamp(min=1e-12)
        update = (counts > 0).unsqueeze(-1) & torch.isfinite(length) & (length > 1e-6)
        rows = torch.where(update, moved, current)
        self.assigned.index_add_(0, classes, counts)
        self.class_updates.index_add_(0, classes, update.any(dim=1).squeeze(-1).long())

        rows, since = reseed_dead(
            rows, features, ids, scores, counts, self.steps_since_used[classes], self.dead_after
        )
        self.steps_since_used[classes] = since
        self._write_rows(classes, rows)
        self._synchronise()

    def own_class_scores(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(M, K)`` cosine of each feature to the K sub-centroids of its own class.

        Costs ``M * K * D`` (one batched matmul over same-class chunks of the
        features), not the ``M * C * K * D`` of scoring every class.
        """
        chunks = chunk_by_class(labels, self.num_classes)
        padded = chunks.pad(features.float())  # (R, width, D)
        scores = torch.bmm(padded, self.subcentroids[chunks.row_class].transpose(1, 2))
        return scores[chunks.row, chunks.column]

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
        return bank_diagnostics(self)

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

    def _synchronise(self) -> None:
        """Make every process hold process 0's sub-centroids.

        Every process runs the same update on the same all-gathered samples, which is
        bit-identical on the CPU. CUDA's ``index_add_`` adds in a nondeterministic
        order, so there the result of process 0 is broadcast.
        """
        if distributed.is_distributed() and self.subcentroids.device.type != "cpu":
            distributed.broadcast_(self.subcentroids)
            distributed.broadcast_(self.steps_since_used)


def _refresh_seeded(bank: SubCentroidBank, incompatible_keys) -> None:
    bank.mark_seeded()
