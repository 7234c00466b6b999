"""Ablations of DNC on Fashion-MNIST: one change per row, against the paper's settings, 3 seeds.

Every variant trains the recipe of ``configs/fashion-mnist_resnet20.yaml`` (ResNet-20,
SGD, cosine) with one change, under each seed:

- K, the sub-centroids per class, in {1, 2, 4, 8};
- the assignment: balanced Sinkhorn (the method), plain nearest sub-centroid, or
  uniformly random (what the official code's clustering amounts to, METHOD.md section 5);
- the momentum in {0.9, 0.99, 0.999}; a momentum warm-up;
- the memory length per class in {0 (the batch alone), 64, 256};
- tau in {0.05, 0.1, 0.2, auto};
- the official code's LayerNorm over the class scores in place of tau (``logit_norm``);
- softmax as is, and with label smoothing 0.1 (the same tuning budget as the warm-up).

For every DNC variant it also measures whether the sub-centroids of a class collapse:
their mean pairwise cosine (1 = all K identical), the smallest share of a class's
assignments that any sub-centroid received (1/K when balanced, 0 when unused), and how
close the sub-centroids are to real training features (mean cosine to the nearest
training image of the class). Finished runs anywhere under ``runs/`` with an identical
recipe are reused.

    python -m benchmarks.fashion_mnist_ablation
    python -m benchmarks.fashion_mnist_ablation --seeds 0 --epochs 1 --train_subset 2000   # quick

Writes ``benchmarks/results/full/fashion_mnist_ablation.{json,md}`` (``--results``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import statistics
import sys
from pathlib import Path

from benchmarks.common import PAPER_HEAD, ROOT, command_line, training_parser, write_results
from deepnc.engine.compare import run_once
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain import embed_dataset, find_dnc_head, snap_subcentroids, subcentroid_similarity

PAPER = PAPER_HEAD


def _dnc(group: str, **change) -> dict:
    return {"group": group, "head": "dnc", "head_options": {**PAPER, **change}}


# name -> (group, config changes); the paper's settings are the reference of every group
VARIANTS = {
    "DNC, paper settings (K=4, Sinkhorn, momentum 0.999, memory 64, tau 0.1)": _dnc("paper"),
    "K=1": _dnc("K", num_subcentroids=1),
    "K=2": _dnc("K", num_subcentroids=2),
    "K=8": _dnc("K", num_subcentroids=8),
    "nearest assignment": _dnc("assignment", assignment="nearest"),
    "random assignment (the official code)": _dnc("assignment", assignment="random"),
    "momentum 0.9": _dnc("momentum", momentum=0.9),
    "momentum 0.99": _dnc("momentum", momentum=0.99),
    "momentum warm-up W=10": _dnc("momentum", momentum_warmup=10),
    "memory 0 (the batch alone)": _dnc("memory", memory_size=0),
    "memory 256": _dnc("memory", memory_size=256),
    "tau 0.05": _dnc("tau", tau=0.05),
    "tau 0.2": _dnc("tau", tau=0.2),
    "tau auto (0.32 at C = 10)": _dnc("tau", tau="auto"),
    "logit LayerNorm over the classes (the official code)": _dnc("logits", logit_norm=True),
    "softmax": {"group": "softmax", "head": "linear", "head_options": {}},
    "softmax, label smoothing 0.1": {
        "group": "softmax",
        "head": "linear",
        "head_options": {},
        "label_smoothing": 0.1,
    },
}


def subcentroid_fit(run_dir: Path) -> dict[str, float]:
    """How near the sub-centroids are to real training features, and to one another."""
    model, checkpoint = load_trained_model(run_dir)
    head = find_dnc_head(model)
    data = load_checkpoint_dataset(checkpoint)
    train = embed_dataset(model, data.train, batch_size=512)
    subcentroids = head.subcentroids.detach().cpu()
    nearest = snap_subcentroids(subcentroids, train.features, train.labels, distinct=False)
    occupancy = head.bank.diagnostics().occupancy  # (C, K) share of each class's samples
    return {
        "nearest_training_cosine": float(nearest.similarity.nanmean()),
        "pairwise_cosine": float(subcentroid_similarity(subcentroids).nanmean()),
        "smallest_share": float(occupancy.nan_to_num(0).min(dim=1).values.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(
        __doc__.splitlines()[0], "bench_fashion_mnist_ablation", "fashion_mnist_ablation"
    )
    parser.add_argument("--config", default=str(ROOT / "configs/fashion-mnist_resnet20.yaml"))
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paper = ["--head_options", json.dumps(PAPER), "--subcentroid_half_life", "null"]
    base = load_config(arguments.config, [*paper, *overrides, "--progress", "false"])
    rows = []
    for name, change in VARIANTS.items():
        runs = []
        slug = re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")[:32]
        group, change = change["group"], {k: v for k, v in change.items() if k != "group"}
        for seed in arguments.seeds:
            run_dir = Path(arguments.out) / f"{slug}-seed{seed}"
            config = dataclasses.replace(base, seed=seed, out_dir=str(run_dir), **change)
            summary = run_once(config, reuse_from=[ROOT / "runs"])
            if change["head"] == "dnc":
                summary = {**summary, **subcentroid_fit(run_dir)}
            runs.append(summary)
        top1 = [100 * run["test_top1"] for run in runs]
        row = {
            "variant": name,
            "group": group,
            "change": change,
            "seeds": arguments.seeds,
            "top1": top1,
            "top1_mean": statistics.mean(top1),
            "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
            "step_seconds": statistics.mean(run["step_seconds"] for run in runs),
        }
        for key in ("nearest_training_cosine", "pairwise_cosine", "smallest_share"):
            if key in runs[0]:
                row[key] = statistics.mean(run[key] for run in runs)
        rows.append(row)
    command = command_line("fashion_mnist_ablation.py", argv)
    lines = [
        f"`{command}`",
        "",
        "| variant | top-1 (%) mean ± std | per seed | between sub-centroids of a class "
        "(cos) | smallest share | sub-centroid to nearest training image (cos) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [
            f"{row[key]:.3f}" if row.get(key) == row.get(key) and key in row else "-"
            for key in ("pairwise_cosine", "smallest_share", "nearest_training_cosine")
        ]  # NaN (K = 1 has no pairs) and softmax rows show "-"
        lines.append(
            f"| {row['variant']} | {row['top1_mean']:.2f} ± {row['top1_std']:.2f} "
            f"| {', '.join(f'{v:.2f}' for v in row['top1'])} | " + " | ".join(cells) + " |"
        )
    table = "\n".join(lines) + "\n"
    report = {"command": command, "recipe": base.to_dict(), "rows": rows}
    write_results(arguments.results, report, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
