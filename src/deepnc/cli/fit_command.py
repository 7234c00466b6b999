"""``deepnc fit --config FILE_OR_NAME [--key value ...]``: a DNC classifier from a frozen
pretrained backbone, no training."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "fit",
        help="fit a DNC head on a frozen pretrained backbone: a classifier with no training",
        description=(
            "Embed the training images once with a frozen backbone (--pretrained true for "
            "its ImageNet weights) and fit the DNC head by balanced k-means in each class: no "
            "gradient step. For your own images: --dataset imagefolder --data_root FOLDER "
            "(one subfolder per class). Writes an ordinary run folder (eval, snap, explain, "
            "predict, add-classes and export accept it) and the training embeddings."
        ),
    )
    parser.add_argument(
        "--config", help="YAML file of config keys, or a shipped recipe's name (deepnc configs)"
    )
    parser.add_argument("--iterations", type=int, default=10, help="balanced k-means rounds")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.commands.fit import fit_run
    from deepnc.engine.config import load_config
    from deepnc.engine.evaluation import primary_metric

    if "--resume" in rest:
        raise ValueError("fit takes no --resume: it makes no training step, so run it again")
    config = load_config(arguments.config, rest)
    summary = fit_run(config, iterations=arguments.iterations)
    metric = primary_metric(summary["task"])
    print(
        f"fitted {summary['train_size']} images in {summary['fit_seconds']:.1f} s; test "
        f"{metric} {100 * summary[f'test_{metric}']:.2f}% -> {config.out_dir}"
    )
    return 0
