"""What ``deepnc eval`` computes: a checkpoint scored on a split of its dataset, with
per-class figures, ``eval.json`` and a picture (confusion matrix or predictions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from deepnc.checkpoint import resolve_checkpoint
from deepnc.engine.evaluation import evaluate_split
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.models.outputs import main_and_aux

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
    loader = DataLoader(images, batch_size, shuffle=False)
    result = evaluate_split(model, loader, data, torch.device(device), progress=progress)
    out = Path(out) if out else path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(path), "dataset": data.name, "split": split}
    report |= result.summary()
    if data.task == "segmentation":
        picture = out / "predictions.png"
        report["per_class_iou"] = _named(data.class_names, result.per_class_iou)
        _draw_predictions(model, images, data, device, picture)
    else:
        from deepnc.engine.plots import plot_confusion

        picture = out / "confusion.png"
        report["per_class_accuracy"] = _named(data.class_names, result.per_class)
        plot_confusion(result.confusion, data.class_names, picture)
    report |= {"confusion": result.confusion.tolist(), "picture": str(picture)}
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    return report


def _named(names, values: torch.Tensor) -> dict[str, float]:
    return {name: float(value) for name, value in zip(names, values, strict=True)}


@torch.no_grad()
def _draw_predictions(model, split, data, device, path: Path) -> None:
    from deepnc.engine.segmentation_plots import plot_segmentation

    count = min(PREDICTION_SAMPLES, len(split))
    images, masks = zip(*(split[i] for i in range(count)), strict=True)
    images, masks = torch.stack(images), torch.stack(masks)
    logits, _ = main_and_aux(model(images.to(device)))
    plot_segmentation(
        images,
        masks,
        logits.argmax(1).cpu(),
        class_names=data.class_names,
        mean=data.mean,
        std=data.std,
        path=path,
        ignore_index=data.ignore_index,
    )
