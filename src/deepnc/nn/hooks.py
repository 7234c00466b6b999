"""Feed training targets to the DNC heads inside a model whose ``forward`` takes none.

A converted torchvision or timm model is called as ``model(images)``; its DNC head
needs the targets to update its sub-centroids. ``training_targets`` hands them over
for the duration of one forward pass; ``seed_heads`` uses them to seed every class
before training, so that a compiled training step never meets an unseeded class.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from deepnc.nn.head import DNCHead

__all__ = [
    "captured_inputs",
    "dnc_heads",
    "restored_buffers",
    "seed_heads",
    "single_dnc_head",
    "training_targets",
]


@contextmanager
def captured_inputs(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, record (detached) the first input of every call of ``module``:
    what a head receives, for embeddings and explanations.

    >>> layer = nn.Linear(3, 2)
    >>> with captured_inputs(layer) as inputs:
    ...     _ = layer(torch.ones(4, 3))
    >>> [tuple(x.shape) for x in inputs]
    [(4, 3)]
    """
    captured: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach()))
    try:
        yield captured
    finally:
        handle.remove()


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


@torch.no_grad()
def seed_heads(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    max_batches: int | None = None,
) -> bool:
    """Seed the sub-centroids of every DNC head of ``model`` from real batches.

    Runs the model on ``(images, targets)`` batches in training mode (so the features
    are those a training step sees; batch-norm running statistics are restored
    afterwards) without gradients, and seeds each head's unseeded classes by k-means++
    (:meth:`DNCHead.seed`). Nothing else moves. Stops once every class is seeded.

    Args:
        model: a model holding at least one :class:`DNCHead`, on the batches' device.
        batches: ``(images, targets)`` pairs, for example a ``DataLoader``.
        max_batches: look at no more than this many batches (default: all).

    Returns:
        Whether every class of every head is seeded.
    """
    heads = dnc_heads(model)
    if not heads:
        raise ValueError("model must contain a DNCHead (see deepnc.convert), found none")
    targets: list[torch.Tensor] = []

    def seed_from_input(head: DNCHead, args: tuple) -> None:  # None: the input is unchanged
        head.seed(args[0], targets[0])

    hooks = [head.register_forward_pre_hook(seed_from_input) for head in heads]
    try:
        with restored_buffers(model, heads):
            model.train()
            for index, (images, labels) in enumerate(batches):
                if all(head.bank.all_seeded for head in heads):
                    break
                if max_batches is not None and index >= max_batches:
                    break
                device = heads[0].subcentroids.device
                targets[:] = [labels.to(device)]
                model(images.to(device))
    finally:
        for hook in hooks:
            hook.remove()
    return all(head.bank.all_seeded for head in heads)


@contextmanager
def restored_buffers(model: nn.Module, heads: list[DNCHead]) -> Iterator[None]:
    """Run a pass over ``model`` that changes only ``heads``: its other buffers
    (batch-norm running statistics) and its train/eval mode are put back afterwards."""
    saved = {
        name: buffer.clone()
        for name, buffer in model.named_buffers()
        if not any(name.startswith(prefix) for prefix in _head_prefixes(model, heads))
    }
    training = model.training
    try:
        yield
    finally:
        model.train(training)
        buffers = dict(model.named_buffers())
        for name, value in saved.items():
            buffers[name].copy_(value)


def _head_prefixes(model: nn.Module, heads: list[DNCHead]) -> list[str]:
    ids = {id(head) for head in heads}
    return [
        f"{name}." if name else "" for name, module in model.named_modules() if id(module) in ids
    ]
