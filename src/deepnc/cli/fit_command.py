"""``deepnc fit --config FILE_OR_NAME [--key value ...]``: a DNC classifier from a frozen
pretrained backbone, no training."""

from __future__ import annotations

import argparse

from deepnc.cli.types import at_least, positive_float


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
    parser.add_argument(
        "--iterations", type=at_least(0), default=10, help="balanced k-means rounds"
    )
    metric = parser.add_argument_group(
        "learnt metric",
        "a linear projection D -> P (with the head's LayerNorm) trained on the cached "
        "embeddings with the DNC loss before the head is refitted: seconds on a CPU, "
        "usually worth a few points over the frozen features",
    )
    metric.add_argument(
        "--projection",
        type=at_least(1),
        metavar="P",
        help="width of the learnt projection (for example 256); same as "
        "--head_options.projection P; default: none",
    )
    metric.add_argument(
        "--projection-epochs", "--projection_epochs", type=at_least(0), default=20, metavar="N"
    )
    metric.add_argument("--projection-lr", "--projection_lr", type=positive_float, default=1e-3)


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.commands.fit import ProjectionOptions, fit_run
    from deepnc.engine.config import load_config
    from deepnc.engine.evaluation import primary_metric

    if "--resume" in rest:
        raise ValueError("fit takes no --resume: it makes no training step, so run it again")
    if arguments.projection is not None:
        rest = [*rest, "--head_options.projection", str(arguments.projection)]
    config = load_config(arguments.config, rest)
    options = ProjectionOptions(epochs=arguments.projection_epochs, lr=arguments.projection_lr)
    summary = fit_run(config, iterations=arguments.iterations, projection=options)
    metric = primary_metric(summary["task"])
    print(
        f"fitted {summary['train_size']} images in {summary['fit_seconds']:.1f} s; "
        f"{config.evaluate_on} {metric} {100 * summary[f'{config.evaluate_on}_{metric}']:.2f}% "
        f"-> {config.out_dir}"
    )
    return 0
