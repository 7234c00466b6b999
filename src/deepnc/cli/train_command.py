"""``deepnc train --config FILE [--resume] [--key value ...]``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap


def config_keys_help() -> str:
    """Every config key with its default, for ``--help``."""
    from deepnc.engine.config import TrainConfig

    defaults = TrainConfig().to_dict()
    keys = ", ".join(
        f"{field.name}={defaults[field.name]!r}" for field in dataclasses.fields(TrainConfig)
    )
    return "config keys and their defaults:\n" + textwrap.fill(
        keys, 88, initial_indent="  ", subsequent_indent="  "
    )


class _KeysHelp(argparse.RawDescriptionHelpFormatter):
    """Lists the config keys when ``deepnc train --help`` prints, not when the parser is
    built: the config imports the engine, which ``deepnc --help`` should not wait for."""

    def add_text(self, text):
        super().add_text(config_keys_help() if text is _CONFIG_KEYS else text)


_CONFIG_KEYS = "<config keys>"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "train",
        epilog=_CONFIG_KEYS,
        formatter_class=_KeysHelp,
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
    from deepnc.engine.config import load_config
    from deepnc.engine.evaluation import TEST_METRICS
    from deepnc.engine.run_checkpoints import EXIT_PREEMPTED, Preempted, RunCheckpoints
    from deepnc.engine.trainer import train

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
    except KeyboardInterrupt:
        saved = RunCheckpoints(config.out_dir, config.keep_checkpoints).candidates()
        if saved:
            said = f"the newest checkpoint is {saved[0]}: run the same command with --resume"
        else:
            minutes = config.checkpoint_every_minutes
            within = f" or {minutes:g} minutes" if minutes else ""
            said = f"no checkpoint was saved yet (the first comes after an epoch{within})"
        print(f"\ndeepnc train: interrupted; {said}", file=sys.stderr)
        return 130
    split = summary["evaluated_on"]
    metrics = tuple(f"{split}_{name}" for name in TEST_METRICS[summary["task"]])
    keys = ("task", "model", "head", "dataset", "epochs", *metrics, "seconds_per_epoch")
    print(json.dumps({key: summary[key] for key in keys}, indent=2))
    return 0
