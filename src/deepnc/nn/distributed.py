"""Collectives for the sub-centroid update, chosen once, with no-op fallbacks.

Under ``torch.distributed`` the update must see the features of every process and
every process must end the step with identical sub-centroids. Without a process
group (CPU, one GPU) the same code runs and these functions do nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_objects",
    "all_gather_rows",
    "all_gather_rows_with_grad",
    "all_gather_together",
    "all_reduce",
    "all_reduce_sum_with_grad",
    "barrier",
    "broadcast_",
    "is_distributed",
    "rank",
    "share_from_first_process",
    "world_size",
]


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_gather_rows(tensor: torch.Tensor, *, check_sizes: bool = False) -> torch.Tensor:
    """Concatenate along dimension 0 the tensors of all processes, in rank order.

    Every process must hold the same number of rows (``DistributedSampler`` gives every
    process the same number of samples, so the same batch sizes): one collective, and
    nothing read back to the host.

    Args:
        tensor: ``(M, ...)`` on this process, the same shape on every process.
        check_sizes: first compare the row counts of all processes and raise a clear
            error where they differ (one more collective and a host sync; the head
            does it on its first updates).

    Returns:
        ``(world_size * M, ...)``; ``tensor`` itself without a process group.

    Raises:
        ValueError: with ``check_sizes``, when the processes hold different row counts.
    """
    if not is_distributed():
        return tensor
    size = world_size()
    if check_sizes:
        count = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        counts = [torch.empty_like(count) for _ in range(size)]
        dist.all_gather(counts, count)
        sizes = [int(c) for c in counts]
        if len(set(sizes)) > 1:
            raise ValueError(
                "every process must give the DNC head the same number of samples per step "
                f"(use a DistributedSampler), got {sizes} on ranks 0..{size - 1}"
            )
    tensor = tensor.contiguous()
    gathered = [torch.empty_like(tensor) for _ in range(size)]
    dist.all_gather(gathered, tensor)  # gloo has no all_gather_into_tensor
    return torch.cat(gathered)


def all_gather_together(
    *tensors: torch.Tensor, check_sizes: bool = False
) -> tuple[torch.Tensor, ...]:
    """:func:`all_gather_rows` of several tensors with M rows each, in one collective.

    They travel packed as the columns of one fp32 ``(M, total)`` tensor and come back in
    their own dtypes: exact for floats up to fp32, bools, and integers below 2**24
    (class indices).

    Args:
        tensors: ``(M,)`` or ``(M, k)`` each.
    """
    if not is_distributed():
        return tensors
    columns = [t.float().reshape(t.shape[0], -1) for t in tensors]
    packed = all_gather_rows(torch.cat(columns, dim=1), check_sizes=check_sizes)
    gathered, start = [], 0
    for tensor, column in zip(tensors, columns, strict=True):
        width = column.shape[1]
        part = packed[:, start : start + width].reshape(-1, *tensor.shape[1:])
        gathered.append(part.to(tensor.dtype))
        start += width
    return tuple(gathered)


def all_gather_rows_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`all_gather_rows` through which gradients flow back: the gradient of each
    process's rows is the sum of every process's gradient of them (an all-reduce of the
    gathered gradient, of which each process keeps its own rows).

    Args:
        tensor: ``(M, ...)``, the same shape on every process.

    Returns:
        ``(world_size * M, ...)``; ``tensor`` itself without a process group.
    """
    return _GatherRows.apply(tensor) if is_distributed() else tensor


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rows = tensor.shape[0]
        return all_gather_rows(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def all_reduce_sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over processes of ``tensor``, differentiable: the gradient of each
    process's input is the sum of every process's gradient of the output.
    ``tensor`` itself without a process group."""
    return _SumOverProcesses.apply(tensor) if is_distributed() else tensor


class _SumOverProcesses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce(tensor: torch.Tensor, op: str) -> torch.Tensor:
    """``tensor`` reduced over processes by ``op`` (``"sum"``, ``"max"`` or ``"min"``),
    out of place and without gradient; ``tensor`` itself without a process group."""
    if not is_distributed():
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=getattr(dist.ReduceOp, op.upper()))
    return reduced


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with the copy of process ``src`` (no-op alone)."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def share_from_first_process(*tensors: torch.Tensor) -> None:
    """Make every process hold process 0's ``tensors`` (in place), where that is needed.

    Every process runs the same update on the same all-gathered samples, which is
    bit-identical on the CPU. CUDA's ``index_add_`` adds in a nondeterministic order, so
    there process 0's result is broadcast; on the CPU nothing is sent.
    """
    if is_distributed() and tensors[0].device.type != "cpu":
        for tensor in tensors:
            broadcast_(tensor)


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` alone."""
    if not is_distributed():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Wait for every process (nothing alone)."""
    if is_distributed():
        dist.barrier()
