"""What snapping sub-centroids to real training images costs, on the Fashion-MNIST DNC models.

For each seed's DNC run of ``configs/fashion-mnist_resnet20.yaml`` (trained if missing,
reused if any identical finished run exists under ``runs/``): test top-1 before and
after every sub-centroid is replaced by its most similar training image (distinct per
sub-centroid), the mean pairwise cosine of each class's sub-centroids and their
occupancy before and after, and the time to embed and snap the full training set.
Each model is snapped twice: as trained, and after ``--refit`` (the sub-centroids first
re-estimated by balanced k-means from the final embedding of the training set, see
``deepnc snap --refit``), with the top-1 of the refitted head before it is snapped.

    python -m benchmarks.fashion_mnist_snap
    python -m benchmarks.fashion_mnist_snap --seeds 0 --epochs 1 --train_subset 2000   # quick

Writes ``benchmarks/results/full/fashion_mnist_snap.{json,md}`` (``--results``).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.common import ROOT, command_line, training_parser, write_results
from deepnc.commands.snap import snap_checkpoint
from deepnc.engine.compare import run_once
from deepnc.engine.config import load_config


def occupancy_summary(occupancy: torch.Tensor) -> dict[str, float]:
    share = occupancy.double() / occupancy.sum(1, keepdim=True).clamp_min(1)
    return {"min_share": float(share.min()), "max_share": float(share.max())}


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(
        __doc__.splitlines()[0], "bench_fashion_mnist_snap", "fashion_mnist_snap"
    )
    parser.add_argument("--config", default=str(ROOT / "configs/fashion-mnist_resnet20.yaml"))
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = load_config(arguments.config, [*overrides, "--progress", "false", "--head", "dnc"])
    rows = []
    for seed in arguments.seeds:
        run_dir = Path(arguments.out) / f"dnc-seed{seed}"
        run_once(dataclasses.replace(base, seed=seed, out_dir=str(run_dir)), [ROOT / "runs"])
        report, _ = snap_checkpoint(run_dir, distinct=True)
        refitted, _ = snap_checkpoint(
            run_dir, run_dir / "snapped-refit.safetensors", distinct=True, refit=True
        )
        rows.append(
            {
                "seed": seed,
                "top1_before": 100 * report.top1_before,
                "top1_after": 100 * report.top1_after,
                "drop": 100 * (report.top1_before - report.top1_after),
                "top1_refit": 100 * refitted.top1_refit,
                "top1_refit_snapped": 100 * refitted.top1_after,
                "drop_refit": 100 * (refitted.top1_before - refitted.top1_after),
                "exemplar_cosine_refit": float(refitted.snap.similarity.nanmean()),
                "pairwise_cosine_before": float(report.similarity_before.nanmean()),
                "pairwise_cosine_after": float(report.similarity_after.nanmean()),
                "pairwise_cosine_per_class_before": report.similarity_before.tolist(),
                "pairwise_cosine_per_class_after": report.similarity_after.tolist(),
                "exemplar_cosine": float(report.snap.similarity.nanmean()),
                "occupancy_before": report.occupancy_before.tolist(),
                "occupancy_after": report.occupancy_after.tolist(),
                **{f"{k}_before": v for k, v in occupancy_summary(report.occupancy_before).items()},
                **{f"{k}_after": v for k, v in occupancy_summary(report.occupancy_after).items()},
                "train_size": report.train_size,
                "embed_seconds": report.embed_seconds,
                "total_seconds": report.total_seconds,
            }
        )
    command = command_line("fashion_mnist_snap.py", argv)
    lines = [
        f"`{command}`",
        "",
        "| seed | top-1 before (%) | top-1 after (%) | drop (points) "
        "| sub-centroid to its image (cos) | pairwise cos before / after "
        "| smallest occupancy share before / after | refitted top-1 (%) "
        "| refitted and snapped top-1 (%) | drop with --refit (points) "
        "| refitted sub-centroid to its image (cos) | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | {row['top1_before']:.2f} | {row['top1_after']:.2f} "
            f"| {row['drop']:.2f} "
            f"| {row['exemplar_cosine']:.3f} "
            f"| {row['pairwise_cosine_before']:.3f} / {row['pairwise_cosine_after']:.3f} "
            f"| {row['min_share_before']:.3f} / {row['min_share_after']:.3f} "
            f"| {row['top1_refit']:.2f} | {row['top1_refit_snapped']:.2f} "
            f"| {row['drop_refit']:.2f} | {row['exemplar_cosine_refit']:.3f} "
            f"| {row['total_seconds']:.0f} |"
        )
    mean_drop = statistics.mean(row["drop"] for row in rows)
    mean_drop_refit = statistics.mean(row["drop_refit"] for row in rows)
    lines.append(
        f"\nMean drop: {mean_drop:.2f} points as trained, {mean_drop_refit:.2f} with --refit "
        "(target <= 0.5)."
    )
    table = "\n".join(lines) + "\n"
    report_json = {
        "command": command,
        "recipe": base.to_dict(),
        "rows": rows,
        "mean_drop": mean_drop,
        "mean_drop_refit": mean_drop_refit,
    }
    write_results(arguments.results, report_json, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
