"""Segmentation streamed from files: does the data keep up, and a non-square set end to end.

1. ``throughput``: N synthetic 512x512 image/mask pairs written as PNG files (one
   ``images/`` + ``masks/`` tree), read through the training path itself
   (``deepnc.engine.build``: the seeded sampler, persistent workers) with the full
   pipeline (rescale around (2048, 512), 512x512 crops with the class cap, flip,
   photometric distortion) and ``--workers`` processes: images per second over one
   epoch, against the time of one FCN-ResNet-20 training step of the same batch on
   this machine. Target: a batch loads at least as fast as a step trains.
2. ``non_square``: fashion-scenes canvases (real Fashion-MNIST items) cropped to
   non-square sizes (64x96 and 80x96, alternately), written to one ``images/`` +
   ``masks/`` folder, trained from that folder with no manual split (``segfolder``
   holds 20% out with the seed) by FCN-ResNet-20 with the DNC head and with the 1x1
   conv, and scored at each image's own size.

    python -m benchmarks.segmentation_data

Writes ``benchmarks/results/full/segmentation_data.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import FULL_RESULTS, ROOT, command_line, write_results
from deepnc.data import compose_scenes
from deepnc.data.in_memory import fashion_mnist_arrays
from deepnc.engine.build import build_data, build_loaders
from deepnc.engine.compare import compare, comparison_rows
from deepnc.engine.config import load_config
from deepnc.engine.loop import StepOptions, train_one_epoch
from deepnc.engine.optim import build_optimizer
from deepnc.engine.runtime import Runtime
from deepnc.models.seg_models import create_segmentation_model

CLASSES = 8  # synthetic classes of the throughput set
STEP_ROUNDS = 2  # timed training steps after a warm-up


def write_synthetic(folder: Path, count: int, side: int) -> Path:
    """``count`` RGB images of ``side`` x ``side`` with random rectangles of CLASSES
    classes, and their masks; kept between runs (a marker names the count)."""
    marker = folder / f"complete-{count}-{side}"
    if marker.exists():
        return folder
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (CLASSES, 3))
    for index in range(count):
        mask = np.zeros((side, side), np.uint8)
        for label in rng.integers(1, CLASSES, 6):
            top, left = rng.integers(0, side * 3 // 4, 2)
            height, width = rng.integers(side // 8, side // 2, 2)
            mask[top : top + height, left : left + width] = label
        noise = rng.integers(0, 24, (side, side, 3))
        image = np.clip(colours[mask] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{index:05d}.png", compress_level=1)
        Image.fromarray(mask).save(folder / "masks" / f"{index:05d}.png")
    marker.touch()
    return folder


def throughput(folder: Path, arguments) -> dict:
    """Images per second of one epoch through the training loaders, and one step's time."""
    config = load_config(
        None,
        {
            "task": "segmentation",
            "dataset": "segfolder",
            "data_root": str(folder),
            "dataset_options": {
                "num_classes": CLASSES,
                "crop_size": [arguments.crop, arguments.crop],
                "scale": [4 * arguments.crop, arguments.crop],
            },
            "model": "fcn_resnet20",
            "batch_size": arguments.batch_size,
            "workers": arguments.workers,
            "progress": False,
        },
    )
    data = build_data(config)
    train_loader, _ = build_loaders(config, data, Runtime(torch.device("cpu")))
    start = time.perf_counter()
    iterator = iter(train_loader)
    first = next(iterator)
    startup = time.perf_counter() - start
    batches = 1 + sum(1 for _ in iterator)
    seconds = time.perf_counter() - start
    images = batches * config.batch_size
    step = step_seconds(first[0], first[1], CLASSES)
    return {
        "images": images,
        "workers": arguments.workers,
        "batch_size": config.batch_size,
        "crop": arguments.crop,
        "loader_images_per_second": images / seconds,
        "loader_seconds_per_batch": seconds / batches,
        "first_batch_seconds": startup,
        "train_step_seconds": step,
        "batch_over_step": (seconds / batches) / step,
    }


