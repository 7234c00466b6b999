"""Precise BatchNorm: running statistics recomputed over a sample of the training set.

A BatchNorm layer normalises with batch statistics in training and with running averages
at evaluation; the averages trail a network whose weights keep moving, and over a short
run they are an average of many different networks. A nearest-sub-centroid rule is hurt
far more by that mismatch than a softmax layer: the sub-centroids are estimated from
training-mode features and compared with evaluation-mode ones. Recomputing the averages as
the plain mean over a few thousand training images with the final weights (pycls's and
detectron2's "precise BN") removes it; ``precise_bn: N`` does so before each evaluation,
so the checkpoint of a run holds them too.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, Dataset, Subset

from deepnc.nn import distributed
from deepnc.utils.progress import progress_bar

__all__ = ["batchnorm_layers", "recompute_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers that keep running statistics."""
    return [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]


def recompute_batchnorm(
    model: nn.Module,
    dataset: Dataset,
    *,
    samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress: bool = False,
) -> float:
    """Set every BatchNorm's running mean and variance to their average over ``samples``
    training items drawn with ``seed`` (train-mode forwards without gradients: the DNC
    heads see no targets, so nothing else moves). Returns the seconds it took.

    Every process draws the same items, so the processes agree without a collective on
    the CPU; on CUDA process 0's statistics are broadcast.

    Args:
        model: the (unwrapped) model, on ``device``.
        dataset: yields ``(image (C, H, W), target)``.
        samples: items to average over (>= 1; all of them when the set is smaller).
        batch_size: items per forward.
        seed: which items.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    began = time.perf_counter()
    layers = batchnorm_layers(model)
    if not layers:
        return 0.0
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(dataset), generator=generator)[:samples].tolist()
    if len(chosen) > 1 and len(chosen) % batch_size == 1:
        chosen = chosen[:-1]  # no batch of one: a BatchNorm over a 1x1 map needs two items
    loader = DataLoader(Subset(dataset, chosen), batch_size=batch_size)
    update_bn(progress_bar(loader, "precise BN", progress), model, device=device)
    for layer in layers:
        distributed.share_from_first_process(layer.running_mean, layer.running_var)
    return time.perf_counter() - began
