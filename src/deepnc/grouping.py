"""Group a flat batch of labelled samples into padded per-class slots, with no class loop.

The clustering of DNC solves one small problem per class. The samples of a batch
arrive flat, ``(M, D)`` with labels ``(M,)``; this module computes, with sorting and
scatter only, where each sample goes in a padded ``(C', N_max)`` layout (C' = the
classes present), so that batched solvers such as :func:`deepnc.sinkhorn.sinkhorn`
can run every class at once. Only indices are padded, never the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "ClassChunks",
    "ClassGroups",
    "chunk_by_class",
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


def rank_within_class(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Position of each sample among the samples of its class, in input order.

    Args:
        labels: ``(M,)`` int64 in ``[0, num_classes)``.

    Returns:
        ``(M,)`` int64; the first sample of each class gets 0, the next 1, and so on.
    """
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, dim=0) - counts
    sorted_rank = torch.arange(labels.numel(), device=labels.device) - starts[labels[order]]
    rank = torch.empty_like(labels)
    rank[order] = sorted_rank
    return rank


def keep_per_class(
    labels: torch.Tensor,
    num_classes: int,
    max_per_class: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(M,)`` bool: a uniformly random subset of at most ``max_per_class`` per class.

    Args:
        labels: ``(M,)`` int64 class of each sample, in ``[0, num_classes)``.
        generator: CPU generator of the subset, so that it is reproducible.
    """
    counts = torch.bincount(labels, minlength=num_classes)
    return _rank(labels, num_classes, counts, max_per_class, generator) < max_per_class


def _rank(labels, num_classes, counts, max_per_class, generator) -> torch.Tensor:
    """Rank within class, in a random order when some class exceeds ``max_per_class``."""
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
    counts = torch.bincount(labels, minlength=num_classes)
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
    counts = torch.bincount(labels, minlength=num_classes)
    present = max(int((counts > 0).sum()), 1)
    width = max(-(-labels.numel() // present), 1)
    chunks = (counts + width - 1) // width
    starts = torch.cumsum(chunks, dim=0) - chunks
    rank = rank_within_class(labels, num_classes)
    row_class = torch.repeat_interleave(torch.arange(num_classes, device=labels.device), chunks)
    return ClassChunks(
        row=starts[labels] + rank // width, column=rank % width, row_class=row_class, width=width
    )
