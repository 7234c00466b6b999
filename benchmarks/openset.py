"""Open-set recognition: DNC distance scores against softmax confidence, identical recipe.

ResNet-20 trained on Fashion-MNIST classes 0-5 (T-shirt/top, Trouser, Pullover, Dress,
Coat, Sandal), DNC and softmax heads, 3 seeds (``configs/fashion-mnist_resnet20.yaml``
with ``dataset_options.classes`` and a class-balanced subset). Known inputs: the test
images of classes 0-5. Unknown inputs: the test images of classes 6-9 (Shirt, Sneaker,
Bag, Ankle boot: near out-of-distribution, same kind of images) and scikit-learn's
handwritten digits resized to 28x28 (far out-of-distribution). For each score: AUROC
(known vs unknown) and the FPR at 95% TPR (the share of unknown inputs accepted by the
threshold that keeps 95% of the known ones).

    python -m benchmarks.openset                                   # the committed figures
    python -m benchmarks.openset --seeds 0 --epochs 1 --train_subset 2000   # a quick look

Writes ``benchmarks/results/full/openset.{json,md}`` (``--results``).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import command_line, fashion_classes_config, training_parser, write_results
from deepnc.data import load_dataset
from deepnc.data.normalise import normalise
from deepnc.engine.compare import compare, run_folder
from deepnc.engine.restore import load_trained_model
from deepnc.openset import confidence_scores, ood_metrics

KNOWN, UNKNOWN = [0, 1, 2, 3, 4, 5], [6, 7, 8, 9]
SCORES = {"dnc": ("similarity", "margin"), "linear": ("max_softmax", "max_logit")}


@torch.no_grad()
def logits_of(model, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch]) for i in range(0, len(images), batch)])


def _stack(dataset) -> torch.Tensor:
    return torch.cat([images for images, _ in DataLoader(dataset, 1000)])


def inputs(known_data) -> dict[str, torch.Tensor]:
    """Known test images, near-OOD (classes 6-9) and far-OOD (digits), normalised alike."""
    near = load_dataset("fashion-mnist", augment=False, classes=UNKNOWN)
    digits = load_dataset("digits", augment=False, image_size=28)
    # digits come as uint8; normalise them with Fashion-MNIST's statistics, as the model expects
    far = normalise(digits.test.images, known_data.mean, known_data.std)
    return {"known": _stack(known_data.test), "near": _stack(near.test), "far": far}


def evaluate_run(run_dir: Path) -> dict:
    model, checkpoint = load_trained_model(run_dir)
    known_data = load_dataset(
        "fashion-mnist", augment=False, classes=checkpoint.config["dataset_options"]["classes"]
    )
    batches = inputs(known_data)
    logits = {name: logits_of(model, images) for name, images in batches.items()}
    tau = getattr(model.fc, "tau", None)
    labels = known_data.test.labels
    row = {"top1_known": float((logits["known"].argmax(1) == labels).float().mean())}
    for score in SCORES[checkpoint.config["head"]]:
        values = {name: confidence_scores(v, score, tau=tau) for name, v in logits.items()}
        for unknown in ("near", "far"):
            figures = ood_metrics(values["known"], values[unknown], tpr=0.95)
            row[f"{score}/{unknown}/auroc"] = figures["auroc"]
            row[f"{score}/{unknown}/fpr95"] = figures["fpr_at_tpr"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "bench_openset", "openset")
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = fashion_classes_config(KNOWN, 12000, overrides)
    start = time.time()
    rows = {"dnc": [], "linear": []}
    for run in compare(base, arguments.seeds, arguments.out):  # trains, or reuses finished runs
        run_dir = run_folder(arguments.out, run["head"], run["seed"])
        rows[run["head"]].append(evaluate_run(run_dir))
    table = [
        "| model | score | known top-1 (%) | AUROC near | FPR95 near | AUROC far | FPR95 far |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary = {}
    for head, runs in rows.items():
        for score in SCORES[head]:
            cells = {}
            for key in ("near/auroc", "near/fpr95", "far/auroc", "far/fpr95"):
                values = [100 * run[f"{score}/{key}"] for run in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells[key] = (statistics.mean(values), spread)
            top1 = [100 * run["top1_known"] for run in runs]
            summary[f"{head}/{score}"] = {k: list(v) for k, v in cells.items()}
            name = {"dnc": "DNC", "linear": "softmax"}[head]
            table.append(
                f"| {name} | {score} | {statistics.mean(top1):.2f} | "
                + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in cells.values())
                + " |"
            )
    command = command_line("openset.py", argv)
    text = (
        f"`{command}`\n\nResNet-20 trained on Fashion-MNIST classes 0-5 ({base.train_subset} "
        f"images, {base.epochs} epochs), seeds {arguments.seeds}; known: the 6,000 test "
        "images of classes 0-5; near: the 4,000 of classes 6-9; far: scikit-learn's 360 "
        "test digits at 28x28. AUROC and FPR at 95% TPR in %, mean ± std over seeds.\n\n"
        + "\n".join(table)
        + "\n"
    )
    report = {
        "command": command,
        "config": base.to_dict(),
        "runs": rows,
        "summary": summary,
        "wall_seconds": time.time() - start,
    }
    write_results(arguments.results, report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
