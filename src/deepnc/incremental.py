"""Learn new classes without retraining, and forget classes, by editing a DNC head's bank.

A DNC head's classes are nothing but their sub-centroids. :func:`add_classes` clusters
the features of a few examples of each new class (the same k-means++ seeding and
balanced Sinkhorn rounds as training, momentum 0) and appends the result: the old
classes' sub-centroids do not move, no weight of the network changes, and the head's
output grows by one logit per new class. :func:`remove_classes` deletes classes.

The features are the head's *inputs* (what the backbone produces); :func:`head_inputs`
collects them from a model and a loader.

>>> from deepnc import DNCHead
>>> head = DNCHead(8, 2, num_subcentroids=2, memory_size=0).eval()
>>> head.update(torch.randn(20, 8), torch.arange(2).repeat(10))
>>> added = add_classes(head, torch.randn(6, 8), torch.tensor([0, 0, 0, 1, 1, 1]))
>>> added, head.num_classes, head(torch.randn(3, 8)).shape
([2, 3], 4, torch.Size([3, 4]))
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from deepnc.nn.bank import SubCentroidBank
from deepnc.nn.head import DNCHead
from deepnc.nn.hooks import captured_inputs, single_dnc_head

__all__ = ["add_classes", "head_inputs", "remove_classes"]


def _resize_classes(module: nn.Module, keep: torch.Tensor, extra: int) -> None:
    """Keep the rows ``keep`` of every per-class buffer of ``module`` and append ``extra``
    zero rows; per-class buffers are those whose first dimension is ``num_classes``."""
    old = module.num_classes
    for name, buffer in list(module.named_buffers(recurse=False)):
        if buffer.dim() == 0 or buffer.shape[0] != old:
            continue
        kept = buffer[keep]
        padding = torch.zeros((extra, *buffer.shape[1:]), dtype=buffer.dtype, device=buffer.device)
        setattr(module, name, torch.cat([kept, padding]))
    module.num_classes = int(keep.numel()) + extra


@torch.no_grad()
def head_inputs(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device = "cpu",
    *,
    layer: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, D), labels (N,))``: what the model's DNC head receives for ``loader``.

    ``layer``: capture the inputs of this module instead (a softmax model's classifier).

    Raises:
        ValueError: no ``layer`` given and the model has no DNC head, or several.
    """
    if layer is None:
        layer = single_dnc_head(model, "head_inputs (without layer=) needs")
    features, labels = [], []
    model.eval()
    with captured_inputs(layer) as captured:
        for images, targets in loader:
            model(images.to(device))
            features.append(captured.pop().float().cpu())
            labels.append(torch.as_tensor(targets))
    return torch.cat(features), torch.cat(labels).long()


@torch.no_grad()
def add_classes(
    head: DNCHead,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_subcentroids: int | None = None,
    rounds: int = 10,
    names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> list[int]:
    """Append M new classes to ``head``, each described by a few examples.

    Args:
        head: a trained DNC head (vector or dense).
        features: ``(N, D)`` head inputs of the examples (see :func:`head_inputs`).
        labels: ``(N,)`` int64 in ``[0, M)``: which new class each example belongs to;
            every new class needs at least one example.
        num_subcentroids: k <= K distinct sub-centroids for the new classes (default K);
            the K - k others repeat them, which changes no prediction (per-class K).
        rounds: balanced clustering rounds.
        names: the new classes' names, checked against ``class_names`` (the existing ones).

    Returns:
        The class indices given to the new classes: ``C .. C + M - 1``.

    Raises:
        ValueError: wrong shapes, non-finite features, a class without examples, a name
            that exists. A class with fewer examples than k gets one sub-centroid per
            example, with a warning.
    """
    _check_editable(head)
    if features.dim() != 2 or features.shape[1] != head.in_features:
        raise ValueError(
            f"features must be (N, {head.in_features}) head inputs, got {tuple(features.shape)}"
        )
    if labels.shape != features.shape[:1] or labels.is_floating_point():
        given = f"{labels.dtype} {tuple(labels.shape)}"
        raise ValueError(f"labels must be (N,) = ({features.shape[0]},) integers, got {given}")
    if not torch.isfinite(features).all():
        raise ValueError("features hold NaN or Inf")
    labels = labels.long().cpu()
    if labels.numel() == 0 or labels.min() < 0:
        raise ValueError("labels must number the new classes 0 .. M-1")
    new = int(labels.max()) + 1
    counts = torch.bincount(labels, minlength=new)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"new classes {empty} have no example (labels must be 0 .. M-1)")
    if names is not None:
        if len(names) != new:
            raise ValueError(f"{len(names)} names for {new} new classes")
        if len(set(names)) != len(names):
            raise ValueError(f"the new names {list(names)} repeat a name")
        clash = sorted(set(names) & set(class_names or ()))
        if clash:
            raise ValueError(f"class name(s) {clash} exist already; choose new names")
    k = num_subcentroids or head.num_subcentroids
    if not 1 <= k <= head.num_subcentroids:
        raise ValueError(f"num_subcentroids must lie in [1, {head.num_subcentroids}], got {k}")
    if (counts < k).any():
        few = {int(c): int(counts[c]) for c in torch.nonzero(counts < k).flatten()}
        warnings.warn(
            f"new classes {few} (class: examples) have fewer examples than {k} sub-centroids: "
            "each gets one sub-centroid per example",
            stacklevel=3,  # past torch.no_grad's wrapper: the caller's line
        )
    device = head.subcentroids.device
    embedded = head.embed(features.to(device)).float().cpu()
    bank = SubCentroidBank(new, k, head.embedding_dim, momentum=0.0, seed=head.bank.seed)
    bank.initialise(embedded, labels)
    for _ in range(rounds):
        bank.update(embedded, labels)
    subcentroids = bank.subcentroids[:, torch.arange(head.num_subcentroids) % k]

    first = head.num_classes
    keep = torch.arange(first, device=device)
    _resize_classes(head.bank, keep, new)
    head.bank.subcentroids[first:] = subcentroids.to(device)
    head.bank.initialised[first:] = True
    head.bank.mark_seeded()
    if head.memory is not None:
        _resize_classes(head.memory, keep, new)
        head.memory.push(embedded.to(device), labels.to(device) + first)
    return list(range(first, first + new))


@torch.no_grad()
def remove_classes(head: DNCHead, classes: Sequence[int]) -> list[int]:
    """Delete ``classes`` from ``head``; the others keep their order.

    Returns:
        The old index of each remaining class (new class i was old class ``result[i]``).
    """
    _check_editable(head)
    drop = sorted({int(c) for c in classes})
    bad = [c for c in drop if not 0 <= c < head.num_classes]
    if bad:
        raise ValueError(f"classes {bad} are outside [0, {head.num_classes})")
    remaining = [c for c in range(head.num_classes) if c not in drop]
    if not remaining:
        raise ValueError("cannot remove every class")
    keep = torch.tensor(remaining, device=head.subcentroids.device)
    _resize_classes(head.bank, keep, 0)
    head.bank.mark_seeded()
    if head.memory is not None:
        _resize_classes(head.memory, keep, 0)
    return remaining


def _check_editable(head: DNCHead) -> None:
    if head.logit_norm is not None:
        raise ValueError(
            "this head normalises its logits with a LayerNorm over the classes (logit_norm, "
            "an ablation): its per-class gains were trained for these classes, so classes "
            "cannot be added or removed without training"
        )
