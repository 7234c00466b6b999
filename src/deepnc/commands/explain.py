"""What ``deepnc explain`` does: the evidence behind a checkpoint's predictions (the
training exemplars of the deciding sub-centroids, similarity maps), as figures, an HTML
report and ``explanations.json``; per-pixel maps for a segmentation checkpoint.

It returns data; the CLI prints it. The training set is re-created exactly as the
model saw it (same subset and seed, evaluation transforms), so exemplar indices stay
valid whenever the checkpoint is loaded again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from deepnc.data import DatasetSplits
from deepnc.data.base import item_name
from deepnc.data.image_files import find_images, read_image
from deepnc.engine.checkpoint import Checkpoint, resolve_checkpoint
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain.embeddings import Embeddings, find_dnc_head, training_embeddings
from deepnc.explain.snap import (
    SnapResult,
    own_class_occupancy,
    snap_subcentroids,
)

__all__ = ["explain_checkpoint", "load_images", "training_exemplars"]


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
        maps = pooled_feature_maps(model, images)
    except ValueError as error:
        return str(error)
    side = tuple(maps.shape[-2:])
    if side[0] * side[1] < 4:
        return (
            f"the last feature map is {side[0]}x{side[1]} at this input size, too coarse to "
            "show where: give the model larger images (image_size)"
        )
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
    data_root: str | None = None,
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
        data = load_checkpoint_dataset(checkpoint, dataset=dataset, data_root=data_root)
        inputs, skipped = load_images(list(images), data)
        return _explain_dense(model, data, inputs, skipped, test_samples, out_dir, device, pixel)
    head = find_dnc_head(model)
    data = load_checkpoint_dataset(checkpoint, dataset=dataset, data_root=data_root)
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

    root = data_root or checkpoint.config["data_root"]

    def training_name(index: int) -> str:
        file = item_name(data.train, index, root)
        return f"training image {index}" + (f": {file}" if file is not None else "")

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
        training_name=training_name,
    )
    records = [
        {
            "name": name,
            "true": truth,
            **explanation.to_dict(),
            "exemplar_files": [
                item_name(data.train, e.exemplar, root) if e.exemplar >= 0 else None
                for e in explanation.classes
            ],
        }
        for (name, _), explanation, truth in zip(inputs, explanations, truths, strict=True)
    ]
    (out / "explanations.json").write_text(json.dumps(records, indent=2))
    return {"report": str(page), "explained": len(items), "skipped": skipped}
