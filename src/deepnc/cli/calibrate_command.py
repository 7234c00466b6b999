"""``deepnc calibrate CHECKPOINT [--split test] [--data-root DIR]``: store the scores of
known images in a checkpoint, for ``predict --reject-at`` without the data."""

from __future__ import annotations

import argparse

from deepnc.cli.types import at_least


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="store the scores of known images in a checkpoint, for predict --reject-at",
        description=(
            "Score the images of a split the model was not trained on (the test split, or "
            "the validation split of a run trained with validation_size) and store the "
            "scores in the checkpoint, so that predict --reject-at FRACTION works from the "
            "checkpoint alone, anywhere. add-classes, remove-classes and snap drop a stored "
            "calibration (they change the scores): calibrate their output again."
        ),
    )
    parser.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--data-root", help="where the dataset is now (default: as trained)")
    parser.add_argument("--out", help="checkpoint to write (default: replace the one read)")
    parser.add_argument("--batch-size", type=at_least(1), default=256)
    parser.add_argument("--device", default="auto")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    import torch

    from deepnc.commands.calibrate import calibrate_checkpoint
    from deepnc.engine.runtime import select_device
    from deepnc.openset import calibrate_threshold

    record, path = calibrate_checkpoint(
        arguments.checkpoint,
        split=arguments.split,
        data_root=arguments.data_root,
        out=arguments.out,
        device=select_device(arguments.device),
        batch_size=arguments.batch_size,
    )
    scores = record["scores"]
    kept = calibrate_threshold(torch.tensor(scores), tpr=0.95)
    print(
        f"calibrated on {record['images']} {record['split']} images (scores "
        f"{scores[-1]:.4f} to {scores[0]:.4f}; --reject-at 0.95 rejects below {kept:.4f}): "
        f"wrote {path}"
    )
    return 0
