"""The sub-centroid bank: K unit vectors per class, estimated by clustering, never by gradient.

This is step (b) of DNC training (``../shared/METHOD.md`` section 3): seed each
class's sub-centroids from its first real features (k-means++), then at every step
assign that class's correctly classified features to its sub-centroids by balanced
Sinkhorn clustering and move each sub-centroid towards the mean of its samples by
momentum. Every class is handled at once, with no Python loop over classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deepnc import distributed
from deepnc._validate import check_choice, check_positive_float, check_positive_int, check_range
from deepnc.counter_random import random_bits
from deepnc.grouping import (
    ClassSlots,
    chunk_by_class,
    class_counts,
    class_slots,
    group_by_class,
    keep_per_class,
)
from deepnc.seeding import kmeans_plus_plus
from deepnc.sinkhorn import sinkhorn_segments

__all__ = ["ASSIGNMENTS", "BankDiagnostics", "SubCentroidBank", "half_life_momentum"]

ASSIGNMENTS = ("sinkhorn", "nearest", "random")
INIT_SAMPLES_PER_CLASS = 256  # k-means++ seeding looks at no more than this many per class


def half_life_momentum(half_life: float, limit: float = 0.999) -> float:
    """The momentum mu whose moving average halves a sample's weight in ``half_life``
    updates, ``0.5 ** (1 / half_life)``, capped at ``limit``.

    A horizon in updates (the trainer converts one in epochs) instead of a fixed mu: the
    paper's 0.999 has a half-life of 693 updates, longer than a whole short fine-tuning
    run, over which each sub-centroid would keep most of its first seed.

    >>> round(half_life_momentum(693), 4), half_life_momentum(1e6)
    (0.999, 0.999)
    >>> round(half_life_momentum(6.58), 3)
    0.9
    """
    if isinstance(half_life, bool) or not isinstance(half_life, int | float) or half_life <= 0:
        raise ValueError(f"half_life must be a number of updates > 0, got {half_life!r}")
    return min(limit, 0.5 ** (1.0 / half_life))


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


class SubCentroidBank(nn.Module):
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
        momentum: float = 0.999,
        momentum_warmup: int = 0,
        sinkhorn_eps: float = 0.05,
        sinkhorn_iterations: int = 3,
        assignment: str = "sinkhorn",
        dead_after: int = 20,
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

    @property
    def all_seeded(self) -> bool:
        """Whether every class has been seeded (a host-side flag, so reading it never
        syncs; once True, :meth:`initialise` costs nothing and steps stay on the device)."""
        return self._all_seeded

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
        was_initialised = self.initialised.clone()
        if not self._all_seeded:  # a host step; checked here so a compiled caller guards on it
            self.initialise(features, labels, include=include)
        usable = correct & was_initialised[labels]
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

    @torch.compiler.disable  # a host step: torch.compile runs it eagerly
    @torch.no_grad()
    def initialise(
        self, features: torch.Tensor, labels: torch.Tensor, include: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Seed the unseeded classes present in a batch by k-means++ on their samples.

        A host-side step (it reads which classes are new back to the host); once every
        class is seeded it returns at once without touching the device.

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
            self._all_seeded = bool(self.initialised.all())
            return new
        keep = new[labels] if include is None else new[labels] & include
        groups = group_by_class(
            labels[keep],
            self.num_classes,
            max_per_class=INIT_SAMPLES_PER_CLASS,
            generator=self._generator(salt=2),
        )
        padded = groups.gather(features[keep].float())
        seeds = kmeans_plus_plus(
            padded, groups.mask, self.num_subcentroids, generator=self._generator(salt=3)
        )
        chosen = torch.gather(padded, 1, seeds.unsqueeze(-1).expand(-1, -1, self.dim))
        self._write_rows(groups.classes, F.normalize(chosen, dim=-1))
        self.initialised[groups.classes] = True
        self.steps_since_used[groups.classes] = 0
        self._all_seeded = bool(self.initialised.all())
        return new

    @torch.no_grad()
    def fit(self, features: torch.Tensor, labels: torch.Tensor, iterations: int = 10) -> None:
        """Balanced k-means of every class present, from scratch: the warm start.

        Each class in ``labels`` is seeded by k-means++ on its samples, then
        ``iterations`` rounds assign its samples to its sub-centroids by balanced
        Sinkhorn and move every sub-centroid onto the mean of its samples (momentum 0).
        Classes absent from ``labels`` keep their sub-centroids. The rounds count
        neither as momentum updates (``class_updates``) nor in :meth:`diagnostics`.
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
        if rows_per_slot:
            sums, counts = self._slot_sums(features, ids, assignments, rows_per_slot)
        else:
            cells = ids * num_k + assignments  # (M,) in [0, (S + 1) K); last K discarded
            num_cells = num_slots * num_k
            sums = torch.zeros(num_cells + num_k, self.dim, device=features.device)
            sums.index_add_(0, cells, features.float())
            sums = sums[:num_cells].view(num_slots, num_k, self.dim)
            counts = class_counts(cells, num_cells + num_k)[:num_cells].view(num_slots, num_k)

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

        rows = self._reseed_dead(rows, features, ids, scores, classes, counts)
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
        assigned = self.assigned.clone()
        total = assigned.sum(dim=1, keepdim=True)
        occupancy = assigned.double() / total.double()
        gram = self.subcentroids @ self.subcentroids.transpose(1, 2)  # (C, K, K)
        num_k = self.num_subcentroids
        off_diagonal = gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=1)
        intra = off_diagonal / (num_k * (num_k - 1)) if num_k > 1 else gram[:, 0, 0] * torch.nan
        intra = torch.where(self.initialised, intra, torch.nan)
        seen, correct = self.seen.double(), self.correct.double()
        overall = float(correct.sum() / seen.sum()) if int(self.seen.sum()) else float("nan")
        return BankDiagnostics(
            initialised=self.initialised.clone(),
            assigned=assigned,
            occupancy=occupancy,
            intra_class_cosine=intra,
            correct_fraction=correct / seen,
            overall_correct_fraction=overall,
        )

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
        if self.assignment == "sinkhorn":
            assignments, _ = sinkhorn_segments(
                scores, ids, num_ids, eps=self.sinkhorn_eps, iterations=self.sinkhorn_iterations
            )
            return assignments
        if self.assignment == "nearest":
            return scores.argmax(dim=1)
        draws = random_bits(self.num_updates, ids.numel(), seed=self.seed, salt=4)
        return draws % self.num_subcentroids

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints written before ``class_updates`` existed: every class is taken to
        # have had as many updates as the bank (past any warm-up, which is what it used).
        key = prefix + "class_updates"
        if key not in state_dict and prefix + "num_updates" in state_dict:
            count = state_dict[prefix + "num_updates"].to(self.class_updates)
            state_dict[key] = count.expand_as(self.class_updates).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def mark_seeded(self) -> None:
        """Refresh :attr:`all_seeded` after ``initialised`` was written directly (one sync)."""
        self._all_seeded = bool(self.initialised.all())

    def _momentum(self, classes: torch.Tensor) -> torch.Tensor | float:
        """mu for the classes about to move: ``(C', 1, 1)``, or a float without warm-up."""
        if not self.momentum_warmup:
            return self.momentum
        done = self.class_updates[classes].double()
        warm = (1 + done) / (self.momentum_warmup + done)
        return warm.clamp(max=self.momentum).float().view(-1, 1, 1)

    def _slot_sums(
        self, features: torch.Tensor, ids: torch.Tensor, assignments: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sums (S, K, D), counts (S, K))`` of samples laid out L per slot."""
        num_slots = ids.numel() // length
        used = (ids < num_slots).view(num_slots, length, 1)
        # (not F.one_hot, which checks its input's range on the host)
        choices = torch.arange(self.num_subcentroids, device=ids.device)
        one_hot = (assignments.view(num_slots, length, 1) == choices) & used  # (S, L, K)
        stored = features.float().view(num_slots, length, self.dim)
        with torch.autocast(features.device.type, enabled=False):  # fp32 under autocast
            sums = torch.bmm(one_hot.transpose(1, 2).float(), stored)
        return sums, one_hot.sum(dim=1)  # int64 counts

    def _write_rows(self, classes: torch.Tensor, rows: torch.Tensor) -> None:
        """Set the sub-centroids of ``classes`` ``(S,)`` to ``rows`` ``(S, K, D)``.

        Out of place: the forward pass that scored this batch keeps the sub-centroids
        it used for its backward, so the update makes a new buffer instead of writing
        into that one (in place, backward would fail, under ``torch.compile`` too).
        """
        self.subcentroids = self.subcentroids.index_put((classes,), rows)

    def _reseed_dead(
        self,
        rows: torch.Tensor,
        features: torch.Tensor,
        ids: torch.Tensor,
        scores: torch.Tensor,
        classes: torch.Tensor,
        counts: torch.Tensor,
    ) -> torch.Tensor:
        """``rows`` ``(S, K, D)`` with the sub-centroids unused for ``dead_after`` updates
        moved onto poorly fitted samples.

        ``ids`` ``(M,)`` numbers the samples' class slots, rows of ``classes`` ``(S,)``
        (``S`` for left-out samples, which sort last); ``counts`` ``(S, K)`` holds
        this update's samples per sub-centroid. Only classes with at least K samples
        judge their sub-centroids.
        """
        num_slots = classes.numel()
        sizes = class_counts(ids, num_slots + 1)[:num_slots]
        eligible = (sizes >= self.num_subcentroids).unsqueeze(1)  # (S, 1)
        unused = (counts == 0) & eligible
        since = self.steps_since_used[classes]
        since = torch.where(unused, since + 1, torch.where(eligible, 0, since))
        dead = since >= self.dead_after
        # Computed every step and kept only where a sub-centroid is dead, so that the
        # step never asks the host whether one is. A sample fits poorly when even its
        # best sub-centroid is far from it. Order the samples by slot, worst fitted
        # first (one integer sort: the slot in the high bits, the fit quantised to
        # 2**-30 in the low ones); the j-th dead sub-centroid of a class takes the j-th
        # worst sample of that class.
        fit = scores.float().amax(dim=1).clamp(-1.0, 1.0)
        quantised = ((fit.double() + 1.0) * 2**30).long()  # [0, 2**31]
        order = torch.argsort(ids * 2**32 + quantised, stable=True)
        starts = torch.cumsum(sizes, dim=0) - sizes
        rank = (dead.cumsum(dim=1) - 1).clamp(min=0)
        rank = torch.minimum(rank, (sizes - 1).clamp(min=0).unsqueeze(1))
        position = (starts.unsqueeze(1) + rank).clamp(max=ids.numel() - 1)
        fresh = F.normalize(features[order[position]].float(), dim=-1)  # (S, K, D)
        self.steps_since_used[classes] = since.masked_fill(dead, 0)
        return torch.where(dead.unsqueeze(-1), fresh, rows)

    def _generator(self, salt: int) -> torch.Generator:
        """A CPU generator that every process builds identically, for seeding (a host
        step: it reads the update count back to the host)."""
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + int(self.num_updates)) * 8 + salt)
        return generator

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
