"""Preparing a run's DNC heads: the warm start before the first step, the momentum that
follows the schedule (``subcentroid_half_life``), and the refresh that refits them on the
features evaluation sees (``refresh``)."""

from __future__ import annotations

import logging
import time

import torch
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.engine.config import TrainConfig
from deepnc.engine.runtime import Runtime, epoch_seed
from deepnc.nn import distributed
from deepnc.nn.hooks import dnc_heads
from deepnc.nn.momentum import half_life_momentum
from deepnc.nn.warm_start import warm_start

__all__ = ["follow_half_life", "refresh_heads", "warm_start_heads"]

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
    report = _fit_heads(model, config, data, runtime, config.seed, epoch_seed(config.seed, -1, 0))
    if runtime.is_main:
        log.info(
            "warm start: fitted on %d batches, %d to %d samples per class",
            report.batches,
            min(report.samples_per_class),
            max(report.samples_per_class),
        )


def refresh_heads(
    model: torch.nn.Module, config: TrainConfig, data: DatasetSplits, runtime: Runtime, epoch: int
) -> None:
    """Refit every sub-centroid by balanced k-means on ``warm_start_samples`` training
    features per class, computed as evaluation computes them (eval mode: BatchNorm's
    running statistics, no gradient), so that the sub-centroids and the features they
    classify agree; the memory is refilled with the same features. Identical on every
    process (a seeded, unsharded sample)."""
    began = time.perf_counter()
    seed = epoch_seed(config.seed, epoch, 0)
    report = _fit_heads(model, config, data, runtime, seed, seed, mode="eval")
    if runtime.is_main:
        log.info(
            "refresh: sub-centroids refitted on %d to %d samples per class in %.1f s",
            min(report.samples_per_class),
            max(report.samples_per_class),
            time.perf_counter() - began,
        )


def _fit_heads(model, config, data, runtime, order_seed: int, draws_seed: int, mode="train"):
    """:func:`~deepnc.warm_start` over the training set in a seeded order (``draws_seed``
    seeds the augmentation)."""
    order = torch.Generator().manual_seed(order_seed)
    loader = DataLoader(
        data.train,
        config.batch_size,
        shuffle=True,
        generator=order,
        num_workers=config.workers,
        pin_memory=runtime.device.type == "cuda",
    )
    torch.manual_seed(draws_seed)
    return warm_start(
        model,
        loader,
        samples_per_class=config.warm_start_samples,
        seed=config.seed,
        progress=config.progress and runtime.is_main,
        mode=mode,
    )
