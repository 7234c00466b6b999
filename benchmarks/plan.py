"""What each budget runs: the scripts of the report, in order, with their arguments.

- ``smoke``: every script on a handful of images for one epoch and one seed, so that
  CI can run the whole pipeline (scripts, JSON, renderer) in a few minutes. Its
  figures mean nothing.
- ``small``: every table on 2 CPU cores in well under an hour: subsets of 2,000
  Fashion-MNIST training images (the full test split scored on a fixed 2,000-image
  subset), 3 epochs, 3 seeds; fashion-scenes of 600 canvases.
- ``full``: each script's defaults, the recipes meant for a GPU (all 60,000
  Fashion-MNIST images, EfficientNet-Lite0 at 64x64 with AMP, 2,000 canvases...). On 2
  CPU cores it takes many hours; its results go to ``benchmarks/results/full/``. On a
  machine with CUDA the two overhead scripts also run on the GPU.

Each step names a script of ``benchmarks/`` and its arguments; the driver adds where
the results and the runs go (except for ``full``, whose steps are the bare defaults).
"""

from __future__ import annotations

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


def _split(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))


# The Fashion-MNIST recipe of each budget (overrides of configs/fashion-mnist_resnet20.yaml)
_FASHION = {
    "smoke": "--train_subset 96 --test_subset 64 --epochs 1 --batch_size 32 --warmup_epochs 0",
    "small": "--train_subset 2000 --test_subset 2000 --epochs 3 --eval_every 3",
}
_DIGITS = {
    "smoke": "--train_subset 96 --test_subset 64 --epochs 1 --batch_size 32 --warmup_epochs 0",
    "small": "--epochs 15 --eval_every 15",
}
_LITE0 = {  # EfficientNet-Lite0 on CPU: 32x32 inputs, float32
    "smoke": "--image_size 32 --amp false",
    "small": "--image_size 32 --amp false",
}
_LITE0_DIGITS = {"smoke": "", "small": "--epochs 5 --eval_every 5 --warmup_epochs 0.5"}
_SCENES = {
    "smoke": "--dataset_options.train_size 16 --dataset_options.val_size 8 "
    "--dataset_options.test_size 8 --epochs 1 --batch_size 8",
    "small": "--dataset_options.train_size 600 --dataset_options.test_size 300 --epochs 3",
}
_SEEDS = {"smoke": ("--seeds", "0"), "small": ()}  # small: each script's default, 0 1 2
_ROUNDS = {"smoke": ("--quick",), "small": ()}  # small: the scripts' own rounds (a minute)
_SKLEARN = {
    "smoke": "--train-size 200 --test-size 100",
    "small": "--train-size 2000 --test-size 1000",
}


def plan(budget: str) -> list[Step]:
    """The steps of ``budget`` (one of :data:`BUDGETS`), in the order they run."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {BUDGETS}")
    if budget == "full":
        return [
            *(
                Step(f"classification_{name}", "classification", ("--config", path))
                for name, path in CLASSIFICATION_CONFIGS.items()
            ),
            Step("fashion_mnist_ablation", "fashion_mnist_ablation"),
            Step("fashion_mnist_snap", "fashion_mnist_snap"),
            Step("segmentation_compare", "segmentation_compare"),
            Step("head_overhead", "head_overhead", trains=False),
            Step("segmentation_overhead", "segmentation_overhead", trains=False),
            Step("head_overhead_cuda", "head_overhead", ("--device", "cuda"), False, True),
            Step(
                "segmentation_overhead_cuda",
                "segmentation_overhead",
                ("--device", "cuda"),
                False,
                True,
            ),
            Step("openset", "openset"),
            Step("new_classes", "new_classes"),
            Step("sklearn_compare", "sklearn_compare", trains=False),
        ]
    fashion, digits = _split(_FASHION[budget]), _split(_DIGITS[budget])
    lite0 = _split(_LITE0[budget])
    # smoke runs Lite0 on the tiny recipes; small gives each Lite0 set its own
    lite0_fashion = (*lite0, *fashion, *(("--warmup_epochs", "0.3") if budget == "small" else ()))
    lite0_digits = (*lite0, *(digits if budget == "smoke" else _split(_LITE0_DIGITS[budget])))
    config, seeds = CLASSIFICATION_CONFIGS, _SEEDS[budget]
    steps = [
        Step(
            "classification_fashion-mnist_resnet20",
            "classification",
            ("--config", config["fashion-mnist_resnet20"], *fashion),
        ),
        Step(
            "classification_digits_resnet20",
            "classification",
            ("--config", config["digits_resnet20"], *digits),
        ),
        Step(
            "classification_fashion-mnist_efficientnet_lite0",
            "classification",
            ("--config", config["fashion-mnist_efficientnet_lite0"], *lite0_fashion),
        ),
        Step(
            "classification_digits_efficientnet_lite0",
            "classification",
            ("--config", config["digits_efficientnet_lite0"], *lite0_digits),
        ),
        Step("fashion_mnist_ablation", "fashion_mnist_ablation", fashion),
        Step("fashion_mnist_snap", "fashion_mnist_snap", fashion),
        Step(
            "segmentation_compare",
            "segmentation_compare",
            (*_split(_SCENES[budget]), f"--classifier-overrides={shlex.join(fashion)}"),
        ),
        Step("head_overhead", "head_overhead", _ROUNDS[budget], trains=False),
        Step("segmentation_overhead", "segmentation_overhead", _ROUNDS[budget], trains=False),
        Step("openset", "openset", fashion),
        Step("new_classes", "new_classes", fashion),
        Step("sklearn_compare", "sklearn_compare", _split(_SKLEARN[budget]), trains=False),
    ]
    return [Step(s.name, s.script, (*s.args, *seeds), s.trains) if s.trains else s for s in steps]
