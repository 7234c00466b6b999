"""The normalised embeddings a DNC head classifies, for a whole dataset.

A DNC model's head sees the backbone's features and normalises them (LayerNorm, L2);
the sub-centroids live in that normalised space. :func:`embed_dataset` captures the
head's input with a forward hook, so it works for any model that holds a
:class:`~deepnc.DNCHead`, whatever the backbone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deepnc.explain.embedding_cache import load_embeddings, save_embeddings
from deepnc.nn.head import DNCHead
from deepnc.nn.hooks import captured_inputs, single_dnc_head
from deepnc.utils.progress import progress_bar

log = logging.getLogger("deepnc")

__all__ = ["Embeddings", "embed_batch", "embed_dataset", "find_dnc_head", "training_embeddings"]


@dataclass
class Embeddings:
    """Embeddings of a dataset in the head's space.

    Attributes:
        features: ``(N, D)`` fp32 unit vectors (LayerNorm then L2, as the head sees them).
        labels: ``(N,)`` true classes.
        predictions: ``(N,)`` the model's predicted classes.
    """

    features: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def find_dnc_head(model: nn.Module) -> DNCHead:
    """The single classification :class:`~deepnc.DNCHead` of ``model``.

    Raises:
        ValueError: the model has no DNC head (a softmax model) or several.
    """
    return single_dnc_head(model, "explanations need")


@torch.no_grad()
def embed_batch(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(embeddings (N, D), logits (N, C))`` of a batch, with ``model`` in eval mode."""
    head = find_dnc_head(model)
    with captured_inputs(head) as captured:
        logits = model(images)
    features = captured[-1]
    if features.dim() != 2:
        raise ValueError(
            f"explanations are for (N, D) classification heads, got {tuple(features.shape)}"
        )
    return head.embed(features), logits.float()


@torch.no_grad()
def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
    workers: int = 0,
) -> Embeddings:
    """Embed every sample of ``dataset`` (in order) with ``model`` in eval mode.

    Args:
        dataset: yields ``(image, label)``; use eval transforms (no augmentation).

    Returns:
        :class:`Embeddings` on the CPU.
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    features, labels, predictions = [], [], []
    try:
        for images, batch_labels in progress_bar(loader, "embedding", progress):
            embedded, logits = embed_batch(model, images.to(device))
            features.append(embedded.cpu())
            labels.append(torch.as_tensor(batch_labels))
            predictions.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("cannot embed an empty dataset")
    return Embeddings(torch.cat(features), torch.cat(labels).long(), torch.cat(predictions))


def training_embeddings(
    model: nn.Module,
    run: str | Path,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Embeddings:
    """The training split's :class:`Embeddings`: from the run folder's cache when it was
    made with this model's weights (see :mod:`deepnc.explain.embedding_cache`), else embedded
    now and cached there (a folder that cannot be written is left alone)."""
    cached = load_embeddings(run, model)
    if cached is not None and len(cached[1]) == len(dataset):
        features, labels = cached
        subcentroids = find_dnc_head(model).subcentroids.detach().cpu()  # (C, K, D)
        scores = torch.einsum("nd,ckd->nck", features, subcentroids).amax(dim=-1)
        return Embeddings(features, labels, scores.argmax(dim=1))
    found = embed_dataset(model, dataset, batch_size=batch_size, device=device, progress=progress)
    try:
        save_embeddings(run, found.features, found.labels, model)
    except OSError as error:
        log.warning("could not cache the training embeddings in %s: %s", run, error)
    return found
