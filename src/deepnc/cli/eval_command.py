"""``deepnc eval CHECKPOINT``: the task's metrics, a confusion matrix or prediction PNG."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from deepnc.checkpoint import resolve_checkpoint
from deepnc.engine.evaluation import evaluate_split
from deepnc.engine.plots import plot_confusion
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.engine.setup import select_device
from deepnc.explain.dense import plot_segmentation
from deepnc.models.outputs import main_and_aux

PREDICTION_SAMPLES = 6  # test images drawn in predictions.png for a segmentation model


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a checkpoint: top-1/top-5 and confusion, or mIoU and per-class IoU",
        description=(
            "Evaluate a checkpoint (file or run folder) on its dataset's test split. "
            "Classification: top-1, top-5, per-class accuracy, confusion.png. "
            "Segmentation: mIoU, pixel accuracy, per-class IoU, predictions.png."
        ),
    )
    parser.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    parser.add_argument("--split", choices=("test", "train", "val"), default="test")
    parser.add_argument("--dataset", help="evaluate on another dataset of the same shape")
    parser.add_argument("--data-root", help="where the dataset lives (default: as trained)")
    parser.add_argument("--out", help="folder for eval.json and the PNG (default: RUN/eval)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    if rest:
        raise ValueError(f"eval takes no config overrides, got {rest}")
    path = resolve_checkpoint(arguments.checkpoint)
    device = select_device(arguments.device)
    model, checkpoint = load_trained_model(path, device)
    data = load_checkpoint_dataset(
        checkpoint, dataset=arguments.dataset, data_root=arguments.data_root
    )
    split = getattr(data, arguments.split)
    if split is None:
        raise ValueError(f"{data.name} has no {arguments.split} split")
    loader = DataLoader(split, arguments.batch_size, shuffle=False)
    result = evaluate_split(model, loader, data, device, progress=True)
    out = Path(arguments.out) if arguments.out else path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(path), "dataset": data.name, "split": arguments.split}
    report.update(result.summary())
    print(f"{data.name} {arguments.split}: {result.samples} images")
    if data.task == "segmentation":
        per_class = _named(data.class_names, result.per_class_iou)
        report |= {"per_class_iou": per_class, "confusion": result.confusion.tolist()}
        picture = out / "predictions.png"
        _draw_predictions(model, split, data, device, picture)
        print(
            f"mIoU {100 * result.miou:.2f}%   pixel accuracy "
            f"{100 * result.pixel_accuracy:.2f}%   loss {result.loss:.4f}"
        )
        _print_table("IoU", per_class)
    else:
        per_class = _named(data.class_names, result.per_class)
        report |= {"per_class_accuracy": per_class, "confusion": result.confusion.tolist()}
        picture = out / "confusion.png"
        plot_confusion(result.confusion, data.class_names, picture)
        print(
            f"top-1 {100 * result.top1:.2f}%   top-5 {100 * result.top5:.2f}%   "
            f"loss {result.loss:.4f}"
        )
        _print_table("accuracy", per_class)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'eval.json'} and {picture}")
    return 0


def _named(names, values: torch.Tensor) -> dict[str, float]:
    return {name: float(value) for name, value in zip(names, values, strict=True)}


def _print_table(what: str, values: dict[str, float]) -> None:
    width = max(len(name) for name in values)
    print(f"per-class {what}:")
    for name, value in values.items():
        shown = "   n/a" if math.isnan(value) else f"{100 * value:6.2f}%"
        print(f"  {name:<{width}}  {shown}")


@torch.no_grad()
def _draw_predictions(model, split, data, device, path: Path) -> None:
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
