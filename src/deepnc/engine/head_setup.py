"""Preparing a run's DNC heads: the warm start before the first step, and the momentum
that follows the schedule (``subcentroid_half_life``)."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.engine.config import TrainConfig
from deepnc.engine.runtime import Runtime, epoch_seed
from deepnc.nn import distributed
from deepnc.nn.hooks import dnc_heads
from deepnc.nn.momentum import half_life_momentum
from deepnc.nn.warm_start import warm_start

__all__ = ["follow_half_life", "warm_start_heads"]

log = logging.getLogger("deepnc")


def follow_half_life(
    model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int, data: DatasetSplits
) -> None:
    """Set each DNC head's momentum so that a sub-centroid forgets half of its past in
    ``config.subcentroid_half_life`` epochs, capped at the head's own momentum.

    Each of the ``steps_per_epoch`` steps (of every process at once) makes one update
    from the all-gathered batch of B = batch_size x processes samples; a class moves
    only in the updates whose batch holds it: with C balanced classes, a share
    ``1 - (1 - 1/C)^B`` of them (all of them for dense heads, whose images hold most
    classes).
    """
    batch = config.batch_size * distributed.world_size()
    for head in dnc_heads(model):
        presence = 1 - (1 - 1 / head.num_classes) ** batch if data.task == "classification" else 1
        updates = config.subcentroid_half_life * steps_per_epoch * presence
        head.bank.momentum = half_life_momentum(updates, limit=head.bank.momentum)
        log.info(
            "sub-centroid momentum %.5f (half-life %s epochs)",
            head.bank.momentum,
            config.subcentroid_half_life,
        )


def warm_start_heads(
    model: torch.nn.Module, config: TrainConfig, data: DatasetSplits, runtime: Runtime
) -> None:
    """Fit the DNC heads on a class-balanced sample of the training set (identical on
    every process: an unsharded loader in a seeded order, the same augmentation draws)."""
    order = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        data.train,
        config.batch_size,
        shuffle=True,
        generator=order,
        num_workers=config.workers,
        pin_memory=runtime.device.type == "cuda",
    )
    torch.manual_seed(epoch_seed(config.seed, -1, 0))
    report = warm_start(
        model,
        loader,
        samples_per_class=config.warm_start_samples,
        seed=config.seed,
        progress=config.progress and runtime.is_main,
    )
    if runtime.is_main:
        log.info(
            "warm start: fitted on %d batches, %d to %d samples per class",
            report.batches,
            min(report.samples_per_class),
            max(report.samples_per_class),
        )
