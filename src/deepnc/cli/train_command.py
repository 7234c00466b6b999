"""``deepnc train --config FILE [--resume] [--key value ...]``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap

from deepnc.engine.config import TrainConfig, load_config
from deepnc.engine.evaluation import TEST_METRICS
from deepnc.engine.run_checkpoints import EXIT_PREEMPTED, Preempted
from deepnc.engine.trainer import train


def config_keys_help() -> str:
    """Every config key with its default, for ``--help``."""
    defaults = TrainConfig().to_dict()
    keys = ", ".join(
        f"{field.name}={defaults[field.name]!r}" for field in dataclasses.fields(TrainConfig)
    )
    return "config keys and their defaults:\n" + textwrap.fill(
        keys, 88, initial_indent="  ", subsequent_indent="  "
    )


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "train",
        epilog=config_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train a classifier from a YAML config",
        description=(
            "Train from a YAML config (a file, or a shipped recipe: deepnc configs). Any "
            "config key can be overridden as "
            "--key value (for example --epochs 5 --head linear --head_options.tau 0.05)."
        ),
    )
    parser.add_argument(
        "--config",
        help="YAML file of config keys, or the name of a shipped recipe (deepnc configs); "
        "default: built-in defaults",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        choices=("auto",),
        help="continue the run in out_dir from its newest complete checkpoint (a fresh "
        "start when there is none), so that a requeued job can repeat its command line",
    )


def run(arguments: argparse.Namespace, overrides: list[str]) -> int:
    config = load_config(arguments.config, overrides)
    try:
        summary = train(config, resume=arguments.resume is not None)
    except Preempted as stopped:
        print(
            f"deepnc train: preempted: {stopped}; run the same command with --resume to "
            f"continue (exit status {EXIT_PREEMPTED})",
            file=sys.stderr,
        )
        return EXIT_PREEMPTED
    split = summary["evaluated_on"]
    metrics = tuple(f"{split}_{name}" for name in TEST_METRICS[summary["task"]])
    keys = ("task", "model", "head", "dataset", "epochs", *metrics, "seconds_per_epoch")
    print(json.dumps({key: summary[key] for key in keys}, indent=2))
    return 0
