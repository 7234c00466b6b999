"""Feed training targets to the DNC heads inside a model whose ``forward`` takes none.

A converted torchvision or timm model is called as ``model(images)``; its DNC head
needs the targets to update its sub-centroids. ``training_targets`` hands them over
for the duration of one forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from deepnc.head import DNCHead

__all__ = ["dnc_heads", "single_dnc_head", "training_targets"]


def dnc_heads(model: nn.Module) -> list[DNCHead]:
    """Every :class:`DNCHead` inside ``model`` (DDP and other wrappers included)."""
    return [module for module in model.modules() if isinstance(module, DNCHead)]


def single_dnc_head(model: nn.Module, purpose: str = "this") -> DNCHead:
    """The one :class:`DNCHead` of ``model``.

    Raises:
        ValueError: none (a softmax model) or several; the message starts with ``purpose``
            (``"explanations need"``, ``"the 'similarity' score needs"``, ...).
    """
    heads = dnc_heads(model)
    if not heads:
        raise ValueError(
            f"{purpose} a DNC head: this model ends in a softmax classifier "
            "(train it with head: dnc)"
        )
    if len(heads) > 1:
        raise ValueError(f"{purpose} a single DNC head, found {len(heads)}")
    return heads[0]


@contextmanager
def training_targets(model: nn.Module, targets: torch.Tensor) -> Iterator[None]:
    """Let the DNC heads of ``model`` see ``targets`` during the forward passes inside.

    Args:
        model: a model holding at least one :class:`DNCHead`.
        targets: ``(N,)`` class indices for classification, ``(B, H, W)`` for dense
            prediction (resized by the head to its feature map).

    Example:
        >>> import torchvision, deepnc
        >>> model = deepnc.convert(torchvision.models.resnet18(num_classes=4))
        >>> images, labels = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3] * 2)
        >>> with deepnc.training_targets(model, labels):
        ...     logits = model(images)
        >>> logits.shape
        torch.Size([8, 4])
    """
    heads = dnc_heads(model)
    if not heads:
        raise ValueError("model must contain a DNCHead (see deepnc.convert), found none")
    for head in heads:
        head._pending_targets = targets
    try:
        yield
    finally:
        for head in heads:
            head._pending_targets = None
