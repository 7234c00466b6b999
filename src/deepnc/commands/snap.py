"""What ``deepnc snap`` does: a checkpoint's sub-centroids snapped to real training images
(optionally re-estimated from the final embedding first), written as a new checkpoint.

It returns data; the CLI prints it. The training set is re-created exactly as the
model saw it (same subset and seed, evaluation transforms), so exemplar indices stay
valid whenever the checkpoint is loaded again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.data.base import item_file, item_name
from deepnc.engine.checkpoint import resolve_checkpoint
from deepnc.engine.loop import evaluate
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain.embeddings import find_dnc_head, training_embeddings
from deepnc.explain.snap import (
    SnapResult,
    apply_snap,
    own_class_occupancy,
    snap_subcentroids,
    subcentroid_similarity,
)

__all__ = ["SnapReport", "snap_checkpoint"]


@dataclass
class SnapReport:
    """What snapping did to a model. Accuracies in ``[0, 1]``; per-class tensors ``(C,)``."""

    top1_before: float
    top1_after: float
    similarity_before: torch.Tensor
    similarity_after: torch.Tensor
    occupancy_before: torch.Tensor
    occupancy_after: torch.Tensor
    snap: SnapResult
    embed_seconds: float
    total_seconds: float
    train_size: int
    top1_refit: float | None = None  # after re-estimating from the final embedding, if asked


def _test_top1(model, data: DatasetSplits, device, batch_size: int) -> float:
    loader = DataLoader(data.test, batch_size=batch_size)
    return evaluate(model, loader, num_classes=data.num_classes, device=device).top1


def exemplar_files(train, indices: torch.Tensor, root: str | None) -> list[list[str | None]] | None:
    """``(C, K)`` the file of each exemplar, relative to ``root`` (``None`` for an unsnapped
    sub-centroid), or ``None`` when the training set is not read from files."""
    if len(train) == 0 or item_file(train, 0) is None:
        return None
    return [[item_name(train, int(i), root) if i >= 0 else None for i in row] for row in indices]


def snap_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    distinct: bool = True,
    refit: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    progress: bool = False,
    data_root: str | None = None,
) -> tuple[SnapReport, Path]:
    """Snap a DNC checkpoint's sub-centroids to training images and save the snapped model.

    Args:
        path: checkpoint file or run folder.
        out: where to write the snapped checkpoint (default ``RUN/snapped.safetensors``).
        distinct: a different training image for each sub-centroid of a class.
        refit: first re-estimate the sub-centroids from the final embedding of the
            training set by balanced k-means (:meth:`SubCentroidBank.fit`), so that they
            sit among the real features they are snapped to: after a short run the
            momentum average still carries features of the network as it was earlier.
        data_root: where the checkpoint's dataset is now (default: where it was trained).

    Returns:
        ``(report, path of the snapped checkpoint)``. The snapped checkpoint holds the
        exemplar index (dataset, split, subset, indices, similarities) in its state.

    Raises:
        ValueError: a softmax checkpoint (explanations need a DNC head), or a segmentation
            one.
    """
    start = time.perf_counter()
    source = resolve_checkpoint(path)
    model, checkpoint = load_trained_model(source, device)
    if checkpoint.task != "classification":
        raise ValueError(
            f"snap replaces each sub-centroid by a training image, which suits a classifier; "
            f"{source} is a {checkpoint.task} checkpoint: deepnc explain --pixel ROW COLUMN "
            "shows the training regions nearest the sub-centroid that labels a pixel"
        )
    head = find_dnc_head(model)
    data = load_checkpoint_dataset(checkpoint, data_root=data_root)
    top1_before = _test_top1(model, data, device, batch_size)
    embed_start = time.perf_counter()
    train = training_embeddings(
        model, source.parent, data.train, batch_size=batch_size, device=device, progress=progress
    )
    embed_seconds = time.perf_counter() - embed_start
    top1_refit = None
    if refit:
        head.bank.fit(
            train.features.to(head.subcentroids.device), train.labels.to(head.subcentroids.device)
        )
        top1_refit = _test_top1(model, data, device, batch_size)
    before = head.subcentroids.detach().cpu().clone()
    result = snap_subcentroids(before, train.features, train.labels, distinct=distinct)
    apply_snap(head, train.features, result)
    after = head.subcentroids.detach().cpu().clone()
    report = SnapReport(
        top1_before=top1_before,
        top1_after=_test_top1(model, data, device, batch_size),
        similarity_before=subcentroid_similarity(before),
        similarity_after=subcentroid_similarity(after),
        occupancy_before=own_class_occupancy(before, train.features, train.labels),
        occupancy_after=own_class_occupancy(after, train.features, train.labels),
        snap=result,
        embed_seconds=embed_seconds,
        total_seconds=time.perf_counter() - start,
        train_size=len(train),
        top1_refit=top1_refit,
    )
    target = Path(out) if out else source.parent / "snapped.safetensors"
    exemplars = {
        "dataset": data.name,
        "split": "train",
        "train_subset": checkpoint.config["train_subset"],
        "seed": checkpoint.config["seed"],
        "distinct": distinct,
        "refit": refit,
        **result.to_json(),
    }
    files = exemplar_files(data.train, result.indices, data_root or checkpoint.config["data_root"])
    if files is not None:
        exemplars["files"] = files
    top1 = {"before": report.top1_before, "refit": report.top1_refit, "after": report.top1_after}
    snapped = checkpoint.for_use(
        model=dict(model.state_dict()),
        exemplars=exemplars,
        extra={
            **{key: value for key, value in checkpoint.extra.items() if key != "calibration"},
            "snap_top1": top1,
        },
    )
    snapped.save(target)
    return report, target
