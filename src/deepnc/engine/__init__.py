"""Training and evaluation: the loop, checkpoints, optimisers, runs from a config."""

from deepnc.engine.checkpoint import load_checkpoint, save_checkpoint
from deepnc.engine.loop import EpochStats, EvalResult, evaluate, train_one_epoch
from deepnc.engine.optim import build_optimizer, build_scheduler
from deepnc.engine.trainer import CHECKPOINT_NAME, build_model, count_parameters, train

__all__ = [
    "CHECKPOINT_NAME",
    "EpochStats",
    "EvalResult",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "count_parameters",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
    "train",
    "train_one_epoch",
]
