"""Progress bars over batches, built on the one iterator the caller consumes.

``tqdm.auto`` is ``tqdm.asyncio``: handed an iterable that is not an iterator (a
``DataLoader``), it makes an iterator of it that it never uses, and the loop makes
another. For a loader with workers that are not persistent, that first iterator starts
the workers and fills their prefetch queues for nothing, on every pass. Here the bar is
given the iterator itself and the length separately. ``tqdm`` is imported on the first
call: the core needs torch alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(
    batches: Iterable, description: str, enabled: bool = True, *, leave: bool = False, **options
) -> Any:
    """A ``tqdm`` bar over a fresh iterator of ``batches``.

    Args:
        batches: a ``DataLoader`` or any iterable (its ``len`` gives the bar's total when
            it has one).
        description: the bar's label.
        enabled: a bar on a terminal (none in logs: tqdm's ``disable=None``); ``False``:
            no bar at all.
        leave: keep the finished bar on screen.
        options: further ``tqdm`` keywords.
    """
    from tqdm.auto import tqdm

    try:
        total = len(batches)  # type: ignore[arg-type]
    except TypeError:  # an iterable without a length (a generator, an IterableDataset)
        total = None
    disable = None if enabled else True
    return tqdm(
        iter(batches), total=total, desc=description, disable=disable, leave=leave, **options
    )
