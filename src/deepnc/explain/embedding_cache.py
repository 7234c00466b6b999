"""A run folder's cache of its training embeddings (``train_embeddings.safetensors``), so
that snapping and explaining a model do not embed the training set again (``deepnc fit``
writes it, and so does the first ``snap`` or ``explain`` of a trained run).

The embeddings depend on the backbone and the head's normalisation, not on the
sub-centroids: the cache records a fingerprint of every other tensor of the model and
is used only while the model still has those very weights (snapping, adding classes and
refitting keep them; training changes them).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["CACHE_NAME", "load_embeddings", "model_fingerprint", "save_embeddings"]

CACHE_NAME = "train_embeddings.safetensors"
_HEAD_STATE = ("bank.", "memory.")  # state-dict keys of a head that do not embed


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of every tensor that shapes the embedding (all but the heads' banks and
    memories), in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if any(f".{part}" in f".{name}" for part in _HEAD_STATE):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_embeddings(run: str | Path, features: torch.Tensor, labels: torch.Tensor, model) -> Path:
    """Write ``(N, D)`` normalised ``features`` and ``(N,)`` ``labels`` of the training
    split into ``run``, with ``model``'s fingerprint."""
    from safetensors.torch import save_file

    path = Path(run) / CACHE_NAME
    partial = path.with_name(f".{CACHE_NAME}.partial")  # renamed into place once complete
    tensors = {"features": features.float().contiguous(), "labels": labels.long().contiguous()}
    save_file(tensors, str(partial), metadata={"fingerprint": model_fingerprint(model)})
    os.replace(partial, path)
    return path


def load_embeddings(run: str | Path, model) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(features, labels)`` cached in ``run`` for ``model``, or ``None`` (no cache, or
    one made with other weights)."""
    from safetensors import safe_open

    path = Path(run) / CACHE_NAME
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("fingerprint") != model_fingerprint(model):
            return None
        return handle.get_tensor("features"), handle.get_tensor("labels")
