"""A whole training run from a :class:`~deepnc.config.TrainConfig`: what ``deepnc train`` does.

The run folder (``config.out_dir``) receives:

- ``config.yaml``: the resolved configuration;
- ``metrics.jsonl``: one JSON row per epoch (train and test loss and top-1, seconds);
- ``checkpoint.safetensors`` (+ ``.json``): the state after the last finished epoch;
- ``curves.png`` and, at the end, ``summary.json``.

Every epoch re-seeds torch's generator and the sampler from ``(seed, epoch)``, so a run
resumed from its checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from deepnc import distributed
from deepnc.config import INCIDENTAL_KEYS, TrainConfig, save_config
from deepnc.data import DatasetSplits, load_dataset
from deepnc.engine.checkpoint import (
    load_checkpoint,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    save_checkpoint,
)
from deepnc.engine.compile import SeedingWatch, compile_model
from deepnc.engine.loop import evaluate, train_one_epoch
from deepnc.engine.optim import build_optimizer, build_scheduler
from deepnc.engine.plots import plot_curves
from deepnc.engine.segmentation_eval import evaluate_segmentation
from deepnc.engine.setup import (
    Runtime,
    deterministic_algorithms,
    epoch_seed,
    seed_everything,
    start_runtime,
    stop_runtime,
)
from deepnc.engine.transfer import transfer_backbone
from deepnc.models import create_model
from deepnc.models.segmentation import create_segmentation_model
from deepnc.subcentroids import half_life_momentum
from deepnc.targets import dnc_heads
from deepnc.warm_start import warm_start

__all__ = [
    "CHECKPOINT_NAME",
    "TEST_METRICS",
    "build_model",
    "count_parameters",
    "evaluate_split",
    "primary_metric",
    "train",
]

CHECKPOINT_NAME = "checkpoint.safetensors"
log = logging.getLogger("deepnc")

# Keys that may change between a run and its resumption; any other change is an error.
_RESUMABLE_CHANGES = INCIDENTAL_KEYS | {"epochs", "eval_every"}
# What an evaluation reports, per task; the first is the headline figure.
TEST_METRICS = {
    "classification": ("top1", "top5", "loss"),
    "segmentation": ("miou", "pixel_accuracy", "loss"),
}


def primary_metric(task: str) -> str:
    """``"top1"`` for classification, ``"miou"`` for segmentation."""
    return TEST_METRICS[task][0]


def build_model(config: TrainConfig, data: dict[str, Any]) -> torch.nn.Module:
    """The model of ``config`` for the dataset that ``data`` describes (``describe()``)."""
    head_options = dict(config.head_options)
    if config.head == "dnc":
        head_options.setdefault("seed", config.seed)
    builder = create_model  # config.validate() allows model_options for segmentation only
    if config.task == "segmentation":
        builder = create_segmentation_model
        if config.head == "dnc" and data.get("ignore_index") is not None:
            head_options.setdefault("ignore_index", data["ignore_index"])
    return builder(
        config.model,
        num_classes=data["num_classes"],
        head=config.head,
        in_chans=data["in_channels"],
        pretrained=config.pretrained,
        head_options=head_options or None,
        **config.model_options,
    )


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters, and the numbers held by DNC sub-centroids (buffers, not trained)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    subcentroids = sum(head.subcentroids.numel() for head in dnc_heads(model))
    return {"trainable": trainable, "subcentroids": subcentroids}


def _loaders(
    config: TrainConfig, data: DatasetSplits, runtime: Runtime
) -> tuple[DataLoader, DataLoader]:
    sampler = DistributedSampler(
        data.train,
        num_replicas=runtime.world_size,
        rank=runtime.rank,
        shuffle=True,
        seed=config.seed,
    )
    per_process = len(sampler)
    if per_process < config.batch_size:
        raise ValueError(
            f"an epoch would have no step: {per_process} training images per process "
            f"(of {len(data.train)}) but batch_size is {config.batch_size}"
        )
    common = {"num_workers": config.workers, "pin_memory": runtime.device.type == "cuda"}
    train = DataLoader(data.train, config.batch_size, sampler=sampler, drop_last=True, **common)
    # Disjoint shards, no padding: every image is counted exactly once over all processes.
    scored = _scored_split(config, data)
    shard = Subset(scored, range(runtime.rank, len(scored), runtime.world_size))
    test = DataLoader(shard, config.eval_batch_size, shuffle=False, **common)
    return train, test


def _scored_split(config: TrainConfig, data: DatasetSplits):
    """The split that the epochs are scored on: ``test``, or ``val`` for tuning."""
    if config.evaluate_on == "test":
        return data.test
    if data.val is None:
        raise ValueError(f"evaluate_on: val, but {config.dataset} has no validation split")
    return data.val


def evaluate_split(
    model: torch.nn.Module,
    loader: DataLoader,
    data: DatasetSplits,
    device: torch.device,
    *,
    amp: bool = False,
    amp_dtype: str = "auto",
    progress: bool = False,
):
    """Evaluate with the task's metrics: an ``EvalResult`` or a ``SegmentationResult``."""
    if data.task == "segmentation":
        return evaluate_segmentation(
            model, loader, num_classes=data.num_classes, device=device,
            ignore_index=data.ignore_index, amp=amp, amp_dtype=amp_dtype, progress=progress,
        )  # fmt: skip
    return evaluate(
        model, loader, num_classes=data.num_classes, device=device, amp=amp,
        amp_dtype=amp_dtype, progress=progress,
    )  # fmt: skip


