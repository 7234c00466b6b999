"""``deepnc add-classes CHECKPOINT FOLDER --out NEW`` and ``deepnc remove-classes
CHECKPOINT NAME... --out NEW``: edit a DNC classifier's classes, no training."""

from __future__ import annotations

import argparse
import sys

from deepnc.cli.types import at_least


def add_parser(commands) -> None:
    add = commands.add_parser(
        "add-classes",
        help="add classes to a DNC classifier from folders of example images, no training",
        description=(
            "Add one class per subfolder of FOLDER (the subfolder's name is the class name, "
            "its images the examples) to a DNC classification checkpoint, without training: "
            "the old classes and the network do not change. Writes a new checkpoint."
        ),
    )
    add.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    add.add_argument("folder", help="one subfolder of images per new class")
    add.add_argument("--out", required=True, help="the new checkpoint (.safetensors)")
    add.add_argument(
        "--subcentroids",
        type=at_least(0),
        default=1,
        help="distinct sub-centroids per new class (default 1, best for a few examples; "
        "0: the head's K)",
    )
    add.add_argument("--device", default="auto")
    remove = commands.add_parser(
        "remove-classes",
        help="remove classes from a DNC classifier, by name",
        description="Remove the named classes from a DNC checkpoint; writes a new checkpoint.",
    )
    remove.add_argument("checkpoint", help="checkpoint.safetensors or the run folder holding it")
    remove.add_argument("names", nargs="+", help="the classes to remove")
    remove.add_argument("--out", required=True, help="the new checkpoint (.safetensors)")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.commands.class_edits import add_classes_from_folders, remove_named_classes
    from deepnc.engine.runtime import select_device

    if arguments.command == "remove-classes":
        edited = remove_named_classes(arguments.checkpoint, arguments.names, arguments.out)
    else:
        edited, skipped = add_classes_from_folders(
            arguments.checkpoint,
            arguments.folder,
            arguments.out,
            num_subcentroids=arguments.subcentroids or None,
            device=select_device(arguments.device),
        )
        for message in skipped:
            print(f"skipped {message}", file=sys.stderr)
    print(f"wrote {arguments.out}: {edited.num_classes} classes {edited.class_names}")
    return 0
