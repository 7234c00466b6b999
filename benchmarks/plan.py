"""What each budget runs: the scripts of the report, in order, with their arguments.

- ``smoke``: every script on a handful of images for one epoch and one seed, so that
  CI can run the whole pipeline (scripts, JSON, renderer) in a few minutes. Its
  figures mean nothing.
- ``small``: every table on 2 CPU cores in well under an hour: subsets of 2,000
  Fashion-MNIST training images (the full test split scored on a fixed 2,000-image
  subset), 3 epochs, 3 seeds; fashion-scenes of 600 canvases. The tuning study, which
  trains about 65 runs of these recipes, adds about an hour the first time.
- ``full``: each script's defaults, the recipes meant for a GPU (all 60,000
  Fashion-MNIST images, EfficientNet-Lite0 at 64x64 with AMP, 2,000 canvases...). On 2
  CPU cores it takes many hours; its results go to ``benchmarks/results/full/``. On a
  machine with CUDA the two overhead scripts also run on the GPU.

The smaller budgets' arguments are data, in ``budgets.yaml``. Each step names a script
of ``benchmarks/`` and its arguments; the driver adds where
the results and the runs go (except for ``full``, whose steps are the bare defaults).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

BUDGETS = ("smoke", "small", "full")
BUDGET_DESCRIPTIONS = {
    "smoke": "The `smoke` budget runs every script on a handful of images for one epoch and "
    "one seed, to check that the pipeline runs; its figures mean nothing.",
    "small": "The `small` budget trains on subsets (2,000 Fashion-MNIST training images "
    "scored on a fixed 2,000 test images, 3 epochs; 600 fashion-scenes canvases; see "
    "`benchmarks/plan.py`), so its accuracies are far below those of the full recipes: what "
    "it compares is DNC and softmax under one identical recipe, on 2 CPU cores.",
    "full": "The `full` budget runs each script's defaults, the recipes meant for a GPU.",
}

CLASSIFICATION_CONFIGS = {
    "fashion-mnist_resnet20": "configs/fashion-mnist_resnet20.yaml",
    "digits_resnet20": "configs/digits_resnet20.yaml",
    "fashion-mnist_efficientnet_lite0": "configs/fashion-mnist_efficientnet_lite0.yaml",
    "digits_efficientnet_lite0": "configs/digits_efficientnet_lite0.yaml",
}


@dataclass(frozen=True)
class Step:
    """One script call: ``python benchmarks/<script>.py <args>``.

    Attributes:
        name: the results stem (``<results dir>/<name>.json``).
        script: a module of ``benchmarks/`` with ``main(argv) -> int``.
        args: its arguments, without ``--results`` / ``--out`` (the driver adds them).
        trains: whether it trains runs (and so takes ``--out RUNS``).
        needs_cuda: run only where CUDA is available.
    """

    name: str
    script: str
    args: tuple[str, ...] = ()
    trains: bool = True
    needs_cuda: bool = False


def _classification(name: str) -> Step:
    return Step(
        f"classification_{name}", "classification", ("--config", CLASSIFICATION_CONFIGS[name])
    )


# Every step, with the arguments of the full budget (the scripts' bare defaults)
STEPS = (
    *(_classification(name) for name in CLASSIFICATION_CONFIGS),
    Step("fashion_mnist_ablation", "fashion_mnist_ablation"),
    Step("fashion_mnist_snap", "fashion_mnist_snap"),
    Step("faithfulness", "faithfulness"),
    Step("segmentation_compare", "segmentation_compare"),
    Step("segmentation_tuning", "segmentation_tuning"),
    Step("head_overhead", "head_overhead", trains=False),
    Step("segmentation_overhead", "segmentation_overhead", trains=False),
    Step("head_step", "head_step", trains=False),
    Step("head_overhead_cuda", "head_overhead", ("--device", "cuda"), False, True),
    Step("segmentation_overhead_cuda", "segmentation_overhead", ("--device", "cuda"), False, True),
    Step("openset", "openset"),
    Step("new_classes", "new_classes"),
    Step("sklearn_compare", "sklearn_compare", trains=False),
    Step("fit_tuning", "fit_tuning"),
    Step("fit_compare", "fit_compare"),
    Step("predict_throughput", "predict_throughput"),
    Step("segmentation_data", "segmentation_data"),
    Step("checkpoint_cost", "checkpoint_cost", trains=False),
    Step("many_classes", "many_classes", trains=False),
    Step("memory_dtype", "memory_dtype"),
    Step("tuning_study", "tuning_study"),
)

BUDGET_FILE = Path(__file__).with_name("budgets.yaml")  # the smaller budgets, as data


def budget_arguments(budget: str) -> dict[str, list[str]]:
    """Each step's extra arguments under a smaller ``budget``, from ``budgets.yaml``."""
    data = yaml.safe_load(BUDGET_FILE.read_text())
    fragments = data["fragments"]

    def expand(item: str) -> list[str]:
        name = item[1:-1] if item.startswith("{") and item.endswith("}") else None
        if name in fragments:
            return list(fragments[name])
        for key, words in fragments.items():  # a fragment inside a longer argument
            item = item.replace("{" + key + "}", " ".join(words))
        return [item]

    return {
        step: [word for item in items for word in expand(str(item))]
        for step, items in data[budget].items()
    }


def plan(budget: str) -> list[Step]:
    """The steps of ``budget`` (one of :data:`BUDGETS`), in the order they run."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {BUDGETS}")
    if budget == "full":
        return list(STEPS)
    extra = budget_arguments(budget)
    return [
        dataclasses.replace(step, args=(*step.args, *extra[step.name]))
        for step in STEPS
        if step.name in extra
    ]
