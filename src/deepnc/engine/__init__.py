"""Training and evaluation: the loop, optimisers, runs from a config.

Checkpoints live in :mod:`deepnc.engine.checkpoint`; this package imports the trainer (and with
it the data loaders and the models) only when ``train`` or ``build_model`` is asked for.
"""

from deepnc.engine.loop import (
    EpochControl,
    EpochStats,
    EvalResult,
    StepOptions,
    evaluate,
    train_one_epoch,
)
from deepnc.engine.optim import build_optimizer, build_scheduler

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
    if name == "train":
        from deepnc.engine.trainer import train

        return train
    if name in ("build_model", "count_parameters"):
        from deepnc.engine import build

        return getattr(build, name)
    raise AttributeError(f"module 'deepnc.engine' has no attribute {name!r}")
