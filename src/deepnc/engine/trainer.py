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
:mod:`~deepnc.engine.resume` loads a checkpoint into them; :mod:`~deepnc.engine.head_setup`
prepares the DNC heads; :mod:`~deepnc.engine.loop` runs an epoch;
:mod:`~deepnc.engine.run_folder` writes the metrics, curves and summary; this module
strings them together, loops over the epochs, and checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.engine.build import build_data, build_loaders, build_model, build_optimisation
from deepnc.engine.checkpoint import Checkpoint, TrainingState
from deepnc.engine.compile import SeedingWatch, compile_model
from deepnc.engine.config import TrainConfig, save_config
from deepnc.engine.evaluation import TEST_METRICS, dominant_class, evaluate_split
from deepnc.engine.head_setup import follow_half_life, refresh_heads, warm_start_heads
from deepnc.engine.loop import EpochControl, StepOptions, train_one_epoch
from deepnc.engine.precise_bn import recompute_batchnorm
from deepnc.engine.resume import data_changes, resume_from
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
    WARNING,
    CurvesHook,
    append_metrics,
    epoch_row,
    log_epoch,
    read_metrics,
    record_resume,
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


@dataclass
class _Run:
    """The parts of a run, built from its config (and its newest checkpoint, if resumed)."""

    config: TrainConfig
    runtime: Runtime
    data: DatasetSplits
    model: torch.nn.Module
    train_loader: DataLoader
    test_loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    checkpoints: RunCheckpoints
    saved: Checkpoint | None
    epochs: int
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    progress: EpochProgress | None = None  # where a checkpoint inside an epoch left it

    @property
    def out(self) -> Path:
        return Path(self.config.out_dir)

    def snapshot(self, epoch: int, progress: dict | None = None, rng=None) -> Checkpoint:
        training = TrainingState.capture(
            self.optimizer, self.scheduler, self.scaler, progress=progress, rng=rng
        )
        return Checkpoint(
            model=dict(self.model.state_dict()),
            config=self.config.to_dict(),
            dataset=self.data.describe(),
            epoch=epoch,
            training=training,
        )

    def save_inside_epoch(self, progress: EpochProgress) -> None:  # every process calls it
        ranks, rng = all_gather_objects(progress.to_dict()), capture_rng()
        if self.runtime.is_main:
            step = {"step": progress.step, "ranks": ranks}
            self.checkpoints.save(self.snapshot(progress.epoch, step, rng))
        barrier()


def _train(config: TrainConfig, runtime: Runtime, resume: bool, epoch_hooks) -> dict[str, Any]:
    run = _prepare(config, runtime, resume)
    out = run.out
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        write_metrics(out, run.history)
    hooks = (CurvesHook(out, config, run.data.task),) if epoch_hooks is None else epoch_hooks
    network, after_step = _network(run.model, config, runtime)
    with PreemptionWatch() as preemption:
        inside = StepCheckpoints(
            run.save_inside_epoch,
            len(run.train_loader),
            every_steps=config.checkpoint_every_steps,
            every_minutes=config.checkpoint_every_minutes,
            preemption=preemption,
            device=runtime.device,
        )
        for epoch in range(run.start_epoch, run.epochs):
            inside.epoch = epoch
            stats = _train_epoch(run, network, epoch, inside, after_step)
            if stats.stopped:
                raise Preempted(f"stopped in epoch {epoch + 1} after {stats.steps} steps; saved")
            row = epoch_row(config.evaluate_on, run.data.task, epoch, stats)
            evaluates = (epoch + 1) % config.eval_every == 0 or epoch + 1 == run.epochs
            _agree_before_evaluation(run, epoch, evaluates)
            if evaluates:
                row.update(_evaluate(run))
            run.history.append(row)
            if runtime.is_main:
                log_epoch(config.evaluate_on, run.data.task, row, stats, run.epochs)
                append_metrics(out, row)
                run.checkpoints.save(run.snapshot(epoch + 1))
                for hook in hooks:
                    hook()
            if inside.stop_requested():  # a collective: the others wait for rank 0's save
                raise Preempted(f"stopped after epoch {epoch + 1}; saved")

    summary = run_summary(
        config, run.data, run.model, run.history, runtime.world_size, runtime.device
    )
    if runtime.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _prepare(config: TrainConfig, runtime: Runtime, resume: bool) -> _Run:
    """Build the run's parts; load its newest checkpoint into them when resuming, else
    transfer a backbone and warm-start the heads as the config asks."""
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
    if config.subcentroid_half_life is not None:
        follow_half_life(model, config, steps_per_epoch, data)
    optimisation = build_optimisation(model, config, steps_per_epoch, runtime.device)
    run = _Run(
        config,
        runtime,
        data,
        model,
        train_loader,
        test_loader,
        *optimisation,
        checkpoints=checkpoints,
        saved=saved,
        epochs=config.total_epochs(steps_per_epoch),
    )
    if saved is not None:
        run.start_epoch, run.progress = resume_from(
            saved, config, data, model, *optimisation, rank=runtime.rank
        )
        run.history = [row for row in read_metrics(out) if row["epoch"] <= run.start_epoch]
        changes = data_changes(saved, config, data)
        if changes:
            log.warning("resuming %s on other data: %s", out, changes)
            if runtime.rank == 0:
                record_resume(out, {"after_epoch": run.start_epoch, "data_changes": changes})
        inside = f", {run.progress.step} steps into the next" if run.progress else ""
        log.info("resuming %s after epoch %d%s of %d", out, run.start_epoch, inside, run.epochs)
    else:
        if resume:
            log.info("no checkpoint in %s: starting from the beginning", out)
        if config.head == "dnc" and config.head_init == "warm":
            warm_start_heads(model, config, data, runtime)
    return run


