"""A whole training run from a :class:`~deepnc.engine.config.TrainConfig`: what
``deepnc train`` does.

The run folder (``config.out_dir``) receives:

- ``config.yaml``: the resolved configuration;
- ``metrics.jsonl``: one JSON row per epoch (train and test loss and top-1, seconds);
- ``checkpoint.safetensors`` (+ ``.json``): the newest state, after an epoch or inside
  one (``checkpoint_every_steps`` / ``_minutes``, and on SIGTERM), the ones it replaced
  in ``checkpoints/`` (:mod:`~deepnc.engine.run_checkpoints`);
- ``curves.png`` (drawn from ``metrics.jsonl``) and, at the end, ``summary.json``.

Every epoch re-seeds torch's generator and the sampler from ``(seed, epoch)``, and a
checkpoint inside an epoch keeps the generators' states, so a run resumed from its newest
checkpoint continues exactly as the uninterrupted run would have.

The parts: :mod:`~deepnc.engine.build` makes the data, model, loaders and optimiser;
:mod:`~deepnc.engine.head_setup` prepares the DNC heads; :mod:`~deepnc.engine.loop` runs
an epoch; :mod:`~deepnc.engine.run_folder` writes the metrics, curves and summary; this
module resumes, loops over the epochs, and checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from deepnc.data import DatasetSplits
from deepnc.engine.build import build_data, build_loaders, build_model, build_optimisation
from deepnc.engine.checkpoint import Checkpoint, TrainingState
from deepnc.engine.compile import SeedingWatch, compile_model
from deepnc.engine.config import INCIDENTAL_KEYS, TrainConfig, save_config
from deepnc.engine.evaluation import TEST_METRICS, evaluate_split, primary_metric
from deepnc.engine.head_setup import follow_half_life, warm_start_heads
from deepnc.engine.loop import train_one_epoch
from deepnc.engine.run_checkpoints import (
    EpochProgress,
    Preempted,
    PreemptionWatch,
    RunCheckpoints,
    StepCheckpoints,
    capture_rng,
    restore_rng,
)
from deepnc.engine.run_folder import (
    CurvesHook,
    append_metrics,
    read_metrics,
    run_summary,
    write_metrics,
)
from deepnc.engine.runtime import (
    Runtime,
    deterministic_algorithms,
    epoch_seed,
    seed_everything,
    start_runtime,
    stop_runtime,
)
from deepnc.engine.seg_inference import InferenceOptions
from deepnc.engine.transfer import transfer_backbone
from deepnc.nn.distributed import all_gather_objects, barrier

__all__ = ["train"]

log = logging.getLogger("deepnc")

# Keys that may change between a run and its resumption; any other change is an error.
_RESUMABLE_CHANGES = INCIDENTAL_KEYS | {"epochs", "eval_every", "inference"}


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    epoch_hooks: tuple[Callable[[], None], ...] | None = None,
) -> dict[str, Any]:
    """Train (or resume) the run described by ``config``; return its summary.

    Args:
        epoch_hooks: called (main process only) after each epoch's metrics and
            checkpoint are written; default: redraw ``curves.png``.

    Raises:
        FileExistsError: the run folder already holds a checkpoint and ``resume`` is False.
        ValueError: a bad configuration, a dataset problem, or a checkpoint that does not
            match the configuration when resuming.
    """
    config.validate()
    runtime = start_runtime(config.device)
    try:
        with deterministic_algorithms(config.deterministic):
            return _train(config, runtime, resume, epoch_hooks)
    finally:
        stop_runtime(runtime)


def _train(config: TrainConfig, runtime: Runtime, resume: bool, epoch_hooks) -> dict[str, Any]:
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    checkpoints = RunCheckpoints(out, config.keep_checkpoints)
    # torchrun --max-restarts: a restarted group resumes by itself
    resume = resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if checkpoints.candidates() and not resume:
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another out_dir"
        )
    saved = checkpoints.newest() if resume else None
    data = build_data(config)
    seed_everything(config.seed)
    model = build_model(config, data.describe())
    if config.init_from and saved is None:
        report = transfer_backbone(model, config.init_from)
        if runtime.is_main:
            log.info("%s", report.describe())
            out.mkdir(parents=True, exist_ok=True)
            (out / "transfer.json").write_text(json.dumps(report.to_dict(), indent=2))
    model = model.to(runtime.device)
    train_loader, test_loader = build_loaders(config, data, runtime)
    steps_per_epoch = len(train_loader)
    epochs = config.total_epochs(steps_per_epoch)
    if config.subcentroid_half_life is not None:
        follow_half_life(model, config, steps_per_epoch, data)
    optimizer, scheduler, scaler = build_optimisation(
        model, config, steps_per_epoch, runtime.device
    )

    start_epoch, history, progress = 0, [], None
    if saved is not None:
        parts = (model, optimizer, scheduler, scaler)
        start_epoch, progress = _resume(saved, config, data, *parts, rank=runtime.rank)
        history = [row for row in read_metrics(out) if row["epoch"] <= start_epoch]
        inside = f", {progress.step} steps into the next" if progress else ""
        log.info("resuming %s after epoch %d%s of %d", out, start_epoch, inside, epochs)
    else:
        if resume:
            log.info("no checkpoint in %s: starting from the beginning", out)
        if config.head == "dnc" and config.head_init == "warm":
            warm_start_heads(model, config, data, runtime)

    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        write_metrics(out, history)
    hooks = (CurvesHook(out, config, data.task),) if epoch_hooks is None else epoch_hooks
    network = model
    if runtime.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=device_ids)
    after_step = None
    if config.compile:  # the training step only: evaluation runs the eager model
        network = compile_model(network, config.compile_mode)
        after_step = SeedingWatch(model)

    def snapshot(epoch: int, progress: dict | None = None, rng=None) -> Checkpoint:
        training = TrainingState.capture(optimizer, scheduler, scaler, progress=progress, rng=rng)
        return Checkpoint(
            model=dict(model.state_dict()),
            config=config.to_dict(),
            dataset=data.describe(),
            epoch=epoch,
            training=training,
        )

    def save_inside_epoch(progress: EpochProgress) -> None:  # every process calls it
        ranks, rng = all_gather_objects(progress.to_dict()), capture_rng()
        if runtime.is_main:
            checkpoints.save(snapshot(progress.epoch, {"step": progress.step, "ranks": ranks}, rng))
        barrier()

    ignore_index = data.ignore_index if data.ignore_index is not None else -100
    inference = InferenceOptions.from_config(config.inference)
    with PreemptionWatch() as preemption:
        inside = StepCheckpoints(
            save_inside_epoch,
            steps_per_epoch,
            every_steps=config.checkpoint_every_steps,
            every_minutes=config.checkpoint_every_minutes,
            preemption=preemption,
            device=runtime.device,
        )
        for epoch in range(start_epoch, epochs):
            inside.epoch = epoch
            train_loader.sampler.set_epoch(epoch)
            torch.manual_seed(epoch_seed(config.seed, epoch, runtime.rank))
            on_start = None
            if progress is not None:  # take the epoch up where the checkpoint left it
                train_loader.sampler.skip_next(progress.step * config.batch_size)
                rng = saved.training.rng
                on_start = lambda rng=rng: restore_rng(rng, runtime.rank)  # noqa: E731
            stats = train_one_epoch(
                network,
                train_loader,
                optimizer,
                device=runtime.device,
                scheduler=scheduler,
                amp=config.amp,
                amp_dtype=config.amp_dtype,
                scaler=scaler,
                grad_clip=config.grad_clip,
                label_smoothing=config.label_smoothing,
                ignore_index=ignore_index,
                aux_weight=config.aux_weight,
                progress=config.progress and runtime.is_main,
                description=f"epoch {epoch + 1}/{epochs}",
                after_step=after_step,
                max_steps=config.total_steps(steps_per_epoch) - epoch * steps_per_epoch,
                start=progress,
                on_start=on_start,
                checkpoints=inside,
            )
            progress = None
            if stats.stopped:
                raise Preempted(f"stopped in epoch {epoch + 1} after {stats.steps} steps; saved")
            row = _epoch_row(config, data, epoch, stats)
            if (epoch + 1) % config.eval_every == 0 or epoch + 1 == epochs:
                result = evaluate_split(
                    model,
                    test_loader,
                    data,
                    runtime.device,
                    amp=config.amp,
                    amp_dtype=config.amp_dtype,
                    inference=inference,
                )
                summary = result.summary()
                scored = config.evaluate_on
                row.update({f"{scored}_{name}": summary[name] for name in TEST_METRICS[data.task]})
            history.append(row)
            if runtime.is_main:
                _log_epoch(config, data, row, stats, epochs)
                append_metrics(out, row)
                checkpoints.save(snapshot(epoch + 1))
                for hook in hooks:
                    hook()
            if inside.stop_requested():  # a collective: the others wait for rank 0's save
                raise Preempted(f"stopped after epoch {epoch + 1}; saved")

    summary = run_summary(config, data, model, history, runtime.world_size, runtime.device)
    if runtime.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _epoch_row(config: TrainConfig, data: DatasetSplits, epoch: int, stats) -> dict[str, Any]:
    """The epoch's row of ``metrics.jsonl``, its scores ``None`` until evaluated."""
    train_accuracy = "train_top1" if data.task == "classification" else "train_pixel_accuracy"
    return {
        "epoch": epoch + 1,
        "train_loss": stats.loss,
        train_accuracy: stats.accuracy,
        **{f"{config.evaluate_on}_{name}": None for name in TEST_METRICS[data.task]},
        "lr": stats.lr,
        "epoch_seconds": stats.seconds,
        "step_seconds": stats.step_seconds,
    }


def _log_epoch(config: TrainConfig, data: DatasetSplits, row: dict, stats, epochs: int) -> None:
    scored, primary = config.evaluate_on, primary_metric(data.task)
    headline = row[f"{scored}_{primary}"]
    tested = f"{scored} {primary} {100 * headline:.2f}%" if headline is not None else ""
    log.info(
        "epoch %d/%d  train loss %.4f accuracy %.2f%%  %s  %.1f s",
        row["epoch"],
        epochs,
        stats.loss,
        100 * stats.accuracy,
        tested,
        stats.seconds,
    )


def _resume(
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
        if key not in _RESUMABLE_CHANGES and saved.config.get(key) != current[key]
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