def step_seconds(images: torch.Tensor, masks: torch.Tensor, num_classes: int) -> float:
    """Seconds of one FCN-ResNet-20 (DNC head) training step on this batch (median of
    STEP_ROUNDS after a warm-up), the data already in memory."""
    model = create_segmentation_model(
        "fcn_resnet20", num_classes=num_classes, head_options={"ignore_index": 255}
    )
    optimizer = build_optimizer(model, "sgd", lr=0.01, weight_decay=5e-4)
    loader = DataLoader(TensorDataset(images, masks), batch_size=len(images))
    times = []
    for _ in range(1 + STEP_ROUNDS):
        options = StepOptions(ignore_index=255)
        stats = train_one_epoch(
            model, loader, optimizer, device=torch.device("cpu"), options=options
        )
        times.append(stats.step_seconds)
    return float(np.median(times[1:]))


def write_non_square(folder: Path, count: int) -> Path:
    """fashion-scenes canvases of 96, cropped to 64x96 and 80x96 in turn, as PNG files."""
    marker = folder / f"complete-{count}"
    if marker.exists():
        return folder
    items, labels = (torch.from_numpy(a.copy()) for a in fashion_mnist_arrays(None)["train"])
    images, masks = compose_scenes(items, labels, count, size=96, seed=5)
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        height = 64 if index % 2 else 80
        Image.fromarray(images[index, 0, :height].numpy()).save(
            folder / "images" / f"{index:05d}.png"
        )
        Image.fromarray(masks[index, :height].numpy()).save(folder / "masks" / f"{index:05d}.png")
    marker.touch()
    return folder


def non_square(folder: Path, arguments, overrides: list[str]) -> dict:
    """DNC against the 1x1 conv trained from one folder, scored at full resolution."""
    config = load_config(
        "fashion-scenes_fcn_resnet20",
        [
            "--dataset",
            "segfolder",
            "--data_root",
            str(folder),
            "--dataset_options",
            "{num_classes: 11, crop_size: [64, 64], photometric: false}",
            "--image_size",
            "null",
            "--lr",
            "0.1",
            "--epochs",
            str(arguments.epochs),
            "--eval_every",
            str(arguments.epochs),
            "--eval_batch_size",
            "64",
            "--progress",
            "false",
            *overrides,
        ],
    )
    summaries = compare(config, arguments.seeds, Path(arguments.out) / "non_square")
    rows = comparison_rows(summaries)
    return {"rows": rows, "recipe": dataclasses.replace(config, out_dir="").to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--canvases", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_segmentation_data"))
    parser.add_argument("--results", default=str(FULL_RESULTS / "segmentation_data"))
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(arguments.out)
    synthetic = out / f"synthetic{arguments.side}"
    loading = throughput(write_synthetic(synthetic, arguments.images, arguments.side), arguments)
    scenes_folder = write_non_square(out / "non_square_set", arguments.canvases)
    scenes = non_square(scenes_folder, arguments, overrides)
    command = command_line("segmentation_data", argv)
    result = {"command": command, "throughput": loading, "non_square": scenes}
    table = markdown(result)
    write_results(arguments.results, result, table)
    print(table)
    return 0


def markdown(result: dict) -> str:
    loading = result["throughput"]
    lines = [
        f"`{result['command']}`",
        "",
        "| images | workers | batch | loader (images/s) | loader s / batch | training step s |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {loading['images']} | {loading['workers']} | {loading['batch_size']} | "
        f"{loading['loader_images_per_second']:.1f} | "
        f"{loading['loader_seconds_per_batch']:.3f} | {loading['train_step_seconds']:.3f} |",
        "",
        "| head | mIoU (%) | per seed |",
        "| --- | --- | --- |",
    ]
    for row in result["non_square"]["rows"]:  # mIoU in % already
        seeds = ", ".join(f"{v:.2f}" for v in row["miou"])
        mean = f"{row['miou_mean']:.2f} ± {row['miou_std']:.2f}"
        lines.append(f"| {row['head']} | {mean} | {seeds} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
