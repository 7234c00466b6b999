"""The two things the command line does with a trained DNC checkpoint: snap it, explain it.

Each step returns data; the CLI prints it. The training set is re-created exactly as the
model saw it (same subset and seed, evaluation transforms), so exemplar indices stay
valid whenever the checkpoint is loaded again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.data.image_files import find_images, read_image
from deepnc.engine.checkpoint import Checkpoint, resolve_checkpoint
from deepnc.engine.loop import evaluate
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain.embeddings import Embeddings, find_dnc_head, training_embeddings
from deepnc.explain.snap import (
    SnapResult,
    apply_snap,
    own_class_occupancy,
    snap_subcentroids,
    subcentroid_similarity,
)

__all__ = [
    "SnapReport",
    "explain_checkpoint",
    "load_images",
    "snap_checkpoint",
    "training_exemplars",
]


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


def snap_checkpoint(
    path: str | Path,
    out: str | Path | None = None,
    *,
    distinct: bool = True,
    refit: bool = False,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    progress: bool = False,
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

    Returns:
        ``(report, path of the snapped checkpoint)``. The snapped checkpoint holds the
        exemplar index (dataset, split, subset, indices, similarities) in its state.

    Raises:
        ValueError: a softmax checkpoint (explanations need a DNC head).
    """
    start = time.perf_counter()
    source = resolve_checkpoint(path)
    model, checkpoint = load_trained_model(source, device)
    head = find_dnc_head(model)
    data = load_checkpoint_dataset(checkpoint)
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
    top1 = {"before": report.top1_before, "refit": report.top1_refit, "after": report.top1_after}
    snapped = checkpoint.for_use(
        model=dict(model.state_dict()),
        exemplars=exemplars,
        extra={**checkpoint.extra, "snap_top1": top1},
    )
    snapped.save(target)
    return report, target


def training_exemplars(
    checkpoint: Checkpoint, model: torch.nn.Module, train: Embeddings, data: DatasetSplits
) -> SnapResult:
    """The exemplar index saved with a snapped checkpoint, else one computed now (no snapping)."""
    saved = checkpoint.exemplars
    if saved is not None:
        if saved["dataset"] != data.name:
            raise ValueError(
                f"the checkpoint's exemplars index {saved['dataset']!r}, not {data.name!r}"
            )
        return SnapResult.from_json(saved)
    head = find_dnc_head(model)
    return snap_subcentroids(head.subcentroids.detach().cpu(), train.features, train.labels)


def load_images(
    paths: list[str | Path], data: DatasetSplits
) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """Read image files (folders are searched) preprocessed like ``data``'s test split.

    Returns:
        ``(loaded, skipped)``: ``(name, image (C, S, S))`` pairs and, for every file that
        could not be decoded, a message naming it.
    """
    loaded, skipped, facts = [], [], data.describe()
    for file in find_images(paths):
        try:
            loaded.append((file.name, read_image(file, facts)))
        except ValueError as error:
            skipped.append(str(error))
    return loaded, skipped


def _has_maps(model, images: torch.Tensor) -> str | None:
    """``None`` when similarity maps can be drawn for ``model``, else why not."""
    from deepnc.explain.similarity_maps import pooled_feature_maps

    try:
        pooled_feature_maps(model, images)
    except ValueError as error:
        return str(error)
    return None


def _explain_dense(model, data, inputs, skipped, test_samples, out_dir, device, pixel) -> dict:
    from deepnc.commands.seg_explain import explain_pixels, explain_segmentation

    truths: list[torch.Tensor | None] = [None] * len(inputs)
    for index in range(min(test_samples, len(data.test))):
        image, mask = data.test[index]
        inputs.append((f"test image {index}", image))
        truths.append(mask)
    if not inputs:
        raise ValueError("no image to explain" + (f": {'; '.join(skipped)}" if skipped else ""))
    explain_segmentation(model, data, inputs, truths, out_dir, device=device)
    if pixel is not None:
        explain_pixels(model, data, inputs, pixel, out_dir)
    report = Path(out_dir) / "dense.json"
    return {"report": str(report), "explained": len(inputs), "skipped": skipped}


