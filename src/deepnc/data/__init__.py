"""Datasets by name: ``list_datasets()`` and ``load_dataset(name, ...)``.

>>> from deepnc.data import list_datasets
>>> "fashion-mnist" in list_datasets()
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from deepnc.data.base import (
    DatasetSplits,
    ImageTensorDataset,
    dataset_labels,
    hold_out,
    take_subset,
    validate_split,
)
from deepnc.data.classes import ClassSubset, select_classes
from deepnc.data.imagefolder import UnreadableImageError, load_imagefolder
from deepnc.data.in_memory import (
    load_cifar,
    load_digits,
    load_fake,
    load_fashion_mnist,
    load_mnist,
)
from deepnc.data.masks import MaskedImageDataset, random_subset
from deepnc.data.scenes import compose_scenes, load_fashion_scenes
from deepnc.data.seg_datasets import (
    PIPELINE_OPTIONS,
    load_ade20k,
    load_cityscapes,
    load_segfolder,
    load_voc,
)
from deepnc.utils.suggest import did_you_mean

__all__ = [
    "ClassSubset",
    "DatasetSplits",
    "ImageTensorDataset",
    "MaskedImageDataset",
    "UnreadableImageError",
    "compose_scenes",
    "dataset_labels",
    "hold_out",
    "list_datasets",
    "load_dataset",
    "select_classes",
    "take_subset",
    "validate_split",
]

_DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "fashion-mnist": load_fashion_mnist,
    "digits": load_digits,
    "mnist": load_mnist,
    "cifar10": partial(load_cifar, 10),
    "cifar100": partial(load_cifar, 100),
    "imagefolder": load_imagefolder,
    "fake": load_fake,
    "fashion-scenes": load_fashion_scenes,
    "segfolder": load_segfolder,
    "ade20k": load_ade20k,
    "cityscapes": load_cityscapes,
    "voc": load_voc,
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_DATASETS)


def load_dataset(
    name: str,
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    train_subset: int | None = None,
    test_subset: int | None = None,
    validation_size: int | None = None,
    seed: int = 0,
    **options,
) -> DatasetSplits:
    """Load a dataset of the registry, validated and optionally subsampled.

    Args:
        name: one of :func:`list_datasets`.
        root: where the data lives (needed for ``cifar10``, ``cifar100``, ``mnist`` and
            ``imagefolder``; optional for ``fashion-mnist``).
        download: let torchvision download a missing set (needs the internet).
        image_size: resize images to this side (default: the set's own size).
        augment: random crops and flips on the train split.
        train_subset: keep a subset of this many training images (class-balanced for
            classification, uniformly drawn for segmentation).
        test_subset: keep a subset of this many test images, drawn the same way but
            always with seed 0, so runs of every seed are scored on the same images.
        validation_size: hold this many training images out as the validation split
            (``splits.val``), class-balanced and always drawn with seed 0, so that
            runs of every seed are tuned on the same images and never train on them;
            ``train_subset`` is then drawn from the rest. Classification sets only
            (fashion-scenes has its own ``val_size`` option).
        seed: seed of the subset (and of an imagefolder's split).
        **options: dataset-specific keywords (``channels`` for imagefolder,
            ``num_classes`` / ``train_size`` / ``test_size`` for fake, ``num_classes`` /
            ``ignore_index`` / ``channels`` / ``class_names`` / ``val_fraction`` for
            segfolder, the pipeline's ``crop_size`` / ``scale`` / ``ratio_range`` /
            ``cat_max_ratio`` / ``flip`` / ``photometric`` / ``test_scale`` for segfolder,
            ade20k, cityscapes and voc,
            ``train_size`` / ``val_size`` / ``test_size`` / ``items_per_scene`` /
            ``scene_seed`` for fashion-scenes); ``classes`` (any classification set)
            keeps those classes, relabelled in the order given.

    Raises:
        ValueError: unknown name (the message lists the valid ones), empty splits,
            labels outside ``[0, C)``.
        FileNotFoundError: the data is missing; the message says how to get it.
    """
    if name not in _DATASETS:
        hint = did_you_mean(name, _DATASETS)
        raise ValueError(f"unknown dataset {name!r}; valid names: {list_datasets()}.{hint}")
    loader = _DATASETS[name]
    classes = options.pop("classes", None)
    parameters = inspect.signature(loader).parameters
    accepted = {n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    if len(accepted) < len(parameters):  # a streamed segmentation set: **pipeline
        accepted |= set(PIPELINE_OPTIONS)
    unknown = sorted(set(options) - accepted)
    if unknown:
        allowed = sorted(accepted - {"root", "download", "image_size", "augment", "seed"})
        raise ValueError(f"dataset {name!r} does not take options {unknown}; it takes {allowed}")
    if "seed" in accepted:
        options["seed"] = seed

    def load(augment: bool) -> DatasetSplits:
        loaded = loader(
            root=root, download=download, image_size=image_size, augment=augment, **options
        )
        return loaded if classes is None else select_classes(loaded, classes)

    splits = load(augment)
    if validation_size is not None:
        if splits.task != "classification":
            raise ValueError(
                f"validation_size holds out classification images; {name} is {splits.task}"
            )
        # the validation images come unaugmented, as test images do
        plain = load(augment=False).train if augment else splits.train
        splits.train, splits.val = hold_out(splits.train, validation_size, plain)
    subset = take_subset if splits.task == "classification" else random_subset
    for split, size, subset_seed in (("train", train_subset, seed), ("test", test_subset, 0)):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{split}_subset must be a positive number of images, got {size!r}")
        setattr(splits, split, subset(getattr(splits, split), size, subset_seed))
    if splits.task == "classification":
        if splits.val is not None:
            validate_split(splits.val, splits.num_classes, f"the validation split of {name}")
        validate_split(splits.train, splits.num_classes, f"the train split of {name}")
        validate_split(splits.test, splits.num_classes, f"the test split of {name}")
    else:  # masks are checked as they are read
        for split in ("train", "test"):
            if len(getattr(splits, split)) == 0:
                raise ValueError(f"the {split} split of {name} is empty")
    return splits
