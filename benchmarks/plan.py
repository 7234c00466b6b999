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

Each step names a script of ``benchmarks/`` and its arguments; the driver adds where
the results and the runs go (except for ``full``, whose steps are the bare defaults).
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass

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
    Step("tuning_study", "tuning_study"),
)

# The smaller budgets' arguments, added after each step's own. Overrides of the configs
# (--train_subset ...) are the recipe; --seeds, --rounds, --quick belong to the scripts.
_TINY = "--train_subset 96 --test_subset 64 --epochs 1 --batch_size 32 --warmup_epochs 0"
_FASHION_SMALL = "--train_subset 2000 --test_subset 2000 --epochs 3 --eval_every 3"
_SCENES_SMALL = "--dataset_options.train_size 600 --dataset_options.test_size 300 --epochs 3"
_LITE0_CPU = "--image_size 32 --amp false"  # EfficientNet-Lite0 on CPU: 32x32, float32
_TINY_SCENES = (
    "--dataset_options.train_size 16 --dataset_options.val_size 8 "
    "--dataset_options.test_size 8 --epochs 1 --batch_size 8"
)
EXTRA_ARGUMENTS = {
    "smoke": {
        "classification_fashion-mnist_resnet20": f"{_TINY} --seeds 0",
        "classification_digits_resnet20": f"{_TINY} --seeds 0",
        "classification_fashion-mnist_efficientnet_lite0": f"{_LITE0_CPU} {_TINY} --seeds 0",
        "classification_digits_efficientnet_lite0": f"{_LITE0_CPU} {_TINY} --seeds 0",
        "fashion_mnist_ablation": f"{_TINY} --seeds 0",
        "fashion_mnist_snap": f"{_TINY} --seeds 0",
        "segmentation_compare": (
            f"{_TINY_SCENES} '--classifier-overrides={_TINY}' --classifier-epochs 1 --seeds 0"
        ),
        "segmentation_tuning": f"{_TINY_SCENES} --seeds 0",
        "head_overhead": "--quick",
        "segmentation_overhead": "--quick",
        "head_step": "--quick",
        "openset": f"{_TINY} --seeds 0",
        "new_classes": f"{_TINY} --seeds 0",
        "sklearn_compare": "--train-size 200 --test-size 100",
        "tuning_study": f"--quick {_TINY} --seeds 0",
    },
    "small": {  # seeds: each script's default, 0 1 2
        "classification_fashion-mnist_resnet20": _FASHION_SMALL,
        "classification_digits_resnet20": "--epochs 15 --eval_every 15",
        "classification_fashion-mnist_efficientnet_lite0": (
            f"{_LITE0_CPU} {_FASHION_SMALL} --warmup_epochs 0.3"
        ),
        "classification_digits_efficientnet_lite0": (
            f"{_LITE0_CPU} --epochs 5 --eval_every 5 --warmup_epochs 0.5"
        ),
        "fashion_mnist_ablation": _FASHION_SMALL,
        "fashion_mnist_snap": _FASHION_SMALL,
        "segmentation_compare": f"{_SCENES_SMALL} '--classifier-overrides={_FASHION_SMALL}' "
        "--classifier-epochs 1 2 3",
        "segmentation_tuning": _SCENES_SMALL,
        "head_overhead": "",  # the scripts' own rounds: a minute each
        "segmentation_overhead": "",
        "head_step": "",
        "openset": _FASHION_SMALL,
        "new_classes": _FASHION_SMALL,
        "sklearn_compare": "--train-size 2000 --test-size 1000",
        "tuning_study": "",  # its settings are the small budget's own (about 70 minutes)
    },
}


def plan(budget: str) -> list[Step]:
    """The steps of ``budget`` (one of :data:`BUDGETS`), in the order they run."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {BUDGETS}")
    if budget == "full":
        return list(STEPS)
    extra = EXTRA_ARGUMENTS[budget]
    return [
        dataclasses.replace(step, args=(*step.args, *shlex.split(extra[step.name])))
        for step in STEPS
        if step.name in extra
    ]
