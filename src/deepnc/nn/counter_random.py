"""Random numbers computed on the device from a step counter: no generator, no host sync.

The sub-centroid update draws a few random numbers per step (which pixels of a class
to cluster when it has too many, the assignment of the ``"random"`` ablation). A
``torch.Generator`` would need its seed read back to the host every step (the step
count lives in a buffer on the device) and cannot be traced by ``torch.compile``;
a CPU ``randperm`` would add a copy. Instead every number is a hash of
``(seed, step, salt, index)``, computed with integer tensor ops where the data lives:
every process of a DDP job computes the same numbers from the same buffers, a
resumed run draws what the uninterrupted run drew, and the draw is one traced graph.

The hash is Chris Wellons' ``lowbias32`` (two multiply-xorshift rounds), applied
twice; the arithmetic is kept below 2**63 so int64 never overflows.
"""

from __future__ import annotations

import torch

__all__ = ["random_bits"]

_MASK = 0xFFFFFFFF


def _multiply(x: torch.Tensor, constant: int) -> torch.Tensor:
    """``x * constant mod 2**32`` for ``x`` in ``[0, 2**32)``, without int64 overflow."""
    low, high = x & 0xFFFF, x >> 16
    return (low * constant + (((high * constant) & 0xFFFF) << 16)) & _MASK


def _hash(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _multiply(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _multiply(x, 0x846CA68B)
    return x ^ (x >> 16)


def random_bits(counter: torch.Tensor, count: int, *, seed: int, salt: int) -> torch.Tensor:
    """``count`` pseudo-random 32-bit integers, a pure function of the arguments.

    Args:
        counter: ``()`` int64 tensor (a step count), on the device the draw is wanted on.
        count: how many numbers.
        seed: the run's seed (>= 0).
        salt: tells apart the draws made from one counter for different purposes.

    Returns:
        ``(count,)`` int64 in ``[0, 2**32)``, on ``counter``'s device.

    Example:
        >>> step = torch.tensor(3)
        >>> a = random_bits(step, 4, seed=0, salt=1)
        >>> torch.equal(a, random_bits(step, 4, seed=0, salt=1))
        True
        >>> torch.equal(a, random_bits(step + 1, 4, seed=0, salt=1))
        False
    """
    counter = counter.long()
    key = _hash(torch.full_like(counter, (seed * 64 + salt) & _MASK))
    stream = _hash(_hash(counter & _MASK) ^ key)
    index = torch.arange(count, device=counter.device, dtype=torch.long)
    return _hash(stream ^ _hash(index ^ 0x9E3779B9))
