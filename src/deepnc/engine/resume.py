"""Resuming a run: its newest checkpoint loaded into freshly built parts, after checking
that the configuration and the dataset are the ones it was trained with."""

from __future__ import annotations

from deepnc.engine.checkpoint import Checkpoint
from deepnc.engine.config import INCIDENTAL_KEYS, TrainConfig
from deepnc.engine.run_checkpoints import EpochProgress

__all__ = ["RESUMABLE_CHANGES", "data_changes", "resume_from"]

# Keys that may change between a run and its resumption; any other change is an error.
RESUMABLE_CHANGES = INCIDENTAL_KEYS | {"epochs", "eval_every", "inference"}


def resume_from(
    saved: Checkpoint, config: TrainConfig, data, model, optimizer, scheduler, scaler, *, rank: int
) -> tuple[int, EpochProgress | None]:
    """Load the run's newest checkpoint into the freshly built parts; return the epochs
    it finished and, for one taken inside an epoch, this process's progress in it.

    Raises:
        ValueError: the checkpoint does not match the configuration or the dataset, or
            holds no training state (a snapped or exported model).
    """
    current = config.to_dict()
    changed = sorted(
        key
        for key in current
        if key not in RESUMABLE_CHANGES and saved.config.get(key) != current[key]
    )
    where = config.out_dir
    if changed:
        details = ", ".join(f"{k}: {saved.config.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {where}: the configuration changed ({details})")
    if saved.num_classes != data.num_classes:
        raise ValueError(
            f"cannot resume {where}: it was trained with {saved.num_classes} classes, "
            f"the dataset now has {data.num_classes}"
        )
    if saved.training is None:
        raise ValueError(f"cannot resume {where}: it holds no training state (a model for use)")
    model.load_state_dict(saved.model)
    saved.training.restore(optimizer, scheduler, scaler)
    progress = saved.training.progress
    if progress is None:
        return saved.epoch, None
    return saved.epoch, EpochProgress.from_dict(progress["ranks"][rank])


def data_changes(saved: Checkpoint, config: TrainConfig, data) -> dict[str, list]:
    """What differs in the data a run resumes on: ``{key: [before, now]}`` for the data
    root and the split sizes (empty when nothing did). Such a run may go on; it should say
    so and keep both in its record."""
    before = {"data_root": saved.config.get("data_root"), **saved.dataset}
    now = {"data_root": config.data_root, **data.describe()}
    keys = ("data_root", "train_size", "test_size")
    return {key: [before.get(key), now[key]] for key in keys if before.get(key) != now[key]}
