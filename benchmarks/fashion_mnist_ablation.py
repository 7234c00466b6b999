"""Why DNC trails or leads softmax on the short Fashion-MNIST recipe: one variant per row, 3 seeds.

Every variant trains the recipe of ``configs/fashion-mnist_resnet20.yaml`` (ResNet-20,
4 epochs, SGD, cosine) with one change, under seeds 0, 1, 2. Each head gets the same
tuning budget: one variant besides its default.

- DNC as the paper sets it (momentum 0.999 from the first update);
- DNC with a momentum warm-up (the n-th update of a class uses min(0.999, (1+n)/(10+n)));
- softmax as is; softmax with label smoothing 0.1.

For DNC variants the script also measures how close the sub-centroids are to real
training features (mean cosine between each sub-centroid and its nearest training
image of its class: 1 means a sub-centroid sits on real data) and how alike the
sub-centroids of a class are (mean pairwise cosine). Finished runs anywhere under
``runs/`` with an identical recipe are reused.

    python benchmarks/fashion_mnist_ablation.py
    python benchmarks/fashion_mnist_ablation.py --seeds 0 --epochs 1 --train_subset 2000   # quick

Writes ``benchmarks/results/fashion_mnist_ablation.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path

import torch

from deepnc.compare import run_once
from deepnc.config import load_config
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain import embed_dataset, find_dnc_head, snap_subcentroids, subcentroid_similarity

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"num_subcentroids": 4, "tau": 0.1, "momentum": 0.999, "memory_size": 64}
VARIANTS = {
    "DNC, momentum 0.999 from the start (paper)": {"head": "dnc", "head_options": PAPER},
    "DNC, momentum warm-up W=10": {"head": "dnc", "head_options": {**PAPER, "momentum_warmup": 10}},
    "softmax": {"head": "linear", "head_options": {}},
    "softmax, label smoothing 0.1": {"head": "linear", "head_options": {}, "label_smoothing": 0.1},
}


def subcentroid_fit(run_dir: Path) -> dict[str, float]:
    """How near the sub-centroids are to real training features, and to one another."""
    model, state = load_trained_model(run_dir)
    head = find_dnc_head(model)
    data = load_checkpoint_dataset(state)
    train = embed_dataset(model, data.train, batch_size=512)
    subcentroids = head.subcentroids.detach().cpu()
    nearest = snap_subcentroids(subcentroids, train.features, train.labels, distinct=False)
    return {
        "nearest_training_cosine": float(nearest.similarity.nanmean()),
        "pairwise_cosine": float(subcentroid_similarity(subcentroids).nanmean()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/fashion-mnist_resnet20.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "runs/bench_fashion_mnist_ablation"))
    parser.add_argument(
        "--results", default=str(ROOT / "benchmarks/results/fashion_mnist_ablation")
    )
    arguments, overrides = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = load_config(arguments.config, [*overrides, "--progress", "false"])
    rows = []
    for number, (name, change) in enumerate(VARIANTS.items()):
        runs = []
        for seed in arguments.seeds:
            run_dir = Path(arguments.out) / f"variant{number}-seed{seed}"
            config = dataclasses.replace(base, seed=seed, out_dir=str(run_dir), **change)
            summary = run_once(config, reuse_from=[ROOT / "runs"])
            if change["head"] == "dnc":
                summary = {**summary, **subcentroid_fit(run_dir)}
            runs.append(summary)
        top1 = [100 * run["test_top1"] for run in runs]
        row = {
            "variant": name,
            "change": change,
            "seeds": arguments.seeds,
            "top1": top1,
            "top1_mean": statistics.mean(top1),
            "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
            "step_seconds": statistics.mean(run["step_seconds"] for run in runs),
        }
        for key in ("nearest_training_cosine", "pairwise_cosine"):
            if key in runs[0]:
                row[key] = statistics.mean(run[key] for run in runs)
        rows.append(row)
    command = " ".join(["python", "benchmarks/fashion_mnist_ablation.py", *sys.argv[1:]])
    lines = [
        f"`{command}`",
        "",
        "| variant | top-1 (%) mean ± std | per seed | sub-centroid to nearest training "
        "image (cos) | between sub-centroids of a class (cos) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        near = f"{row['nearest_training_cosine']:.3f}" if "nearest_training_cosine" in row else "-"
        pair = f"{row['pairwise_cosine']:.3f}" if "pairwise_cosine" in row else "-"
        lines.append(
            f"| {row['variant']} | {row['top1_mean']:.2f} ± {row['top1_std']:.2f} "
            f"| {', '.join(f'{v:.2f}' for v in row['top1'])} | {near} | {pair} |"
        )
    table = "\n".join(lines) + "\n"
    results = Path(arguments.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command,
        "recipe": base.to_dict(),
        "rows": rows,
        "torch": torch.__version__,
    }
    results.with_suffix(".json").write_text(json.dumps(report, indent=2))
    results.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
