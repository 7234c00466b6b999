"""Group a flat batch of labelled samples by class, with no class loop.

The clustering of DNC solves one small problem per class. The samples of a batch
arrive flat, ``(M, D)`` with labels ``(M,)``; this module computes, with sorting and
scatter only, where each sample goes.

Two kinds of layout live here. The training step uses the static ones, whose shapes
depend on the batch's *shape* only, never on its labels, and which never read a value
back to the host: :func:`class_counts`, :func:`rank_within_class`,
:func:`keep_per_class` and :func:`class_slots` (a fixed number of class slots with a
validity mask). Seeding and scoring outside the step use the compact, data-dependent
ones, :func:`group_by_class` (a padded ``(C', N_max)`` layout of the classes present)
and :func:`chunk_by_class`, which size their outputs from the counts (a host sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = [
    "ClassChunks",
    "ClassGroups",
    "ClassSlots",
    "chunk_by_class",
    "class_counts",
    "class_slots",
    "group_by_class",
    "keep_per_class",
    "rank_within_class",
]


@dataclass(frozen=True)
class ClassGroups:
    """Padded per-class layout of the samples of a batch.

    Attributes:
        classes: ``(C',)`` int64 class of each row, ascending.
        rows: ``(C', N_max)`` int64 index into the flat samples; ``0`` at padding.
        mask: ``(C', N_max)`` bool, True where ``rows`` points at a real sample.
    """

    classes: torch.Tensor
    rows: torch.Tensor
    mask: torch.Tensor

    @property
    def counts(self) -> torch.Tensor:
        """``(C',)`` number of real samples in each class row."""
        return self.mask.sum(dim=1)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Pad per-sample ``values`` ``(M, ...)`` to ``(C', N_max, ...)``, zeros at padding."""
        padded = values[self.rows]
        shape = self.mask.shape + (1,) * (values.dim() - 1)
        return padded * self.mask.view(shape).to(padded.dtype)


class ClassSlots(NamedTuple):
    """A fixed number S of class slots for one update, whatever the labels.

    A batch of M samples touches at most ``min(M, C)`` classes, so S = ``min(M, C)``
    slots always suffice; slots beyond the classes present are marked invalid and
    must change nothing.

    Attributes:
        classes: ``(S,)`` int64 distinct classes, the present ones first, ascending.
        valid: ``(S,)`` bool, True for the slots of present classes.
        ids: ``(M,)`` int64 slot of each sample, ``S`` for a sample left out.
    """

    classes: torch.Tensor
    valid: torch.Tensor
    ids: torch.Tensor


def class_counts(
    labels: torch.Tensor, num_classes: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``(num_classes,)`` int64 samples per class, like ``bincount`` but without a sync.

    CUDA's ``bincount`` reads the labels' minimum and maximum back to the host even
    with ``minlength``; ``index_add_`` does not.

    Args:
        labels: ``(M,)`` int64 in ``[0, num_classes)``.
        weights: ``(M,)`` bool or int, how much each sample counts (default 1).
    """
    if weights is None:
        weights = torch.ones_like(labels)
    counts = torch.zeros(num_classes, dtype=torch.long, device=labels.device)
    return counts.index_add_(0, labels, weights.long())


def rank_within_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Position of each sample among the samples of its class, in input order.

    Args:
        labels: ``(M,)`` int64 in ``[0, num_classes)``.

    Returns:
        ``(M,)`` int64; the first sample of each class gets 0, the next 1, and so on.
    """
    return _rank_in_order(labels, num_classes, torch.argsort(labels, stable=True))


def _rank_in_order(labels: torch.Tensor, num_classes: int, order: torch.Tensor) -> torch.Tensor:
    """Rank within class of each sample, given ``order`` that sorts the labels."""
    counts = class_counts(labels, num_classes)
    starts = torch.cumsum(counts, dim=0) - counts
    sorted_rank = torch.arange(labels.numel(), device=labels.device) - starts[labels[order]]
    return torch.empty_like(labels).scatter_(0, order, sorted_rank)


def keep_per_class(
    labels: torch.Tensor, num_classes: int, max_per_class: int, keys: torch.Tensor
) -> torch.Tensor:
    """``(M,)`` bool: a random subset of exactly ``min(count, max_per_class)`` per class.

    The samples of each class are ranked by ``keys`` and the first ``max_per_class``
    kept, so the subset is uniformly random when the keys are.

    Args:
        labels: ``(M,)`` int64 class of each sample, in ``[0, num_classes)``.
        keys: ``(M,)`` int64 in ``[0, 2**32)`` random keys (see
            :func:`deepnc.nn.counter_random.random_bits`).
    """
    order = torch.argsort(labels * 2**32 + keys)
    return _rank_in_order(labels, num_classes, order) < max_per_class


def class_slots(labels: torch.Tensor, include: torch.Tensor | None, num_classes: int) -> ClassSlots:
    """The :class:`ClassSlots` of the included samples of a batch.

    Args:
        labels: ``(M,)`` int64 in ``[0, num_classes)``.
        include: ``(M,)`` bool, the samples that take part (default all).

    Returns:
        ``min(M, num_classes)`` slots; shapes depend on ``M`` and ``num_classes`` only.
    """
    device = labels.device
    num_slots = min(labels.numel(), num_classes)
    if include is not None:
        labels = labels.masked_fill(~include, num_classes)  # left out: an extra class
    present = class_counts(labels, num_classes + 1)[:num_classes] > 0
    classes = torch.argsort((~present).to(torch.uint8), stable=True)[:num_slots]
    valid = present[classes]
    slot = torch.where(valid, torch.arange(num_slots, device=device), num_slots)
    slot_of_class = torch.full((num_classes + 1,), num_slots, dtype=torch.long, device=device)
    slot_of_class[classes] = slot
    return ClassSlots(classes=classes, valid=valid, ids=slot_of_class[labels])


def _rank(labels, num_classes, counts, max_per_class, generator) -> torch.Tensor:
    """Rank within class, in a random order when some class exceeds ``max_per_class``.

    For seeding (a host step): it reads the largest count back to the host.
    """
    if max_per_class is None or not labels.numel() or int(counts.max()) <= max_per_class:
        return rank_within_class(labels, num_classes)
    shuffle = torch.randperm(labels.numel(), generator=generator).to(labels.device)
    rank = torch.empty_like(labels)
    rank[shuffle] = rank_within_class(labels[shuffle], num_classes)
    return rank


def group_by_class(
    labels: torch.Tensor,
    num_classes: int,
    *,
    max_per_class: int | None = None,
    generator: torch.Generator | None = None,
) -> ClassGroups:
    """Padded per-class layout of a flat batch, optionally capped per class.

    Args:
        labels: ``(M,)`` int64 class of each sample, in ``[0, num_classes)``.
        num_classes: C.
        max_per_class: keep at most this many samples per class. Where a class has
            more, a uniformly random subset is kept (drawn with ``generator``, so it is
            reproducible); ``None`` keeps every sample.
        generator: CPU generator for that subset.

    Returns:
        A :class:`ClassGroups` over the classes that have at least one sample.
    """
    device = labels.device
    counts = class_counts(labels, num_classes)
    rank = _rank(labels, num_classes, counts, max_per_class, generator)
    if max_per_class is not None:
        counts = counts.clamp(max=max_per_class)
    classes = torch.nonzero(counts, as_tuple=True)[0]
    width = int(counts.max()) if classes.numel() else 0
    slot_of_class = torch.full((num_classes,), -1, dtype=torch.long, device=device)
    slot_of_class[classes] = torch.arange(classes.numel(), device=device)

    keep = rank < width
    rows = torch.zeros(classes.numel(), width, dtype=torch.long, device=device)
    mask = torch.zeros(classes.numel(), width, dtype=torch.bool, device=device)
    slot, position = slot_of_class[labels[keep]], rank[keep]
    rows[slot, position] = torch.nonzero(keep, as_tuple=True)[0]
    mask[slot, position] = True
    return ClassGroups(classes=classes, rows=rows, mask=mask)


@dataclass(frozen=True)
class ClassChunks:
    """Samples cut into rows of equal width, each row holding samples of one class.

    Unlike :class:`ClassGroups` (one row per class, as wide as the largest class), a
    large class spans several rows here, so padding the *features* this way costs at
    most about twice the samples, however unbalanced the classes are.

    Attributes:
        row: ``(M,)`` int64 row of each sample.
        column: ``(M,)`` int64 position of each sample in its row.
        row_class: ``(R,)`` int64 class of each row.
        width: samples per row.
    """

    row: torch.Tensor
    column: torch.Tensor
    row_class: torch.Tensor
    width: int

    def pad(self, values: torch.Tensor) -> torch.Tensor:
        """``(M, ...)`` per-sample values to ``(R, width, ...)``, zeros at padding."""
        padded = values.new_zeros((self.row_class.numel(), self.width, *values.shape[1:]))
        padded[self.row, self.column] = values
        return padded


def chunk_by_class(labels: torch.Tensor, num_classes: int) -> ClassChunks:
    """Cut a flat batch into same-class rows of width ``ceil(M / classes present)``.

    Args:
        labels: ``(M,)`` int64 class of each sample, in ``[0, num_classes)``.

    Returns:
        A :class:`ClassChunks` with at most ``M / width + classes present`` rows.
    """
    counts = class_counts(labels, num_classes)
    present = max(int((counts > 0).sum()), 1)
    width = max(-(-labels.numel() // present), 1)
    chunks = (counts + width - 1) // width
    starts = torch.cumsum(chunks, dim=0) - chunks
    rank = rank_within_class(labels, num_classes)
    row_class = torch.repeat_interleave(torch.arange(num_classes, device=labels.device), chunks)
    return ClassChunks(
        row=starts[labels] + rank // width, column=rank % width, row_class=row_class, width=width
    )
