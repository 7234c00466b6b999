"""Where a run executes: device choice, the torchrun process group, and seeds.

One code path: a plain ``deepnc train`` is a world of one process; under ``torchrun``
the environment variables ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` start DDP (NCCL
on CUDA, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

__all__ = [
    "Runtime",
    "deterministic_algorithms",
    "epoch_seed",
    "join_process_group",
    "seed_everything",
    "select_device",
    "start_runtime",
    "stop_runtime",
]

log = logging.getLogger("deepnc")


@dataclass
class Runtime:
    """The process's place in the run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    started_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's CUDA device when there is one, else the CPU.

    Raises:
        ValueError: CUDA asked for but absent, or more torchrun processes than GPUs.
    """
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"process {local_rank} wants cuda:{device.index} but this machine has "
            f"{torch.cuda.device_count()} GPU(s): start at most that many processes per node, "
            "or pass --device cpu"
        )
    return device


def start_runtime(device: str = "auto") -> Runtime:
    """Choose the device and join the torchrun process group if there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = select_device(device, local_rank)
    if world <= 1:
        return Runtime(chosen)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    started = False
    if not dist.is_initialized():
        join_process_group("nccl" if chosen.type == "cuda" else "gloo", world)
        started = True
    return Runtime(chosen, dist.get_rank(), dist.get_world_size(), started)


def join_process_group(backend: str, world: int) -> None:
    """``init_process_group`` of ``world`` processes from torchrun's environment.

    torchrun's agent hands one key-value store to every restarted group, and a process
    that reads a dead group's address from it fails to connect or hangs
    (pytorch/pytorch#135712). On one node every process has the agent's restart count,
    so each restart joins on keys of its own (``deepnc/restart_<n>/``); across nodes the
    counts can differ, so the group joins as torch does it and process 0 names
    torchrun's switch for a fresh store per restart.
    """
    environment = os.environ
    if environment.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend)
        return
    restart = int(environment.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if int(environment.get("GROUP_WORLD_SIZE", "1")) > 1:
        restarts = int(environment.get("TORCHELASTIC_MAX_RESTARTS", "0"))
        if restarts > 0 and environment.get("RANK") == "0":
            log.warning(
                "torchrun restarts across nodes share one store whose old keys can stall "
                "the restarted group (pytorch/pytorch#135712): start torchrun with "
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its environment"
            )
        dist.init_process_group(backend)
        return
    store = dist.TCPStore(
        environment["MASTER_ADDR"],
        int(environment["MASTER_PORT"]),
        world,
        is_master=False,
        timeout=default_pg_timeout,
    )
    own_keys = dist.PrefixStore(f"deepnc/restart_{restart}/", store)
    dist.init_process_group(
        backend, store=own_keys, rank=int(environment["RANK"]), world_size=world
    )


def stop_runtime(runtime: Runtime) -> None:
    if runtime.started_group and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds third-party code using the global state)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Inside, torch uses deterministic kernels (cuDNN, cuBLAS) where it has them, so a
    CUDA run and its resumption repeat bit for bit; the previous setting is restored after.

    Kernels with no deterministic version (for example the CUDA backward of bilinear
    upsampling, used by segmentation models) only warn: such runs stay close but not
    bit-identical. Costs speed on CUDA; changes nothing on CPU, which is deterministic.
    """
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch on one process: a resumed run re-seeds exactly as it went.

    >>> epoch_seed(0, 1) != epoch_seed(0, 2) != epoch_seed(1, 1)
    True
    """
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + 17) % 2**63
