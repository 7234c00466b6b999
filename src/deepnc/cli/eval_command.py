"""``deepnc eval CHECKPOINT``: top-1, top-5, per-class accuracy, confusion matrix PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from deepnc.engine.loop import evaluate
from deepnc.engine.plots import plot_confusion
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model, resolve_checkpoint
from deepnc.engine.setup import select_device


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="evaluate a checkpoint: top-1, top-5, per-class accuracy, confusion matrix",
        description="Evaluate a checkpoint (file or run folder) on its dataset's test split.",
    )
    parser.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--dataset", help="evaluate on another dataset of the same shape")
    parser.add_argument("--data-root", help="where the dataset lives (default: as trained)")
    parser.add_argument("--out", help="folder for eval.json and confusion.png (default: RUN/eval)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    if rest:
        raise ValueError(f"eval takes no config overrides, got {rest}")
    path = resolve_checkpoint(arguments.checkpoint)
    device = select_device(arguments.device)
    model, state = load_trained_model(path, device)
    data = load_checkpoint_dataset(state, dataset=arguments.dataset, data_root=arguments.data_root)
    split = data.test if arguments.split == "test" else data.train
    loader = DataLoader(split, arguments.batch_size, shuffle=False)
    result = evaluate(model, loader, num_classes=data.num_classes, device=device, progress=True)
    out = Path(arguments.out) if arguments.out else path.parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    per_class = {
        name: float(acc) for name, acc in zip(data.class_names, result.per_class, strict=True)
    }
    report = {
        "checkpoint": str(path),
        "dataset": data.name,
        "split": arguments.split,
        **result.summary(),
        "per_class_accuracy": per_class,
        "confusion": result.confusion.tolist(),
    }
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    plot_confusion(result.confusion, data.class_names, out / "confusion.png")
    print(f"{data.name} {arguments.split}: {result.samples} images")
    print(
        f"top-1 {100 * result.top1:.2f}%   top-5 {100 * result.top5:.2f}%   loss {result.loss:.4f}"
    )
    width = max(len(name) for name in data.class_names)
    for name, accuracy in per_class.items():
        shown = "   n/a" if torch.isnan(torch.tensor(accuracy)) else f"{100 * accuracy:6.2f}%"
        print(f"  {name:<{width}}  {shown}")
    print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0
