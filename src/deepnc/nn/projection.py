"""A learnt metric for a frozen backbone: the head's projection and LayerNorm trained on
cached head inputs with the DNC loss, then the sub-centroids refitted.

A nearest-sub-centroid rule on a frozen backbone's features has no learnt parameter at
all: its metric is the backbone's. A linear probe learns one weight vector per class;
this learns a shared map ``D -> P`` (a :class:`~deepnc.DNCHead` built with
``projection=P``) under which each class's sub-centroids separate, while the classifier
stays a nearest-sub-centroid rule. It runs on the cached embeddings, never through the
backbone, so it takes seconds on a CPU.

>>> from deepnc import DNCHead, learn_projection
>>> head = DNCHead(16, 3, num_subcentroids=2, projection=8, tau="auto")
>>> features, labels = torch.randn(60, 16), torch.arange(3).repeat(20)
>>> losses = learn_projection(head, features, labels, epochs=2, batch_size=20)
>>> len(losses), head.subcentroids.shape
(2, torch.Size([3, 2, 8]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from deepnc.nn.head import DNCHead
from deepnc.utils.validate import check_positive_int, check_range

__all__ = ["learn_projection"]


def learn_projection(
    head: DNCHead,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 256,
    momentum: float = 0.9,
    iterations: int = 10,
    seed: int = 0,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[float]:
    """Train ``head``'s projection and LayerNorm (Adam) on fixed head inputs, moving the
    sub-centroids by momentum as training does, then refit them by balanced k-means.

    The sub-centroids are first fitted on the untrained projection; during the epochs
    the head updates them from each batch at ``momentum`` (its own momentum, 0.999, is
    tuned for thousands of steps; here there are tens) and restores its own after. The
    head is left in eval mode.

    Args:
        head: a DNC head; its parameters (projection, LayerNorm) are trained. Without a
            projection only the LayerNorm learns.
        features: ``(N, D)`` head inputs (a frozen backbone's embeddings).
        labels: ``(N,)`` int64 class indices in ``[0, C)``.
        epochs: passes over the features (>= 0; 0 only refits).
        lr: Adam's learning rate (> 0).
        batch_size: features per step (>= 1).
        momentum: the sub-centroids' momentum while training, in [0, 1).
        iterations: balanced k-means rounds of the fits before and after.
        seed: orders the batches.
        progress: wraps the epoch range (a progress bar), or ``None``.

    Returns:
        The mean training loss of each epoch.

    Raises:
        ValueError: bad arguments, or features and labels of different lengths.
    """
    check_positive_int("epochs", epochs, minimum=0)
    check_positive_int("batch_size", batch_size)
    check_range("lr", lr, 0.0, float("inf"), low_open=True, high_open=True)
    check_range("momentum", momentum, 0.0, 1.0, low_open=False, high_open=True)
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    labels = labels.long()
    with torch.no_grad():
        head.fit(features, labels, iterations=iterations)
    parameters = [p for p in head.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(parameters, lr=lr) if parameters else None
    generator = torch.Generator().manual_seed(seed)
    own_momentum, head.bank.momentum = head.bank.momentum, momentum
    losses = []
    head.train()
    try:
        for _ in progress(range(epochs)) if progress else range(epochs):
            order = torch.randperm(len(labels), generator=generator).to(features.device)
            total = features.new_zeros(())  # summed on the device: one read per epoch
            for batch in order.split(batch_size):
                loss = F.cross_entropy(head(features[batch], labels[batch]), labels[batch])
                if optimiser is not None:
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                total += loss.detach() * len(batch)
            losses.append(float(total) / len(labels))
    finally:
        head.bank.momentum = own_momentum
        head.eval()
    with torch.no_grad():
        head.fit(features, labels, iterations=iterations)
    return losses
