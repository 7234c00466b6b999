"""Checkpoints of a sharded DNC head: one safetensors file per process, each holding its
classes, loadable by any number of processes (each reads only the rows of its classes)
and, when it fits, as one unsharded head for export.

A file ``head-shard-{rank}-of-{world}.safetensors`` holds the process's head state and,
as JSON metadata, its classes ``[start, end)``, the class count and the head's options.
Written atomically, read without executing code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from deepnc.engine.checkpoint import save_checkpoint
from deepnc.nn import distributed, sharded_head
from deepnc.nn.head import DNCHead
from deepnc.nn.shard_state import StatePiece, is_per_class
from deepnc.nn.sharded_head import ShardedDNCHead

__all__ = [
    "UNSHARDED_LIMIT_BYTES",
    "load_head_shard",
    "save_head_shard",
    "shard_pieces",
    "unsharded_head",
]

UNSHARDED_LIMIT_BYTES = 4 * 2**30
"""The largest head state :func:`unsharded_head` assembles in one process by default."""


def shard_file(folder: Path, rank: int, world_size: int) -> Path:
    return folder / f"head-shard-{rank:05d}-of-{world_size:05d}.safetensors"


def save_head_shard(head: ShardedDNCHead, folder: str | Path) -> Path:
    """Write this process's shard of ``head`` into ``folder`` (every process calls it;
    shard files of another process count there are removed first by process 0)."""
    folder = Path(folder)
    if head.rank == 0 and folder.is_dir():
        for old in folder.glob("head-shard-*-of-*.safetensors"):
            if old.name.split("-of-")[1] != f"{head.world_size:05d}.safetensors":
                old.unlink()
                old.with_suffix(".json").unlink(missing_ok=True)
    distributed.barrier()
    path = shard_file(folder, head.rank, head.world_size)
    state = {
        "kind": "dnc-head-shard",
        "class_start": head.class_start,
        "class_end": head.class_end,
        "num_classes": head.num_classes,
        "world_size": head.world_size,
        "in_features": head.in_features,
        "options": head.options,
    }
    save_checkpoint(path, head.state_dict(), state)
    distributed.barrier()
    return path


def shard_pieces(folder: str | Path) -> tuple[list[StatePiece], dict]:
    """``(pieces, facts)``: the shard files in ``folder`` as lazily read state pieces,
    and the facts of the first (class count, options, ...).

    Raises:
        FileNotFoundError: no shard file in ``folder``.
        ValueError: files of different heads or class counts.
    """
    files = sorted(Path(folder).glob("head-shard-*-of-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no head-shard-*.safetensors file in {folder}")
    pieces, facts = [], None
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            state = json.loads((handle.metadata() or {}).get("deepnc", "{}"))
            keys = tuple(handle.keys())
        if state.get("kind") != "dnc-head-shard":
            raise ValueError(f"{path} is not a deepnc head shard")
        if facts is not None and state["num_classes"] != facts["num_classes"]:
            raise ValueError(
                f"{path} holds a head of {state['num_classes']} classes, "
                f"{files[0]} one of {facts['num_classes']}"
            )
        facts = facts or state
        pieces.append(StatePiece(state["class_start"], state["class_end"], keys, _reader(path)))
    return pieces, facts


def _reader(path: Path):
    def read(key: str, rows: slice | None) -> torch.Tensor:
        with safe_open(str(path), framework="pt") as handle:
            if rows is None or not is_per_class(key):
                return handle.get_tensor(key)
            return handle.get_slice(key)[rows]

    return read


def load_head_shard(head: ShardedDNCHead, folder: str | Path) -> None:
    """Load ``head``'s classes from the shard files in ``folder``, written by any number
    of processes: the same number resumes bit for bit; another reads its rows."""
    pieces, _ = shard_pieces(folder)
    head.load_pieces(pieces)


def unsharded_head(folder: str | Path, *, limit_bytes: int = UNSHARDED_LIMIT_BYTES) -> DNCHead:
    """The whole head of the shard files in ``folder`` as one :class:`~deepnc.DNCHead`
    on the CPU (for export and single-process prediction).

    Raises:
        MemoryError: its state exceeds ``limit_bytes``, naming the size.
    """
    pieces, facts = shard_pieces(folder)
    size = sum(Path(p).stat().st_size for p in Path(folder).glob("head-shard-*.safetensors"))
    if size > limit_bytes:
        raise MemoryError(
            f"the head's state is {size / 2**30:.1f} GiB, over the {limit_bytes / 2**30:.1f} GiB "
            "that one process assembles: predict with the sharded head under torchrun "
            "(ShardedDNCHead.topk), or raise limit_bytes"
        )
    return sharded_head.unsharded_head(
        facts["in_features"], facts["num_classes"], facts["options"], pieces
    )