def _follow_half_life(
    model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int, data: DatasetSplits
) -> None:
    """Set each DNC head's momentum so that a sub-centroid forgets half of its past in
    ``config.subcentroid_half_life`` epochs, capped at the head's own momentum.

    Each of the ``steps_per_epoch`` steps (of every process at once) makes one update
    from the all-gathered batch of B = batch_size x processes samples; a class moves
    only in the updates whose batch holds it: with C balanced classes, a share
    ``1 - (1 - 1/C)^B`` of them (all of them for dense heads, whose images hold most
    classes).
    """
    batch = config.batch_size * distributed.world_size()
    for head in dnc_heads(model):
        presence = 1 - (1 - 1 / head.num_classes) ** batch if data.task == "classification" else 1
        updates = config.subcentroid_half_life * steps_per_epoch * presence
        head.bank.momentum = half_life_momentum(updates, limit=head.bank.momentum)
        log.info("sub-centroid momentum %.5f (half-life %s epochs)", head.bank.momentum,
                 config.subcentroid_half_life)  # fmt: skip


def _warm_start(
    model: torch.nn.Module, config: TrainConfig, data: DatasetSplits, runtime: Runtime
) -> None:
    """Fit the DNC heads on a class-balanced sample of the training set (identical on
    every process: an unsharded loader in a seeded order, the same augmentation draws)."""
    order = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        data.train, config.batch_size, shuffle=True, generator=order,
        num_workers=config.workers, pin_memory=runtime.device.type == "cuda",
    )  # fmt: skip
    torch.manual_seed(epoch_seed(config.seed, -1, 0))
    report = warm_start(
        model, loader, samples_per_class=config.warm_start_samples, seed=config.seed,
        progress=config.progress and runtime.is_main,
    )  # fmt: skip
    if runtime.is_main:
        log.info(
            "warm start: fitted on %d batches, %d to %d samples per class",
            report.batches, min(report.samples_per_class), max(report.samples_per_class),
        )  # fmt: skip


def _check_resumable(
    saved: dict[str, Any], config: TrainConfig, data: DatasetSplits, path: Path
) -> None:
    current = config.to_dict()
    changed = sorted(
        key
        for key in current
        if key not in _RESUMABLE_CHANGES and saved["config"].get(key) != current[key]
    )
    if changed:
        details = ", ".join(f"{k}: {saved['config'].get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {path}: the configuration changed ({details})")
    if saved["dataset"]["num_classes"] != data.num_classes:
        raise ValueError(
            f"cannot resume {path}: it was trained with {saved['dataset']['num_classes']} classes, "
            f"the dataset now has {data.num_classes}"
        )


