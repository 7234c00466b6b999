"""Optimisers and per-step learning-rate schedules with linear warm-up.

>>> import torch
>>> model = torch.nn.Linear(2, 2)
>>> optimizer = build_optimizer(model, "sgd", lr=0.1)
>>> scheduler = build_scheduler(optimizer, "cosine", total_steps=10, warmup_steps=2)
>>> [round(factor, 3) for factor in map(schedule_factor("cosine", 10, 2), range(0, 10, 3))]
[0.333, 0.962, 0.5, 0.038]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_scheduler", "schedule_factor"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "poly", "step", "constant")
POLY_POWER = 0.9  # the DeepLab / mmsegmentation poly schedule: (1 - progress) ** 0.9


def build_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over the trainable parameters.

    Biases and normalisation weights (every parameter with fewer than 2 dimensions) get
    no weight decay, the usual practice; DNC sub-centroids are buffers and are never seen
    by the optimiser at all.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")


def schedule_factor(
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> Callable[[int], float]:
    """The multiplier of the base learning rate at optimisation step ``t`` (0-based).

    Warm-up rises linearly from ``1 / (warmup_steps + 1)`` to 1; then ``cosine`` decays to
    0 at ``total_steps``, ``poly`` as ``(1 - progress) ** 0.9`` (segmentation's usual
    schedule), ``step`` multiplies by ``gamma`` at each milestone (fractions of
    ``total_steps``), ``constant`` stays at 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    boundaries = [round(m * total_steps) for m in milestones]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "cosine":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if schedule == "poly":
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
            return max(0.0, 1 - progress) ** POLY_POWER
        if schedule == "step":
            return gamma ** sum(step >= b for b in boundaries)
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    *,
    total_steps: int,
    warmup_steps: int = 0,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimisation step (see :func:`schedule_factor`)."""
    factor = schedule_factor(schedule, total_steps, warmup_steps, milestones, gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
