"""``deepnc explain CHECKPOINT --images ... --out report/``: a static HTML report."""

from __future__ import annotations

import argparse

from deepnc.cli.types import at_least


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "explain",
        help="show, for each prediction, the training images it is closest to (HTML report)",
        description=(
            "Explain predictions of a DNC checkpoint (snapped or not): for each input, the "
            "predicted class, the nearest sub-centroid of the top classes with the training "
            "image behind it, and the nearest training images. Writes OUT/index.html, "
            "readable offline, and PNG figures."
        ),
    )
    parser.add_argument("checkpoint", help="a checkpoint (snapped or not) or its run folder")
    parser.add_argument("--images", nargs="*", default=[], help="image files or folders")
    parser.add_argument(
        "--test-samples", type=at_least(0), default=0, help="also explain N test images"
    )
    parser.add_argument(
        "--dataset", help="training set to draw exemplars from (default: as trained)"
    )
    parser.add_argument(
        "--data-root", help="where that training set is now (default: where it was trained)"
    )
    parser.add_argument("--out", default="report", help="report folder (default: report/)")
    parser.add_argument("--top-classes", type=at_least(1), default=3)
    parser.add_argument("--neighbours", type=at_least(0), default=5)
    parser.add_argument(
        "--pixel",
        nargs=2,
        type=at_least(0),
        metavar=("ROW", "COLUMN"),
        help="segmentation: for this pixel of each input, the training images nearest the "
        "sub-centroid that labelled it (pixel_<i>.png)",
    )
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.commands.explain import explain_checkpoint
    from deepnc.engine.runtime import select_device

    if not arguments.images and arguments.test_samples <= 0:
        raise ValueError("give --images FILE_OR_FOLDER ... and/or --test-samples N")
    summary = explain_checkpoint(
        arguments.checkpoint,
        arguments.out,
        images=arguments.images,
        test_samples=arguments.test_samples,
        dataset=arguments.dataset,
        data_root=arguments.data_root,
        top_classes=arguments.top_classes,
        neighbours=arguments.neighbours,
        pixel=tuple(arguments.pixel) if arguments.pixel else None,
        device=select_device(arguments.device),
        progress=True,
    )
    for message in summary["skipped"]:
        print(f"skipped {message}")
    print(f"explained {summary['explained']} images: {summary['report']}")
    return 0
