"""The state of a sharded DNC head cut to any number of shards: a shard's state
assembled from pieces that cover the classes (the shards of a run with another number
of processes, or one unsharded head), reading only the rows it needs.

A per-class entry (sub-centroids, memory, counters: first dimension the classes) is cut
by rows; every other entry (the LayerNorm, the projection, the update counter) is the
same on every shard and read from the first piece.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["PER_CLASS_ENTRIES", "StatePiece", "assemble_state", "is_per_class"]

PER_CLASS_ENTRIES = (
    "bank.subcentroids",
    "bank.initialised",
    "bank.steps_since_used",
    "bank.assigned",
    "bank.seen",
    "bank.correct",
    "bank.class_updates",
    "memory.features",
    "memory.count",
    "memory.pointer",
)
"""State entries whose first dimension is the classes."""


def is_per_class(key: str) -> bool:
    return key in PER_CLASS_ENTRIES


@dataclass(frozen=True)
class StatePiece:
    """The state of classes ``[start, end)``, read lazily.

    Attributes:
        start, end: the classes this piece holds.
        keys: its entries.
        read: ``read(key, rows)``: the entry's rows ``rows`` (a slice relative to
            ``start``) for a per-class entry, the whole entry when ``rows`` is None.
    """

    start: int
    end: int
    keys: tuple[str, ...]
    read: Callable[[str, slice | None], torch.Tensor]

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], start: int = 0) -> StatePiece:
        """A piece over an in-memory state dict (a shard's, or an unsharded head's with
        ``start`` 0); entries of neither kind of head (``input_checks``) are left out."""
        keys = tuple(k for k in state if not k.startswith(("input_checks.", "logit_norm.")))
        end = start + state["bank.subcentroids"].shape[0]
        return cls(
            start, end, keys, lambda key, rows: state[key] if rows is None else state[key][rows]
        )


def assemble_state(pieces: Sequence[StatePiece], start: int, end: int) -> dict[str, torch.Tensor]:
    """The state dict of the shard of classes ``[start, end)`` from ``pieces``.

    Raises:
        ValueError: the pieces do not cover ``[0, C)`` exactly once, in order, with the
            same entries, or do not reach ``end``.
    """
    pieces = sorted(pieces, key=lambda piece: piece.start)
    if not pieces:
        raise ValueError("no state to assemble a shard from")
    covered = 0
    for piece in pieces:
        if piece.start != covered or piece.end <= piece.start:
            raise ValueError(
                f"the shards do not cover the classes once each: classes from {covered} "
                f"expected, a shard holds [{piece.start}, {piece.end})"
            )
        if set(piece.keys) != set(pieces[0].keys):
            raise ValueError("the shards hold different entries: they come from different heads")
        covered = piece.end
    if end > covered or not 0 <= start < end:
        raise ValueError(f"classes [{start}, {end}) asked of shards that hold [0, {covered})")
    state = {}
    for key in pieces[0].keys:
        if not is_per_class(key):
            state[key] = pieces[0].read(key, None)
            continue
        parts = []
        for piece in pieces:
            low, high = max(start, piece.start), min(end, piece.end)
            if low < high:
                parts.append(piece.read(key, slice(low - piece.start, high - piece.start)))
        state[key] = torch.cat(parts)
    return state
