"""How alike the classes look to an untrained network: the seeds of training from scratch.

A DNC head trained from scratch seeds its sub-centroids from the first batch's features
(k-means++ per class) while the network is still random. This measures, for the
from-scratch recipes (ResNet-20 on digits and on Fashion-MNIST, untrained, seeds 0-2),
the mean cosine between the normalised class means of the head's embedding (training
mode, as seeding sees it; and evaluation mode) over 1,000 training images: near 1, every
class points the same way and the seeds start the classes almost on top of one another.

    python -m benchmarks.init_similarity

Writes ``benchmarks/results/full/init_similarity.{json,md}`` (``--results``).
"""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmarks.common import command_line, training_parser, write_results
from deepnc.engine.build import build_data, build_model
from deepnc.engine.config import load_config
from deepnc.nn.hooks import captured_inputs, single_dnc_head

SETTINGS = {"digits": "digits_resnet20", "fashion-mnist": "fashion-mnist_resnet20"}
IMAGES = 1000


def class_mean_cosine(embedded: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """Mean cosine between the (normalised) class means of ``embedded`` ``(N, E)``, over
    the pairs of distinct classes."""
    means = torch.stack([embedded[labels == c].mean(0) for c in range(classes)])
    means = F.normalize(means, dim=1)
    cosines = means @ means.T
    off = ~torch.eye(classes, dtype=torch.bool)
    return float(cosines[off].mean())


@torch.no_grad()
def measure(recipe: str, seed: int) -> dict[str, float]:
    config = load_config(
        recipe, ["--train_subset", str(IMAGES), "--progress", "false", "--augment", "false"]
    )
    config.seed = seed
    torch.manual_seed(seed)
    data = build_data(config)
    model = build_model(config, data.describe())
    head = single_dnc_head(model)
    images, labels = next(iter(DataLoader(data.train, IMAGES)))
    found = {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with captured_inputs(head) as captured:
            model(images)
        embedded = head.embed(captured.pop())
        found[f"{mode}_mode"] = class_mean_cosine(embedded, labels, data.num_classes)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], None, "init_similarity")
    arguments, _ = parser.parse_known_args(argv)
    rows = []
    for setting, recipe in SETTINGS.items():
        found = [measure(recipe, seed) for seed in arguments.seeds]
        row = {"setting": setting, "seeds": arguments.seeds}
        for key in ("train_mode", "eval_mode"):
            row[key] = [item[key] for item in found]
            row[f"{key}_mean"] = statistics.mean(row[key])
        rows.append(row)
    command = command_line("init_similarity", argv)
    lines = [f"`{command}`", "", "| setting | train mode | eval mode |", "| --- | --- | --- |"]
    lines += [
        f"| {row['setting']} | {row['train_mode_mean']:.3f} | {row['eval_mode_mean']:.3f} |"
        for row in rows
    ]
    table = "\n".join(lines) + "\n"
    write_results(arguments.results, {"command": command, "images": IMAGES, "rows": rows}, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
