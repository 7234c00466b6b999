"""``deepnc eval CHECKPOINT``: the task's metrics, a confusion matrix or prediction PNG."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from deepnc.cli.types import at_least


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
    parser.add_argument("--batch-size", type=at_least(1), default=512)
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.commands.evaluate import evaluate_checkpoint
    from deepnc.engine.runtime import select_device

    report = evaluate_checkpoint(
        arguments.checkpoint,
        split=arguments.split,
        dataset=arguments.dataset,
        data_root=arguments.data_root,
        out=arguments.out,
        batch_size=arguments.batch_size,
        device=select_device(arguments.device),
        progress=True,
    )
    print(f"{report['dataset']} {report['split']}: {report['samples']} images")
    if "miou" in report:
        print(
            f"mIoU {100 * report['miou']:.2f}%   pixel accuracy "
            f"{100 * report['pixel_accuracy']:.2f}%   loss {report['loss']:.4f}"
        )
        _print_table("IoU", report["per_class_iou"])
    else:
        print(
            f"top-1 {100 * report['top1']:.2f}%   top-5 {100 * report['top5']:.2f}%   "
            f"loss {report['loss']:.4f}"
        )
        _print_table("accuracy", report["per_class_accuracy"])
    print(f"wrote {Path(report['picture']).parent / 'eval.json'} and {report['picture']}")
    return 0


def _print_table(what: str, values: dict[str, float]) -> None:
    width = max(len(name) for name in values)
    print(f"per-class {what}:")
    for name, value in values.items():
        shown = "   n/a" if math.isnan(value) else f"{100 * value:6.2f}%"
        print(f"  {name:<{width}}  {shown}")
