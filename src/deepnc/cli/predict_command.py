"""``deepnc predict CHECKPOINT IMAGES...``: a label per image file, as CSV or JSON lines."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from contextlib import nullcontext
from dataclasses import asdict
from typing import TYPE_CHECKING

from deepnc.cli.types import at_least, share

if TYPE_CHECKING:
    from deepnc.commands.predict import Prediction

DEFAULT_WORKERS = 0  # on a CPU the model takes every core; 2-4 help beside a GPU
FIELDS = (
    "path",
    "class_name",
    "label",
    "score",
    "accepted",
    "exemplar",
    "exemplar_file",
    "mask",
    "top",
)


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="label image files (or folders) with a checkpoint: CSV or JSON lines",
        description=(
            "Label image files and folders with a checkpoint (file or run folder): the "
            "class, its score (cosine to the nearest sub-centroid for DNC, probability for "
            "softmax), the top classes, acceptance under --reject-at, and for a snapped "
            "checkpoint the training image of the deciding sub-centroid. A segmentation "
            "checkpoint writes a class-index PNG per image (--masks). Unreadable files are "
            "named on stderr and skipped."
        ),
    )
    parser.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    parser.add_argument("images", nargs="+", help="image files and folders (searched)")
    parser.add_argument("--top-k", type=at_least(1), default=3, help="classes listed per image")
    parser.add_argument(
        "--reject-at",
        type=share,
        metavar="FRACTION",
        help="accept this fraction of known images (e.g. 0.95) and mark the rest rejected; "
        "the known images are those stored by deepnc calibrate, else the checkpoint's test "
        "split, scored now",
    )
    parser.add_argument(
        "--data-root",
        help="where the checkpoint's dataset is now, for --reject-at without a stored "
        "calibration (default: where it was trained)",
    )
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--out", help="write here instead of stdout")
    parser.add_argument("--masks", help="folder of the masks (segmentation; default masks/)")
    parser.add_argument("--batch-size", type=at_least(1), default=256)
    parser.add_argument(
        "--workers",
        type=at_least(0),
        default=DEFAULT_WORKERS,
        help="processes decoding image files while the model runs (default 0: in this "
        "process; on a CPU the model needs every core, beside a GPU 2-4 help)",
    )
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from tqdm.auto import tqdm

    from deepnc.commands.predict import Predictor
    from deepnc.data.image_files import find_images
    from deepnc.engine.runtime import select_device

    if arguments.data_root is not None and arguments.reject_at is None:
        raise ValueError("--data-root serves --reject-at only: predict reads no other data")
    predictor = Predictor(
        arguments.checkpoint,
        top_k=arguments.top_k,
        reject_at=arguments.reject_at,
        data_root=arguments.data_root,
        masks_dir=arguments.masks or "masks",
        device=select_device(arguments.device),
        batch_size=arguments.batch_size,
        num_workers=arguments.workers,
    )
    if predictor.threshold is not None:
        print(
            f"rejecting scores below {predictor.threshold:.4f} (calibrated on "
            f"{predictor.calibrated_on})",
            file=sys.stderr,
        )
    files = find_images(arguments.images)  # listed once: for the bar and the predictions
    total = len(files)
    opened = open(arguments.out, "w", newline="") if arguments.out else nullcontext(sys.stdout)
    skipped = 0
    bar = tqdm(total=total, unit="image", file=sys.stderr, disable=None)  # none in logs
    with opened as stream, bar:
        write = _writer(stream, arguments.format)
        for item in predictor.predict(files):
            bar.update(1)
            if isinstance(item, str):
                skipped += 1
                tqdm.write(f"skipped {item}", file=sys.stderr)
            else:
                write(item)
    print(f"{total - skipped} images labelled, {skipped} skipped", file=sys.stderr)
    if total == skipped:
        found = f"all {total} skipped (see above)" if total else "no image file found there"
        raise ValueError(f"no image could be labelled in {' '.join(arguments.images)}: {found}")
    return 0


def _writer(stream, kind: str):
    if kind == "jsonl":
        return lambda item: stream.write(json.dumps(asdict(item)) + "\n")
    table = csv.DictWriter(stream, FIELDS)
    table.writeheader()

    def write(item: Prediction) -> None:
        row = asdict(item)
        row["top"] = ";".join(f"{name}:{score:.4f}" for name, score in item.top)
        table.writerow(row)

    return write