def train(config: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train (or resume) the run described by ``config``; return its summary.

    Raises:
        FileExistsError: the run folder already holds a checkpoint and ``resume`` is False.
        ValueError: a bad configuration, a dataset problem, or a checkpoint that does not
            match the configuration when resuming.
    """
    config.validate()
    runtime = start_runtime(config.device)
    try:
        with deterministic_algorithms(config.deterministic):
            return _train(config, runtime, resume)
    finally:
        stop_runtime(runtime)


def _train(config: TrainConfig, runtime: Runtime, resume: bool) -> dict[str, Any]:
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out_dir)
    checkpoint_path = out / CHECKPOINT_NAME
    if checkpoint_path.exists() and not resume:
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another out_dir"
        )
    data = load_dataset(
        config.dataset,
        root=config.data_root,
        download=config.download,
        image_size=config.image_size,
        augment=config.augment,
        train_subset=config.train_subset,
        test_subset=config.test_subset,
        validation_size=config.validation_size,
        seed=config.seed,
        **config.dataset_options,
    )
    if data.task != config.task:
        raise ValueError(
            f"{config.dataset} is a {data.task} dataset but the task is {config.task}: "
            f"pass --task {data.task}"
        )
    seed_everything(config.seed)
    model = build_model(config, data.describe())
    if config.init_from and not (resume and checkpoint_path.exists()):
        report = transfer_backbone(model, config.init_from)
        if runtime.is_main:
            log.info("%s", report.describe())
            out.mkdir(parents=True, exist_ok=True)
            (out / "transfer.json").write_text(json.dumps(report.to_dict(), indent=2))
    model = model.to(runtime.device)
    train_loader, test_loader = _loaders(config, data, runtime)
    steps_per_epoch = len(train_loader)
    if config.subcentroid_half_life is not None:
        _follow_half_life(model, config, steps_per_epoch, data)
    optimizer = build_optimizer(
        model,
        config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = build_scheduler(
        optimizer, config.schedule, total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        milestones=config.milestones, gamma=config.gamma,
    )  # fmt: skip
    fp16 = config.amp and runtime.device.type == "cuda" and config.amp_dtype in ("auto", "float16")
    scaler = torch.amp.GradScaler("cuda") if fp16 else None

    start_epoch, history = 0, []
    if resume and checkpoint_path.exists():
        tensors, state = load_checkpoint(checkpoint_path)
        _check_resumable(state, config, data, checkpoint_path)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer.load_state_dict(optimizer_state_from_tensors(tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = state["epoch"]
        history = [row for row in _read_metrics(out) if row["epoch"] <= start_epoch]
        log.info("resuming %s after epoch %d of %d", out, start_epoch, config.epochs)
    else:
        if resume:
            log.info("no checkpoint in %s: starting from the beginning", out)
        if config.head == "dnc" and config.head_init == "warm":
            _warm_start(model, config, data, runtime)

    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        _write_metrics(out, history)
    network = model
    if runtime.world_size > 1:
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        network = DistributedDataParallel(model, device_ids=device_ids)
    after_step = None
    if config.compile:  # the training step only: evaluation runs the eager model
        network = compile_model(network, config.compile_mode)
        after_step = SeedingWatch(model)

    ignore_index = data.ignore_index if data.ignore_index is not None else -100
    primary, scored = primary_metric(data.task), config.evaluate_on
    train_accuracy = "train_top1" if data.task == "classification" else "train_pixel_accuracy"
    for epoch in range(start_epoch, config.epochs):
        train_loader.sampler.set_epoch(epoch)
        torch.manual_seed(epoch_seed(config.seed, epoch, runtime.rank))
        stats = train_one_epoch(
            network, train_loader, optimizer, device=runtime.device, scheduler=scheduler,
            amp=config.amp, amp_dtype=config.amp_dtype, scaler=scaler, grad_clip=config.grad_clip,
            label_smoothing=config.label_smoothing, ignore_index=ignore_index,
            aux_weight=config.aux_weight, progress=config.progress and runtime.is_main,
            description=f"epoch {epoch + 1}/{config.epochs}", after_step=after_step,
        )  # fmt: skip
        row = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            train_accuracy: stats.accuracy,
            **{f"{scored}_{name}": None for name in TEST_METRICS[data.task]},
            "lr": stats.lr,
            "epoch_seconds": stats.seconds,
            "step_seconds": stats.step_seconds,
        }
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            result = evaluate_split(
                model, test_loader, data, runtime.device, amp=config.amp,
                amp_dtype=config.amp_dtype,
            )  # fmt: skip
            summary = result.summary()
            row.update({f"{scored}_{name}": summary[name] for name in TEST_METRICS[data.task]})
        history.append(row)
        if runtime.is_main:
            headline = row[f"{scored}_{primary}"]
            tested = f"{scored} {primary} {100 * headline:.2f}%" if headline is not None else ""
            log.info(
                "epoch %d/%d  train loss %.4f accuracy %.2f%%  %s  %.1f s",
                epoch + 1, config.epochs, stats.loss, 100 * stats.accuracy, tested, stats.seconds,
            )  # fmt: skip
            _append_metrics(out, row)
            _save(checkpoint_path, model, optimizer, scheduler, scaler, config, data, epoch + 1)
            plot_curves(
                history,
                out / "curves.png",
                title=f"{config.model} / {config.head} on {config.dataset}",
                train_key=train_accuracy,
                test_key=f"{scored}_{primary}",
            )

    summary = _summary(config, data, model, history, runtime)
    if runtime.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _save(path, model, optimizer, scheduler, scaler, config, data, epoch) -> None:
    optimizer_tensors, optimizer_json = optimizer_state_to_tensors(optimizer)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()} | optimizer_tensors
    state = {
        "epoch": epoch,
        "config": config.to_dict(),
        "dataset": data.describe(),
        "optimizer": optimizer_json,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "torch_version": torch.__version__,
    }
    save_checkpoint(path, tensors, state)


def _summary(config, data, model, history, runtime) -> dict[str, Any]:
    last = history[-1] if history else {}
    scored = config.evaluate_on
    primary = f"{scored}_{primary_metric(data.task)}"
    return {
        "task": data.task,
        "model": config.model,
        "head": config.head,
        "dataset": config.dataset,
        "seed": config.seed,
        "epochs": len(history),
        "evaluated_on": scored,
        **{f"{scored}_{name}": last.get(f"{scored}_{name}") for name in TEST_METRICS[data.task]},
        f"best_{primary}": max(
            (r[primary] for r in history if r.get(primary) is not None), default=None
        ),
        "seconds_per_epoch": statistics.mean(r["epoch_seconds"] for r in history)
        if history
        else None,
        "step_seconds": statistics.mean(r["step_seconds"] for r in history) if history else None,
        "parameters": count_parameters(model),
        "train_size": len(data.train),
        "test_size": len(data.test),
        "val_size": len(data.val) if data.val is not None else None,
        "world_size": runtime.world_size,
        "device": str(runtime.device),
        "config": config.to_dict(),
    }


def _read_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_metrics(out: Path, rows: list[dict]) -> None:
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def _append_metrics(out: Path, row: dict) -> None:
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
