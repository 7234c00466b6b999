"""What ``deepnc eval`` computes: a checkpoint scored on a split of its dataset, with
per-class figures, ``eval.json`` and a picture (confusion matrix or predictions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from deepnc.data.masks import resize_masks
from deepnc.data.seg_files import collate_segmentation
from deepnc.engine.checkpoint import resolve_checkpoint
from deepnc.engine.evaluation import evaluate_split
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.engine.seg_inference import InferenceOptions, infer

__all__ = ["PREDICTION_SAMPLES", "evaluate_checkpoint"]

PREDICTION_SAMPLES = 6  # test images drawn in predictions.png for a segmentation model


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    split: str = "test",
    dataset: str | None = None,
    data_root: str | None = None,
    out: str | Path | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Score a checkpoint (file or run folder) and write ``eval.json`` and its picture.

    Args:
        split: ``"test"``, ``"train"`` or ``"val"`` of the checkpoint's dataset (or of
            ``dataset``, one of the same shape).
        out: the folder written (default ``RUN/eval``).

    Returns:
        What ``eval.json`` holds: the checkpoint, dataset, split, the task's metrics,
        ``per_class_accuracy`` or ``per_class_iou`` (by class name), the confusion
        matrix, the number of images (``samples``) and the picture's path.

    Raises:
        ValueError: the dataset has no such split, or does not match the checkpoint.
    """
    path = resolve_checkpoint(checkpoint)
    model, saved = load_trained_model(path, device)
    data = load_checkpoint_dataset(saved, dataset=dataset, data_root=data_root)
    images = getattr(data, split)
    if images is None:
        raise ValueError(f"{data.name} has no {split} split")
    segmentation = data.task == "segmentation"
    collate = collate_segmentation if segmentation else None
    loader = DataLoader(images, batch_size, shuffle=False, collate_fn=collate)
    inference = InferenceOptions.from_config(saved.config.get("inference"))
    result = evaluate_split(
        model, loader, data, torch.device(device), progress=progress, inference=inference
    )
    out = Path(out) if out else path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(path), "dataset": data.name, "split": split}
    report |= result.summary()
    if segmentation:
        picture = out / "predictions.png"
        report["per_class_iou"] = _named(data.class_names, result.per_class_iou)
        _draw_predictions(model, images, data, device, picture, inference)
    else:
        from deepnc.plots.run_plots import plot_confusion

        picture = out / "confusion.png" if result.confusion is not None else None
        report["per_class_accuracy"] = _named(data.class_names, result.per_class)
        if picture is not None:
            plot_confusion(result.confusion, data.class_names, picture)
    confusion = None if result.confusion is None else result.confusion.tolist()
    report |= {"confusion": confusion, "picture": None if picture is None else str(picture)}
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return report


def _named(names, values: torch.Tensor) -> dict[str, float]:
    return {name: float(value) for name, value in zip(names, values, strict=True)}


@torch.no_grad()
def _draw_predictions(model, split, data, device, path: Path, inference) -> None:
    """The first test images, their masks and the predictions, each at the image's size."""
    from deepnc.plots.seg_plots import plot_segmentation

    count = min(PREDICTION_SAMPLES, len(split))
    images, masks, predicted = [], [], []
    for index in range(count):
        image, mask = split[index]
        size = image.shape[-2:]
        if mask.shape != size:  # a full-resolution mask, shown at the image's size
            mask = resize_masks(mask[None], tuple(size))[0]
        scores = infer(model, image[None].to(device), inference, size)
        images.append(image)
        masks.append(mask)
        predicted.append(scores.argmax(1)[0].cpu())
    plot_segmentation(
        images,
        masks,
        predicted,
        class_names=data.class_names,
        mean=data.mean,
        std=data.std,
        path=path,
        ignore_index=data.ignore_index,
    )
