"""Training and evaluation: the loop, optimisers, runs from a config.

Checkpoints live in :mod:`deepnc.engine.checkpoint`. The names below load on first use,
so that a light module of the engine (the recipes, the checkpoint format) imports without
the loop's torchmetrics or the trainer's data loaders and models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepnc.engine.build import build_model, count_parameters
    from deepnc.engine.loop import (
        EpochControl,
        EpochStats,
        EvalResult,
        StepOptions,
        evaluate,
        train_one_epoch,
    )
    from deepnc.engine.optim import build_optimizer, build_scheduler
    from deepnc.engine.trainer import train

_WHERE = {  # name -> the module that defines it
    **dict.fromkeys(
        ("EpochControl", "EpochStats", "EvalResult", "StepOptions", "evaluate", "train_one_epoch"),
        "loop",
    ),
    **dict.fromkeys(("build_optimizer", "build_scheduler"), "optim"),
    **dict.fromkeys(("build_model", "count_parameters"), "build"),
    "train": "trainer",
}
__all__ = [
    "EpochControl",
    "EpochStats",
    "EvalResult",
    "StepOptions",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "count_parameters",
    "evaluate",
    "train",
    "train_one_epoch",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"deepnc.engine.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'deepnc.engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
