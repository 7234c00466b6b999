"""Per-class FIFO memory of recent features, so that clustering sees enough samples.

A classification batch holds few samples of each class (ImageNet with batch 256 has
about 0.25 per class), far fewer than the K sub-centroids of a class. DNC therefore
clusters each class over a queue of its most recent detached, normalised features.
"""

from __future__ import annotations

import torch
from torch import nn

from deepnc.nn.grouping import class_counts, rank_within_class
from deepnc.utils.validate import check_positive_int

__all__ = ["MEMORY_DTYPES", "ClassMemory", "memory_dtype"]

MEMORY_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def memory_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype of a memory from its name (``"float32"``, ``"bfloat16"``,
    ``"float16"``) or a dtype among those.

    Raises:
        ValueError: another name or dtype, naming the allowed ones.
    """
    for name, value in MEMORY_DTYPES.items():
        if dtype in (name, value):
            return value
    raise ValueError(f"memory_dtype must be one of {sorted(MEMORY_DTYPES)}, got {dtype!r}")


class ClassMemory(nn.Module):
    """A FIFO queue of ``length`` features for each of ``num_classes`` classes.

    All state is in buffers (so ``state_dict`` carries it and a resumed run continues
    with the same memory), stored in ``dtype`` whatever the dtype of the inputs; readers
    compute in fp32.

    Args:
        num_classes: C.
        dim: D, the width of a feature.
        length: L, how many features each class keeps (the oldest are dropped first).
        dtype: how the features are stored: ``"float32"`` (default), or ``"bfloat16"`` /
            ``"float16"`` to halve the memory's C x L x D footprint (the clustering still
            computes in fp32; the stored unit vectors lose precision only).

    Buffers:
        features: ``(C, L, D)`` stored features in ``dtype``; slots ``[0, count[c])`` of class c
            are filled (in ring order, not time order).
        count: ``(C,)`` int64 number of filled slots, at most L.
        pointer: ``(C,)`` int64 slot the next feature of the class is written to.

    Example:
        >>> memory = ClassMemory(num_classes=3, dim=2, length=2)
        >>> memory.push(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 0, 0]))
        >>> memory.features[0].tolist()  # the oldest of the three was dropped
        [[1.0, 1.0], [0.0, 1.0]]
    """

    features: torch.Tensor
    count: torch.Tensor
    pointer: torch.Tensor

    def __init__(
        self, num_classes: int, dim: int, length: int, dtype: str | torch.dtype = "float32"
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.dim = check_positive_int("dim", dim)
        self.length = check_positive_int("length", length)
        storage = memory_dtype(dtype)
        self.register_buffer("features", torch.zeros(num_classes, length, dim, dtype=storage))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def push(
        self, features: torch.Tensor, labels: torch.Tensor, include: torch.Tensor | None = None
    ) -> None:
        """Append features to the queues of their classes, on the device, without a sync.

        When a class receives more than L features at once, only its last L are kept.

        Args:
            features: ``(M, D)`` features (detached by this method).
            labels: ``(M,)`` int64 class of each, in ``[0, C)``.
            include: ``(M,)`` bool, the rows to push (default all); the others are
                skipped without being copied out of the batch.
        """
        if features.shape[0] == 0:
            return
        labels = labels.to(self.count.device)
        if include is not None:
            labels = labels.masked_fill(~include, self.num_classes)  # an extra, unused class
        incoming = class_counts(labels, self.num_classes + 1)
        rank = rank_within_class(labels, self.num_classes + 1)
        written = labels < self.num_classes
        written &= rank >= incoming[labels] - self.length  # the last L of each class
        safe = labels.clamp(max=self.num_classes - 1)
        slot = (self.pointer[safe] + rank) % self.length
        values = features.detach().to(self.features.dtype)
        # Rows that write nothing copy the first written row onto its own slot (or, with
        # none, slot (0, 0) onto itself): duplicates then carry equal values, so the
        # result does not depend on the order in which the writes land. The buffer is
        # indexed as (class, slot), not through a flat view, which torch.compile could
        # only handle by copying the whole C x L x D memory.
        anchor = torch.argmax(written.to(torch.uint8)).view(1)  # a tensor: no .item()
        any_written = written.any()
        anchor_class = torch.where(any_written, safe.index_select(0, anchor), 0)
        anchor_slot = torch.where(any_written, slot.index_select(0, anchor), 0)
        anchor_value = torch.where(
            any_written, values.index_select(0, anchor), self.features[0, :1]
        )
        index = (torch.where(written, safe, anchor_class), torch.where(written, slot, anchor_slot))
        self.features.index_put_(index, torch.where(written.unsqueeze(1), values, anchor_value))
        incoming = incoming[: self.num_classes]
        self.pointer.copy_((self.pointer + incoming) % self.length)
        self.count.copy_((self.count + incoming).clamp(max=self.length))

    def filled(self) -> torch.Tensor:
        """``(C, L)`` bool, True at slots that hold a feature."""
        slots = torch.arange(self.length, device=self.count.device)
        return slots.unsqueeze(0) < self.count.unsqueeze(1)

    @torch.no_grad()
    def clear(self, classes: torch.Tensor | None = None) -> None:
        """Empty the queues of ``classes`` (``(C',)`` int64), or of every class."""
        index = slice(None) if classes is None else classes
        self.features[index] = 0.0
        self.count[index] = 0
        self.pointer[index] = 0

    def extra_repr(self) -> str:
        dtype = str(self.features.dtype).removeprefix("torch.")
        return (
            f"num_classes={self.num_classes}, dim={self.dim}, length={self.length}, dtype={dtype}"
        )
