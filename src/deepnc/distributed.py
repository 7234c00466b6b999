"""Collectives for the sub-centroid update, chosen once, with no-op fallbacks.

Under ``torch.distributed`` the update must see the features of every process and
every process must end the step with identical sub-centroids. Without a process
group (CPU, one GPU) the same code runs and these functions do nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_rows", "broadcast_", "is_distributed", "world_size"]


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dimension 0 the tensors of all processes, in rank order.

    Processes may hold different numbers of rows (the rest of the shape must agree):
    rows are padded to the largest count for the collective and trimmed after.

    Args:
        tensor: ``(M_r, ...)`` on this process.

    Returns:
        ``(sum_r M_r, ...)``; ``tensor`` itself without a process group.
    """
    if not is_distributed():
        return tensor
    size = world_size()
    count = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    counts = [torch.empty_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(gathered, sizes, strict=True)])


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with the copy of process ``src`` (no-op alone)."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor
