"""``deepnc snap CHECKPOINT``: sub-centroids become real training images; accuracy before/after."""

from __future__ import annotations

import argparse
import json

from deepnc.cli.types import at_least


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "snap",
        help="replace every sub-centroid by its most similar training image",
        description=(
            "Embed the training set, match every sub-centroid with the most similar training "
            "image of its class (a distinct one per sub-centroid), replace it, and write a "
            "snapped checkpoint holding the exemplar index. Prints test top-1 before and after."
        ),
    )
    parser.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    parser.add_argument("--out", help="snapped checkpoint (default: RUN/snapped.safetensors)")
    parser.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="let sub-centroids of a class share their nearest training image",
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="re-estimate the sub-centroids from the final training embeddings (balanced "
        "k-means) before snapping: a smaller drop after a short run",
    )
    parser.add_argument("--data-root", help="where the dataset is now (default: as trained)")
    parser.add_argument("--batch-size", type=at_least(1), default=512)
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.commands.snap import snap_checkpoint
    from deepnc.engine.runtime import select_device

    report, path = snap_checkpoint(
        arguments.checkpoint,
        arguments.out,
        distinct=not arguments.allow_duplicates,
        refit=arguments.refit,
        device=select_device(arguments.device),
        batch_size=arguments.batch_size,
        progress=True,
        data_root=arguments.data_root,
    )
    drop = 100 * (report.top1_before - report.top1_after)
    print(f"test top-1 before snapping {100 * report.top1_before:.2f}%")
    if report.top1_refit is not None:
        print(f"test top-1 after refitting {100 * report.top1_refit:.2f}%")
    print(f"test top-1 after snapping  {100 * report.top1_after:.2f}%  (drop {drop:.2f} points)")
    fit = report.snap.similarity.nanmean()
    print(f"mean cosine between a sub-centroid and its training image: {fit:.3f}")
    before, after = report.similarity_before.nanmean(), report.similarity_after.nanmean()
    print(
        f"mean pairwise cosine of a class's sub-centroids: before {before:.3f}, after {after:.3f}"
    )
    occupancy = report.occupancy_after.double()
    share = occupancy / occupancy.sum(1, keepdim=True).clamp_min(1)
    print(f"smallest share of its class served by a sub-centroid after snapping: {share.min():.3f}")
    print(f"embedded {report.train_size} training images in {report.embed_seconds:.1f} s")
    print(f"wrote {path}")
    summary = {
        "top1_before": report.top1_before,
        "top1_after": report.top1_after,
        "similarity_before": report.similarity_before.tolist(),
        "similarity_after": report.similarity_after.tolist(),
        "occupancy_before": report.occupancy_before.tolist(),
        "occupancy_after": report.occupancy_after.tolist(),
        "embed_seconds": report.embed_seconds,
        "total_seconds": report.total_seconds,
    }
    path.with_name(path.stem + "_report.json").write_text(json.dumps(summary, indent=2))
    return 0
