"""Learning new classes without retraining: DNC's add_classes against fine-tuning softmax.

ResNet-20 trained on Fashion-MNIST classes 0-7, DNC and softmax heads, identical recipe,
3 seeds. Then the two held-out classes (8 Bag, 9 Ankle boot) are added from n = 5, 10
and 50 training examples each (the same examples for every method, drawn with the
seed), and the 10-class model is evaluated on the whole test split:

- DNC ``add_classes``: the head's K sub-centroids per new class by balanced clustering of
  the examples' features, or a single one (``num_subcentroids=1``); nothing else changes;
- softmax, fine-tuned: the classifier grows two rows, and the classifier alone is
  trained on the new examples (100 full-batch SGD steps, lr 0.1; the backbone frozen);
- softmax, fine-tuned with replay: the same, with n examples of each old class too.

Accuracy on old classes (test images of 0-7), on new classes (8-9) and on all.

    python -m benchmarks.new_classes                                   # the committed figures
    python -m benchmarks.new_classes --seeds 0 --epochs 1 --train_subset 2000   # a quick look

Writes ``benchmarks/results/full/new_classes.{json,md}`` (``--results``).
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from benchmarks.common import command_line, fashion_classes_config, training_parser, write_results
from deepnc.data import load_dataset
from deepnc.engine.compare import compare, run_folder
from deepnc.engine.restore import load_trained_model
from deepnc.incremental import add_classes, head_inputs

OLD, NEW = list(range(8)), [8, 9]
SHOTS = (5, 10, 50)
FINE_TUNE_STEPS, FINE_TUNE_LR = 100, 0.1


def _examples(train, classes: list[int], shots: int, seed: int) -> list[int]:
    """``shots`` seeded indices of each class in ``classes`` (labels as in ``train``)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in classes:
        members = torch.nonzero(train.labels == label).flatten()
        chosen += members[torch.randperm(len(members), generator=generator)[:shots]].tolist()
    return chosen


@torch.no_grad()
def _features(model, dataset, indices=None) -> tuple[torch.Tensor, torch.Tensor]:
    subset = Subset(dataset, indices) if indices is not None else dataset
    return head_inputs(model, DataLoader(subset, 500), layer=model.fc)


def _accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> dict:
    old = truth < len(OLD)
    return {
        "old": float((predicted[old] == truth[old]).float().mean()),
        "new": float((predicted[~old] == truth[~old]).float().mean()),
        "all": float((predicted == truth).float().mean()),
    }


def dnc_add(model, full, test_features, test_labels, shots, seed, k=None) -> dict:
    head = copy.deepcopy(model.fc)
    indices = _examples(full.train, NEW, shots, seed)
    features, labels = _features(model, full.train, indices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 examples, K = 4: expected, not news
        add_classes(head, features, labels - len(OLD), num_subcentroids=k)
    return _accuracy(head(test_features).argmax(1), test_labels)


def softmax_fine_tune(model, full, test_features, test_labels, shots, seed, replay) -> dict:
    """Grow the linear classifier by two rows and train it alone on the examples."""
    old_fc: nn.Linear = model.fc
    torch.manual_seed(seed)  # the new rows' initialisation
    fc = nn.Linear(old_fc.in_features, len(OLD) + len(NEW))
    with torch.no_grad():
        fc.weight[: len(OLD)] = old_fc.weight
        fc.bias[: len(OLD)] = old_fc.bias
    indices = _examples(full.train, NEW + (OLD if replay else []), shots, seed)
    features, labels = _features(model, full.train, indices)
    optimiser = torch.optim.SGD(fc.parameters(), lr=FINE_TUNE_LR, momentum=0.9)
    for _ in range(FINE_TUNE_STEPS):
        loss = F.cross_entropy(fc(features), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return _accuracy(fc(test_features).argmax(1), test_labels)


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "bench_new_classes", "new_classes")
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = fashion_classes_config(OLD, 16000, overrides)
    full = load_dataset("fashion-mnist", augment=False)  # labels 0-9: 8 and 9 are the new ones
    start = time.time()
    results: dict[str, dict[int, list[dict]]] = {}
    compare(base, arguments.seeds, arguments.out)  # trains, or reuses finished runs
    for seed in arguments.seeds:
        models = {
            head: load_trained_model(run_folder(arguments.out, head, seed))[0]
            for head in ("dnc", "linear")
        }
        for head, model in models.items():
            test_features, test_labels = _features(model, full.test)
            known = test_labels < len(OLD)
            with torch.no_grad():
                before = model.fc(test_features[known]).argmax(1) == test_labels[known]
            name = {"dnc": "DNC", "linear": "softmax"}[head] + ", before adding (8 outputs)"
            row = {"old": float(before.float().mean()), "new": float("nan"), "all": float("nan")}
            results.setdefault(name, {}).setdefault(0, []).append(row)
            for shots in SHOTS:
                if head == "dnc":
                    rows = {
                        f"DNC add_classes (the head's K={model.fc.num_subcentroids})": dnc_add(
                            model, full, test_features, test_labels, shots, seed
                        ),
                        "DNC add_classes (k=1 for the new classes)": dnc_add(
                            model, full, test_features, test_labels, shots, seed, k=1
                        ),
                    }
                else:
                    rows = {
                        "softmax fine-tuned": softmax_fine_tune(
                            model, full, test_features, test_labels, shots, seed, replay=False
                        ),
                        "softmax fine-tuned + replay": softmax_fine_tune(
                            model, full, test_features, test_labels, shots, seed, replay=True
                        ),
                    }
                for method, row in rows.items():
                    results.setdefault(method, {}).setdefault(shots, []).append(row)
    table = [
        "| method | examples per new class | old classes (%) | new classes (%) | all (%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, by_shots in results.items():
        for shots, runs in by_shots.items():
            cells = []
            for key in ("old", "new", "all"):
                values = [100 * run[key] for run in runs]
                if any(math.isnan(v) for v in values):
                    cells.append("-")
                    continue
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f}")
            table.append(f"| {method} | {shots or '-'} | " + " | ".join(cells) + " |")
    command = command_line("new_classes.py", argv)
    text = (
        f"`{command}`\n\nResNet-20 trained on Fashion-MNIST classes 0-7 ({base.train_subset} "
        f"images, {base.epochs} epochs), seeds {arguments.seeds}; classes 8 and 9 added "
        "afterwards from n training examples each; accuracy over the 10,000 test images "
        "with 10 outputs, mean ± std over seeds.\n\n" + "\n".join(table) + "\n"
    )
    report = {
        "command": command,
        "config": base.to_dict(),
        "results": {m: {str(k): v for k, v in r.items()} for m, r in results.items()},
        "fine_tune": {"steps": FINE_TUNE_STEPS, "lr": FINE_TUNE_LR},
        "wall_seconds": time.time() - start,
    }
    write_results(arguments.results, report, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
