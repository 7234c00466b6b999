"""A short dense run with defaults, as a new user's first try: does the model label every
pixel with one class?

Two small two-class sets of 128-px tiles, each in one ``images/`` + ``masks/`` folder
(the same canvases of 2-4 real Fashion-MNIST items, derived from real images): ``items``
labels every item pixel 1 and the blank canvas 0; ``footwear`` labels the pixels of
sandals, sneakers and ankle boots 1 and everything else 0 (the canvas and every other
item), so brightness alone does not separate them and the foreground is rare. Each is
trained from its folder with ``deepnc train``'s defaults (``segfolder`` holds 20% out by
the seed and scores on it; FCN-ResNet-20) for 3 epochs of batches of 8, with the DNC head
and with the 1x1 conv, and DNC with the knobs that a user may reach for: no precise BN
(the default before), and the warm start with a one-epoch momentum half-life. Reports
mIoU, each class's IoU and the share of the scored pixels put in the most-predicted class
beside the largest class's true share.

    python -m benchmarks.tiny_tiles                # 2 seeds, about 16 minutes on 2 CPU cores

Writes ``benchmarks/results/full/tiny_tiles.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.common import FULL_RESULTS, command_line, write_results
from deepnc.data import compose_scenes
from deepnc.data.in_memory import fashion_mnist_arrays
from deepnc.engine import train
from deepnc.engine.build import build_data
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_trained_model
from deepnc.engine.seg_evaluation import evaluate_segmentation

SIDE = 128
FOOTWEAR = (5, 7, 9)  # Fashion-MNIST's sandal, sneaker, ankle boot
SETS = ("items", "footwear")  # what the foreground class of each set is
RECIPE = {
    "task": "segmentation",
    "dataset": "segfolder",
    "dataset_options": {"num_classes": 2},
    "model": "fcn_resnet20",
    "epochs": 3,
    "batch_size": 8,
    "progress": False,
    "threads": 2,
}
VARIANTS = {  # name: (head, overrides)
    "1x1 conv (defaults)": ("linear", {}),
    "DNC (defaults)": ("dnc", {}),
    "DNC, no precise BN": ("dnc", {"precise_bn": None}),
    "DNC, warm start, half-life 1 epoch": (
        "dnc",
        {"head_init": "warm", "subcentroid_half_life": 1.0},
    ),
}


def write_tiles(folder: Path, count: int, foreground: str) -> Path:
    """``count`` 128-px tiles and their two-class masks (``foreground``: one of SETS) as
    PNG files (kept between runs)."""
    marker = folder / f"complete-{count}-{foreground}"
    if marker.exists():
        return folder
    items, labels = (torch.from_numpy(a.copy()) for a in fashion_mnist_arrays(None)["train"])
    images, masks = compose_scenes(items, labels, count, size=SIDE, items_per_scene=(2, 4), seed=7)
    if foreground == "items":
        labelled = (masks > 0).to(torch.uint8)
    else:
        labelled = torch.isin(masks.long() - 1, torch.tensor(FOOTWEAR)).to(torch.uint8)
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(images[index, 0].numpy()).save(folder / "images" / f"{index:04d}.png")
        Image.fromarray(labelled[index].numpy()).save(folder / "masks" / f"{index:04d}.png")
    marker.touch()
    return folder


def scores(run: Path) -> dict:
    """mIoU, per-class IoU (%) and the most-predicted class's share of the scored pixels
    (with the largest true share) of a finished run."""
    model, checkpoint = load_trained_model(run)
    data = build_data(load_config(None, checkpoint.config))
    loader = DataLoader(data.test, batch_size=16)
    result = evaluate_segmentation(
        model,
        loader,
        num_classes=data.num_classes,
        device=torch.device("cpu"),
        ignore_index=data.ignore_index,
    )
    predicted, true = result.class_counts()
    return {
        "miou": 100 * result.miou,
        "per_class_iou": [100 * float(v) for v in result.per_class_iou],
        "largest_class_share": float(predicted.max() / predicted.sum()),
        "largest_true_share": float(true.max() / true.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--runs", default="runs/bench/tiny_tiles")
    parser.add_argument("--results", default=str(FULL_RESULTS / "tiny_tiles"))
    arguments = parser.parse_args(argv)
    rows = []
    for tiles, (name, (head, overrides)) in itertools.product(SETS, VARIANTS.items()):
        runs = Path(arguments.runs) / tiles
        folder = write_tiles(runs / f"tiles{arguments.tiles}", arguments.tiles, tiles)
        per_seed = []
        for seed in arguments.seeds:
            slug = name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            out = runs / f"{slug}-seed{seed}"
            if not (out / "summary.json").exists():
                values = {**RECIPE, "data_root": str(folder), "head": head, "seed": seed}
                train(load_config(None, {**values, "out_dir": str(out), **overrides}))
            per_seed.append(scores(out))
        row = {"set": tiles, "variant": name, "per_seed": per_seed}
        for key in ("miou", "largest_class_share", "largest_true_share"):
            row[key] = statistics.mean(s[key] for s in per_seed)
        row["per_class_iou"] = [
            statistics.mean(ious)
            for ious in zip(*(s["per_class_iou"] for s in per_seed), strict=True)
        ]
        rows.append(row)
        print(
            f"{tiles:8s} {name:40s} mIoU {row['miou']:5.1f}  IoU {row['per_class_iou'][0]:5.1f} / "
            f"{row['per_class_iou'][1]:5.1f}  largest predicted class "
            f"{row['largest_class_share']:.2f} (true {row['largest_true_share']:.2f})",
            flush=True,
        )
    result = {
        "command": command_line("tiny_tiles", argv),
        "recipe": RECIPE,
        "tiles": arguments.tiles,
        "seeds": arguments.seeds,
        "rows": rows,
    }
    lines = [
        f"`{result['command']}`",
        "",
        "| set | variant | mIoU (%) | IoU class 0 / class 1 (%) | most-predicted class "
        "(share) | largest true class (share) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['set']} | {r['variant']} | {r['miou']:.1f} | {r['per_class_iou'][0]:.1f} / "
        f"{r['per_class_iou'][1]:.1f} | {r['largest_class_share']:.2f} "
        f"| {r['largest_true_share']:.2f} |"
        for r in rows
    ]
    write_results(arguments.results, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
