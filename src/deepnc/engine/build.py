"""What a run is made of, built from its config: the data, the model, the loaders, and
the optimiser, scheduler and gradient scaler."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from deepnc.data import DatasetSplits, load_dataset
from deepnc.data.samplers import ResumableSampler, SeededItems, SeededSampler
from deepnc.data.seg_files import collate_segmentation
from deepnc.data.verify import UnreadableImages, unreadable_items, without_items
from deepnc.engine.config import TrainConfig
from deepnc.engine.optim import build_optimizer, build_scheduler
from deepnc.engine.runtime import Runtime
from deepnc.models import create_model
from deepnc.models.seg_models import create_segmentation_model
from deepnc.nn.hooks import dnc_heads
from deepnc.utils.progress import progress_bar

__all__ = [
    "build_data",
    "build_loaders",
    "build_model",
    "build_optimisation",
    "check_image_files",
    "count_parameters",
]

log = logging.getLogger("deepnc")


def build_data(config: TrainConfig) -> DatasetSplits:
    """The dataset of ``config``, with its subsets, validation split and augmentation.

    Raises:
        ValueError: the dataset's task is not the config's.
    """
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
    if config.verify_images:
        check_image_files(data, skip=config.skip_unreadable, progress=config.progress)
    return data


def check_image_files(data: DatasetSplits, *, skip: bool, progress: bool) -> None:
    """Decode every image file of every split once (splits without files pass at once).

    Raises:
        UnreadableImages: some file cannot be decoded and ``skip`` is false.
    """
    for split in ("train", "val", "test"):
        dataset = getattr(data, split)
        if dataset is None:
            continue
        bar = partial(progress_bar, description=f"checking {split} images", enabled=progress)
        bad = unreadable_items(dataset, bar)
        if not bad:
            continue
        messages = [message for _, message in bad]
        if not skip:
            raise UnreadableImages(split, messages)
        setattr(data, split, without_items(dataset, [index for index, _ in bad]))
        data.unreadable += messages
        for message in messages:
            log.warning("left out: %s", message)


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


def build_loaders(
    config: TrainConfig, data: DatasetSplits, runtime: Runtime
) -> tuple[DataLoader, DataLoader]:
    """``(train, scored)``: this process's shard of the training set (a seeded
    ``DistributedSampler``, whole batches) and of the split the epochs are scored on."""
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
    common: dict[str, Any] = {
        "num_workers": config.workers,
        "pin_memory": runtime.device.type == "cuda",
    }
    if data.task == "segmentation":  # full-resolution items of many sizes come as lists
        common["collate_fn"] = collate_segmentation
    train_set = data.train
    if config.workers > 0:
        # In a worker, torch's global generator follows the worker a batch lands on, not
        # the epoch (a run resumed mid-epoch would see other crops): each item's
        # augmentation is seeded from (seed, epoch, index) instead, so workers may
        # persist; the loaders draw their worker seeds from their own generators, never
        # from torch's global one, whose stream (dropout...) must not depend on whether
        # an iterator was created this epoch or in an earlier one before a resume.
        if not getattr(train_set, "seeded_items", False):
            train_set = SeededItems(train_set)
        common["persistent_workers"] = True
        common["generator"] = torch.Generator().manual_seed(config.seed)
    if getattr(train_set, "seeded_items", False):
        sampler = SeededSampler(sampler, config.seed)
    sampler = ResumableSampler(sampler)  # a run resumed mid-epoch skips the batches done
    train = DataLoader(train_set, config.batch_size, sampler=sampler, drop_last=True, **common)
    # Disjoint shards, no padding: every image is counted exactly once over all processes.
    scored = scored_split(config, data)
    shard = Subset(scored, range(runtime.rank, len(scored), runtime.world_size))
    if "generator" in common:
        common["generator"] = torch.Generator().manual_seed(config.seed)
    test = DataLoader(shard, config.eval_batch_size, shuffle=False, **common)
    return train, test


def scored_split(config: TrainConfig, data: DatasetSplits):
    """The split that the epochs are scored on: ``test``, or ``val`` for tuning."""
    if config.evaluate_on == "test":
        return data.test
    if data.val is None:
        raise ValueError(f"evaluate_on: val, but {config.dataset} has no validation split")
    return data.val


def build_optimisation(
    model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int, device: torch.device
):
    """``(optimizer, scheduler, scaler)`` of ``config``; the scaler is ``None`` unless the
    run trains in float16 on CUDA."""
    optimizer = build_optimizer(
        model,
        config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = build_scheduler(
        optimizer,
        config.schedule,
        total_steps=config.total_steps(steps_per_epoch),
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        milestones=config.milestones,
        gamma=config.gamma,
    )
    fp16 = config.amp and device.type == "cuda" and config.amp_dtype in ("auto", "float16")
    scaler = torch.amp.GradScaler("cuda") if fp16 else None
    return optimizer, scheduler, scaler