def _network(model: torch.nn.Module, config: TrainConfig, runtime: Runtime):
    """``(what the training step runs, its after-step hook)``: the model wrapped in DDP
    under several processes, and compiled when the config asks (evaluation runs the
    eager model)."""
    network, after_step = model, None
    if runtime.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=device_ids)
    if config.compile:
        network = compile_model(network, config.compile_mode)
        after_step = SeedingWatch(model)
    return network, after_step


def _train_epoch(run: _Run, network, epoch: int, inside: StepCheckpoints, after_step):
    """One epoch, seeded from ``(seed, epoch)``; a resumed one taken up where its
    checkpoint left it."""
    config, runtime, loader = run.config, run.runtime, run.train_loader
    steps_per_epoch = len(loader)
    loader.sampler.set_epoch(epoch)
    torch.manual_seed(epoch_seed(config.seed, epoch, runtime.rank))
    control = EpochControl(
        max_steps=config.total_steps(steps_per_epoch) - epoch * steps_per_epoch,
        start=run.progress,
        after_step=after_step,
        checkpoints=inside,
    )
    if run.progress is not None:
        loader.sampler.skip_next(run.progress.step * config.batch_size)
        rng = run.saved.training.rng
        control.on_start = lambda: restore_rng(rng, runtime.rank)
        run.progress = None
    ignore_index = run.data.ignore_index if run.data.ignore_index is not None else -100
    options = StepOptions(
        scheduler=run.scheduler,
        scaler=run.scaler,
        amp=config.amp,
        amp_dtype=config.amp_dtype,
        grad_clip=config.grad_clip,
        label_smoothing=config.label_smoothing,
        ignore_index=ignore_index,
        aux_weight=config.aux_weight,
    )
    return train_one_epoch(
        network,
        loader,
        run.optimizer,
        device=runtime.device,
        options=options,
        control=control,
        progress=config.progress and runtime.is_main,
        description=f"epoch {epoch + 1}/{run.epochs}",
    )


def _agree_before_evaluation(run: _Run, epoch: int, evaluates: bool) -> None:
    """Make what evaluation uses agree with the final weights: BatchNorm statistics over
    ``precise_bn`` training images before an evaluation, then the sub-centroids refitted
    on eval-mode features at the config's ``refresh`` points (both saved with the
    epoch's checkpoint, so a resumed run goes on from them)."""
    config, runtime = run.config, run.runtime
    if config.precise_bn and evaluates:
        seconds = recompute_batchnorm(
            run.model,
            run.data.train,
            samples=config.precise_bn,
            batch_size=max(2, config.eval_batch_size),  # a batch of one has no statistics
            seed=epoch_seed(config.seed, epoch, 0),
            device=runtime.device,
            progress=config.progress and runtime.is_main,
        )
        if runtime.is_main:
            log.info("precise BN: statistics over %d images in %.1f s", config.precise_bn, seconds)
    last = epoch + 1 == run.epochs
    points = {"epoch": True, "eval": evaluates, "end": last, "never": False}
    if config.head == "dnc" and points[config.refresh]:
        refresh_heads(run.model, config, run.data, runtime, epoch)


def _evaluate(run: _Run) -> dict:
    """The split the config scores, as ``{"<split>_<metric>": value}``, and a ``warning``
    (logged, and kept in the row) when one class takes nearly every prediction."""
    config = run.config
    result = evaluate_split(
        run.model,
        run.test_loader,
        run.data,
        run.runtime.device,
        amp=config.amp,
        amp_dtype=config.amp_dtype,
        inference=InferenceOptions.from_config(config.inference),
    )
    summary, split = result.summary(), config.evaluate_on
    scores: dict = {f"{split}_{name}": summary[name] for name in TEST_METRICS[run.data.task]}
    collapsed = dominant_class(*result.class_counts())
    if collapsed is not None:
        top, share, truth = collapsed
        advice = "" if config.precise_bn else _PRECISE_BN_ADVICE
        advice += _DNC_ADVICE if config.head == "dnc" else ""
        scores[WARNING] = (
            f"{100 * share:.0f}% of the {config.evaluate_on} predictions are class "
            f"{run.data.class_names[top]!r} ({100 * truth:.0f}% of the truth): the model puts "
            f"nearly everything in one class.{advice}"
        )
        if run.runtime.is_main:
            log.warning("%s", scores[WARNING])
    return scores


_PRECISE_BN_ADVICE = (
    " On a short run, BatchNorm's running statistics may trail the weights: try --precise_bn 1000."
)
_DNC_ADVICE = (
    " A DNC head compares evaluation-mode features with sub-centroids made from "
    "training-mode ones: --refresh end refits those on evaluation-mode features; over a "
    "pretrained backbone, --head_init warm --subcentroid_half_life 1."
)
