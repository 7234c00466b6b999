"""Warm start: fit every DNC head of a model on real features before the first step.

By default a head seeds each class from the first features it meets (k-means++ on one
batch), features of an untrained or not yet adapted network, and then moves them by
momentum. Over a short schedule the sub-centroids keep much of that seed. A warm start
runs the model once over a bounded, class-balanced sample of the training data without
gradients and fits each head by balanced (Sinkhorn) k-means on it
(:meth:`DNCHead.fit`): over a pretrained backbone the head is then a good classifier
at step 0, and its memory already holds real features.

>>> import torchvision, deepnc
>>> model = deepnc.convert(torchvision.models.resnet18(num_classes=3))
>>> batches = [(torch.randn(12, 3, 32, 32), torch.arange(12) % 3) for _ in range(2)]
>>> report = deepnc.warm_start(model, batches, samples_per_class=8)
>>> report.samples_per_class, bool(deepnc.dnc_heads(model)[0].bank.initialised.all())
([8, 8, 8], True)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from deepnc.nn import distributed
from deepnc.nn.grouping import class_counts, rank_within_class
from deepnc.nn.head import DNCHead
from deepnc.nn.hooks import dnc_heads, restored_buffers
from deepnc.nn.input_checks import usable_rows
from deepnc.utils.progress import progress_bar

__all__ = ["HEAD_INITS", "WarmStartReport", "warm_start"]

HEAD_INITS = ("first-batch", "warm")  # how the trainer starts a DNC head (config head_init)


@dataclass(frozen=True)
class WarmStartReport:
    """What a warm start fitted on (for the first head of the model).

    Attributes:
        samples_per_class: ``C`` counts of the features (or pixels) each class was fitted on.
        batches: batches embedded.
    """

    samples_per_class: list[int]
    batches: int


class _Collector:
    """The head inputs of one head, at most ``quota`` per class, drawn with a seeded generator.

    Each batch gives at most ``per_batch`` of a class (so that dense samples spread over
    many images), chosen at random among that batch's samples of the class.
    """

    def __init__(self, head: DNCHead, quota: int, per_batch: int, generator: torch.Generator):
        self.head, self.quota, self.per_batch = head, quota, per_batch
        self.generator = generator
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.counts = torch.zeros(head.num_classes, dtype=torch.long)

    def add(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Keep a random share of this batch's samples: ``(N, D)`` or ``(B, D, H, W)``."""
        head, num_classes = self.head, self.head.num_classes
        labels = head.flatten_targets(targets, features).cpu()
        flat = features.detach().float()
        flat = (flat.permute(0, 2, 3, 1) if flat.dim() == 4 else flat).reshape(-1, head.in_features)
        flat = flat.cpu()
        finite = torch.isfinite(flat).all(dim=1)  # what the head's fit would keep:
        valid = usable_rows(flat, labels, finite, num_classes, head.ignore_index)
        grouped = labels.masked_fill(~valid, num_classes)  # an extra class, dropped
        order = torch.randperm(labels.numel(), generator=self.generator)
        rank = torch.empty_like(order)
        rank[order] = rank_within_class(grouped[order], num_classes + 1)  # random ranks
        room = (self.quota - self.counts).clamp(min=0).clamp(max=self.per_batch)
        keep = valid & (rank < torch.cat([room, room.new_zeros(1)])[grouped])
        self.features.append(flat[keep])
        self.labels.append(labels[keep])
        self.counts += class_counts(labels[keep], num_classes)

    def full(self) -> bool:
        """Whether every class has its quota."""
        return bool((self.counts >= self.quota).all())

    def samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, D)`` fp32 head inputs and their ``(M,)`` labels."""
        return torch.cat(self.features), torch.cat(self.labels)


@torch.no_grad()
def warm_start(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    samples_per_class: int = 500,
    samples_per_batch: int | None = None,
    iterations: int = 10,
    seed: int = 0,
    progress: bool = False,
    mode: str = "train",
) -> WarmStartReport:
    """Fit every DNC head of ``model`` by balanced k-means on features of real batches.

    Runs the model in training mode (the features a training step sees; batch-norm
    running statistics are restored afterwards), or in evaluation mode (the features a
    prediction sees: a refresh of a trained head), without gradients over ``batches``
    until every class of every head has ``samples_per_class`` samples (or the batches
    run out), then calls :meth:`DNCHead.fit` on each head. Only the heads change.

    Every process must pass the same batches (for example an unsharded loader with a
    seeded order): each then fits the same heads, and process 0's sub-centroids are
    broadcast so that the processes agree bit for bit on any device.

    Args:
        model: a model holding at least one :class:`DNCHead`, on the batches' device.
        batches: ``(images, targets)`` pairs: ``(N,)`` class indices, or ``(B, H, W)``
            masks for dense heads (their pixels are the samples).
        samples_per_class: samples (or pixels) per class to fit on (>= 1).
        samples_per_batch: at most this many samples of a class from one batch
            (default: ``samples_per_class`` for vectors, an eighth of it for feature
            maps, so that pixels come from many images).
        iterations: balanced assignment rounds after k-means++ seeding.
        seed: seeds which samples are kept.
        progress: show a progress bar over the batches.
        mode: ``"train"`` or ``"eval"``, the mode the features are computed in.

    Returns:
        A :class:`WarmStartReport` for the first head.

    Raises:
        ValueError: ``model`` has no DNC head, or ``samples_per_class < 1``.
    """
    heads = dnc_heads(model)
    if not heads:
        raise ValueError("model must contain a DNCHead (see deepnc.convert), found none")
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, int):
        raise TypeError(f"samples_per_class must be an int, got {samples_per_class!r}")
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    generator = torch.Generator().manual_seed(seed)
    collectors: dict[int, _Collector] = {}
    targets: list[torch.Tensor] = []

    def collect(head: DNCHead, args: tuple) -> None:  # None: the input is unchanged
        features = args[0]
        if id(head) not in collectors:
            per_batch = samples_per_batch or (
                samples_per_class if features.dim() == 2 else max(1, samples_per_class // 8)
            )
            collectors[id(head)] = _Collector(head, samples_per_class, per_batch, generator)
        collectors[id(head)].add(features, targets[0])

    hooks = [head.register_forward_pre_hook(collect) for head in heads]
    count = 0
    try:
        with restored_buffers(model, heads):
            model.train(mode == "train")
            device = heads[0].subcentroids.device
            for images, labels in _progress(batches, progress):
                targets[:] = [labels.to(device)]
                model(images.to(device))
                count += 1
                if len(collectors) == len(heads) and all(c.full() for c in collectors.values()):
                    break
    finally:
        for hook in hooks:
            hook.remove()
    report = None
    for head in heads:
        collector = collectors.get(id(head))
        if collector is None:
            raise ValueError("warm_start saw no batch: the batches are empty")
        features, labels = collector.samples()
        device = head.subcentroids.device
        head.fit(features.to(device), labels.to(device), iterations=iterations)
        _broadcast_head(head)
        report = report or WarmStartReport(collector.counts.tolist(), count)
    assert report is not None
    return report


def _broadcast_head(head: DNCHead) -> None:
    """Process 0's sub-centroids and memory on every process (a no-op without DDP)."""
    if not distributed.is_distributed():
        return
    for buffer in head.buffers():
        distributed.broadcast_(buffer)
    head.bank.mark_seeded()


def _progress(batches: Iterable, enabled: bool) -> Iterable:
    if not enabled:
        return batches
    return progress_bar(batches, "warm start")