def explain_checkpoint(
    path: str | Path,
    out_dir: str | Path,
    *,
    images: list[str | Path] = (),
    test_samples: int = 0,
    dataset: str | None = None,
    top_classes: int = 3,
    neighbours: int = 5,
    pixel: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict:
    """Explain image files and/or the first test images; write a static HTML report.

    Writes ``out_dir/index.html`` (self-contained), ``gallery.png``, one
    ``prediction_<i>.png`` per input and ``explanations.json``. Files that cannot be
    decoded are listed in the report and skipped. For a segmentation checkpoint, writes
    per-pixel sub-centroid maps instead (see :mod:`deepnc.commands.seg_explain`), and
    with ``pixel`` ``(row, column)`` the training images nearest the sub-centroid that
    labelled that pixel of each input (``pixel_<i>.png``).

    Returns:
        A summary: the report's path, how many inputs were explained and skipped.

    Raises:
        ValueError: a softmax checkpoint, a dataset that does not match the checkpoint,
            or nothing readable to explain.
    """
    from deepnc.data.normalise import to_pixels
    from deepnc.explain.evidence import explain_batch
    from deepnc.explain.render import plot_gallery, plot_prediction
    from deepnc.explain.report import ReportItem, write_report

    model, checkpoint = load_trained_model(path, device)
    if checkpoint.task == "segmentation":
        data = load_checkpoint_dataset(checkpoint, dataset=dataset)
        inputs, skipped = load_images(list(images), data)
        return _explain_dense(model, data, inputs, skipped, test_samples, out_dir, device, pixel)
    head = find_dnc_head(model)
    data = load_checkpoint_dataset(checkpoint, dataset=dataset)
    inputs, skipped = load_images(list(images), data)
    truths: list[int | None] = [None] * len(inputs)
    for index in range(min(test_samples, len(data.test))):
        image, label = data.test[index]
        inputs.append((f"test image {index}", image))
        truths.append(int(label))
    if not inputs:
        raise ValueError("no image to explain" + (f": {'; '.join(skipped)}" if skipped else ""))
    run = resolve_checkpoint(path).parent
    train = training_embeddings(model, run, data.train, device=device, progress=progress)
    exemplars = training_exemplars(checkpoint, model, train, data)
    occupancy = own_class_occupancy(head.subcentroids.detach().cpu(), train.features, train.labels)
    batch = torch.stack([image for _, image in inputs]).to(device)
    maps = _has_maps(model, batch[:1])
    explanations = explain_batch(
        model,
        batch,
        exemplars=exemplars,
        train=train,
        top_classes=top_classes,
        neighbours=neighbours,
        maps=maps is None,
        exemplar_images=lambda index: data.train[index][0],
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[int, np.ndarray] = {}

    def training_image(index: int) -> np.ndarray:
        if index not in cache:
            cache[index] = to_pixels(data.train[index][0], data.mean, data.std)
        return cache[index]

    items = []
    for number, ((name, image), explanation, truth) in enumerate(
        zip(inputs, explanations, truths, strict=True)
    ):
        pixels = to_pixels(image, data.mean, data.std)
        plot_prediction(
            pixels, explanation, training_image, data.class_names, out / f"prediction_{number}.png"
        )
        items.append(ReportItem(name, pixels, explanation, truth))
    plot_gallery(
        exemplars.indices, occupancy, training_image, data.class_names, out / "gallery.png"
    )
    facts = {
        "checkpoint": str(resolve_checkpoint(path)),
        "model": f"{checkpoint.config['model']} with a DNC head",
        "dataset": f"{data.name} ({len(data.train)} training images)",
        "sub-centroids": "snapped to training images"
        if checkpoint.snapped
        else "means of features (exemplar: nearest training image)",
        "similarity maps": "yes" if maps is None else f"none: {maps}",
    }
    page = write_report(
        out,
        items,
        training_image,
        data.class_names,
        title="deepnc explanations",
        gallery_png=out / "gallery.png",
        skipped=skipped,
        facts=facts,
    )
    records = [
        {"name": name, "true": truth, **explanation.to_dict()}
        for (name, _), explanation, truth in zip(inputs, explanations, truths, strict=True)
    ]
    (out / "explanations.json").write_text(json.dumps(records, indent=2))
    return {"report": str(page), "explained": len(items), "skipped": skipped}
