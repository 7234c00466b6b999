"""How fast sub-centroids move: the momentum mu of ``p <- normalise(mu p + (1 - mu) mean)``,
from a half-life (a horizon that follows the schedule) and through an early warm-up."""

from __future__ import annotations

import torch

from deepnc.nn import defaults

__all__ = ["half_life_momentum", "warmup_momentum"]


def half_life_momentum(half_life: float, limit: float = defaults.MOMENTUM) -> float:
    """The momentum mu whose moving average halves a sample's weight in ``half_life``
    updates, ``0.5 ** (1 / half_life)``, capped at ``limit`` (the paper's 0.999).

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


def warmup_momentum(updates_done: torch.Tensor, warmup: int, limit: float) -> torch.Tensor:
    """``(S, 1, 1)`` mu of the n-th update of each class, ``min(limit, (1 + n) / (W + n))``:
    the warm-up of TensorFlow's ``ExponentialMovingAverage(num_updates=...)``.

    Args:
        updates_done: ``(S,)`` int64, n, the updates each class has had.
        warmup: W >= 1.
        limit: the momentum it reaches.
    """
    done = updates_done.double()
    warm = (1 + done) / (warmup + done)
    return warm.clamp(max=limit).float().view(-1, 1, 1)
