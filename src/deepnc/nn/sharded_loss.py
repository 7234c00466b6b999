"""The pieces of a classifier whose classes are split across processes (the Partial FC
pattern): which classes each process owns, which of them a step scores (negative-class
sampling), the cross-entropy over all of them, and the top-k merged from every shard.

Every process holds the logits of the whole gathered batch for its own classes, ``(M,
C_r)``. The softmax over all classes needs only two numbers per sample from each
process: its largest logit and its sum of exponentials, so the cross-entropy is a
max all-reduce and a sum all-reduce of ``(M,)`` vectors, never a ``(M, C)`` matrix.
Without a process group the same functions compute the ordinary cross-entropy.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from deepnc.nn import distributed
from deepnc.nn.counter_random import random_bits

__all__ = [
    "ShardedScores",
    "merged_topk",
    "sample_classes",
    "shard_range",
    "sharded_cross_entropy",
]


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, end)``: the contiguous classes of process ``rank``; the first
    ``C mod W`` processes own one class more than the others.

    >>> [shard_range(10, r, 3) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    if num_classes < world_size:
        raise ValueError(
            f"a sharded head needs at least one class per process: {num_classes} classes "
            f"on {world_size} processes"
        )
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def sample_classes(
    targets: torch.Tensor,
    class_range: tuple[int, int],
    num_sampled: int,
    step: torch.Tensor,
    seed: int,
) -> torch.Tensor:
    """``(S,)`` int64 sorted local classes a step scores: every class of this shard
    present in the batch, then seeded random others up to S (Partial FC's
    ``sample_rate``), drawn on the device from the step counter (no host sync).

    Args:
        targets: ``(M,)`` int64 local class of each sample, C_r where the sample's class
            belongs to another shard.
        class_range: ``[start, end)`` of this shard (C_r classes): the draws are made per
            global class, so that shards draw independently.
        num_sampled: S <= C_r.
        step: ``()`` int64 step counter (the bank's ``num_updates``).
    """
    start, end = class_range
    num_local = end - start
    bits = random_bits(step, end, seed=seed, salt=5)[start:]
    priority = bits.double() / 2.0**32  # [0, 1)
    present = torch.zeros(num_local + 1, dtype=torch.bool, device=targets.device)
    present[targets] = True
    priority = torch.where(present[:num_local], 2.0, priority)
    return priority.topk(num_sampled).indices.sort().values


class ShardedScores(NamedTuple):
    """What :func:`sharded_cross_entropy` returns.

    Attributes:
        loss: ``()`` mean cross-entropy over the gathered batch (the same on every process).
        prediction: ``(M,)`` int64 class of the largest score over all processes' classes
            (the first one on a tie, like ``argmax``).
    """

    loss: torch.Tensor
    prediction: torch.Tensor


def sharded_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    scores: torch.Tensor,
    class_start: int,
    *,
    scale: float,
    num_scored: int,
    label_smoothing: float = 0.0,
) -> ShardedScores:
    """Cross-entropy over the classes of every process, from each process's own columns.

    Each process calls it with the same gathered batch. The gradient that reaches each
    process's logits is ``world_size`` times that of the mean loss (every process
    back-propagates the same loss through sum all-reduces), which the backbone's DDP
    gradient averaging divides back: the network moves as with one unsharded head.

    Args:
        logits: ``(M, S)`` fp32 logits of this process's scored classes (all of them, or
            a sample).
        targets: ``(M,)`` int64 column of each sample's class in ``logits``, or -1 where
            another process owns it (or this one did not score it).
        scores: ``(M, C_r)`` every own class's score, without gradient, for the prediction.
        class_start: the global index of this process's first class.
        scale: the logits are at most ``scale`` times the largest score (``1 / tau`` for
            cosine logits), so the largest score over all processes, scaled, shifts the
            exponentials safely: one max all-reduce serves the prediction and the shift.
        num_scored: the classes scored over all processes (the smoothing's average).
        label_smoothing: epsilon in [0, 1), as ``F.cross_entropy``'s.
    """
    best, index = scores.max(dim=1)
    top = distributed.all_reduce(best, "max")
    shift = top * scale
    candidate = torch.where(best == top, index + class_start, torch.iinfo(torch.long).max)
    prediction = distributed.all_reduce(candidate, "min")

    shifted = logits - shift.unsqueeze(1)
    owned = targets >= 0
    target = shifted.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
    parts = [shifted.exp().sum(dim=1), torch.where(owned, target, 0.0)]
    if label_smoothing:
        parts.append(shifted.sum(dim=1))
    sums = distributed.all_reduce_sum_with_grad(torch.stack(parts, dim=1))  # (M, 2 or 3)
    log_normaliser = sums[:, 0].log()
    loss = log_normaliser - sums[:, 1]
    if label_smoothing:
        smooth = log_normaliser - sums[:, 2] / num_scored
        loss = (1.0 - label_smoothing) * loss + label_smoothing * smooth
    return ShardedScores(loss=loss.mean(), prediction=prediction)


def merged_topk(
    scores: torch.Tensor, class_start: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values (M, k), classes (M, k) int64)``: the k best classes over every process,
    from each process's ``(M, C_r)`` scores of the same gathered rows (k <= C)."""
    local = min(k, scores.shape[1])
    values, index = scores.topk(local, dim=1)
    if local < k:  # a shard smaller than k: pad with scores nothing can beat
        pad = (0, k - local)
        values = torch.nn.functional.pad(values, pad, value=float("-inf"))
        index = torch.nn.functional.pad(index, pad, value=-1 - class_start)
    packed = torch.cat([values.double(), (index + class_start).double()], dim=1)
    gathered = distributed.all_gather_rows(packed.unsqueeze(0))  # (W, M, 2k)
    values = gathered[..., :k].permute(1, 0, 2).flatten(1)  # (M, W * k)
    classes = gathered[..., k:].permute(1, 0, 2).flatten(1)
    best, where = values.topk(k, dim=1)
    return best.to(scores.dtype), classes.gather(1, where).long()
