"""Every image of a split decoded once before training, so that a bad file stops a run
before its first step (one line naming it) or is left out and counted, never midway with
a traceback.

A split whose items are not files (an in-memory set) has nothing to check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from deepnc.data.base import item_file

__all__ = ["UnreadableImages", "unreadable_items", "without_items"]

SHOWN = 5  # files named in an error; the rest are counted


class UnreadableImages(ValueError):
    """Image files that cannot be decoded; the message names the first few and counts all.

    Attributes:
        messages: one ``"cannot read image PATH: reason"`` per file.
    """

    def __init__(self, split: str, messages: list[str]) -> None:
        self.messages = messages
        shown = "; ".join(messages[:SHOWN])
        more = f" (and {len(messages) - SHOWN} more)" if len(messages) > SHOWN else ""
        super().__init__(
            f"{len(messages)} unreadable image(s) in the {split} split: {shown}{more}. "
            "Remove or replace them, or set skip_unreadable: true to leave them out"
        )


def unreadable_items(
    dataset: Dataset,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[tuple[int, str]]:
    """``[(index, message), ...]``: the items of ``dataset`` whose file PIL cannot decode
    in full (a truncated file opens but does not load). Empty for a set without files.

    Args:
        progress: wraps the range of indices (a progress bar), or ``None``.
    """
    if len(dataset) == 0 or item_file(dataset, 0) is None:
        return []
    found = []
    indices = range(len(dataset))
    for index in progress(indices) if progress else indices:
        path = item_file(dataset, index)
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            found.append((index, f"cannot read image {path}: {error}"))
    return found


def without_items(dataset: Dataset, indices: Iterable[int]) -> Dataset:
    """``dataset`` without the items at ``indices`` (a ``Subset`` keeping the order)."""
    dropped = set(indices)
    if not dropped:
        return dataset
    return Subset(dataset, [i for i in range(len(dataset)) if i not in dropped])
