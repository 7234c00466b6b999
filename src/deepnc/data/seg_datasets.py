"""Segmentation sets streamed from files: ``segfolder`` (yours), ``ade20k``, ``cityscapes``
and ``voc``, each with the standard training pipeline and full-resolution evaluation.

The layouts are :mod:`deepnc.data.seg_layouts`'s, the pipeline
:class:`~deepnc.data.seg_pipeline.SegmentationPipeline` (every knob a dataset option:
``crop_size``, ``scale``, ``ratio_range``, ``cat_max_ratio``, ``flip``, ``photometric``,
``test_scale``), the items :class:`~deepnc.data.seg_files.SegmentationFiles`. Memory does
not grow with the set: only file names are held.

Defaults follow mmsegmentation's recipes: ADE20K and VOC crop 512x512 from images
rescaled around (2048, 512); Cityscapes crops 512x1024 around (2048, 1024); evaluation
images are rescaled to that base scale and scored against masks at their own size.
``segfolder`` keeps each image's own size as the base scale and crops ``image_size``
squares (512 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from deepnc.data.base import DatasetSplits
from deepnc.data.image_files import read_pixels
from deepnc.data.seg_files import SegmentationFiles
from deepnc.data.seg_layouts import (
    SegmentationLayout,
    ade20k_layout,
    cityscapes_layout,
    segfolder_layout,
    voc_layout,
)
from deepnc.data.seg_pipeline import SegmentationPipeline

__all__ = ["PIPELINE_OPTIONS", "load_ade20k", "load_cityscapes", "load_segfolder", "load_voc"]

# dataset_options of a streamed set beyond its loader's own keywords
PIPELINE_OPTIONS = (
    "crop_size",
    "scale",
    "ratio_range",
    "cat_max_ratio",
    "flip",
    "photometric",
    "test_scale",
)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STATS_IMAGES = 64  # training images sampled for a segfolder's channel statistics
SIZE_PROBE = 64  # training images whose smallest side sets a segfolder's default crop
MAX_CROP = 512  # the default crop side of a segfolder of large images


def load_segfolder(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    seed: int = 0,
    num_classes: int | None = None,
    ignore_index: int = 255,
    channels: int | None = None,
    class_names: list[str] | None = None,
    val_fraction: float = 0.2,
    **pipeline: Any,
) -> DatasetSplits:
    """Your own folder of images and masks (see :func:`~deepnc.data.seg_layouts.segfolder_layout`).

    Args:
        root: the folder; required.
        image_size: side of the square training crops unless ``crop_size`` is given;
            default: the smallest side among the first :data:`SIZE_PROBE` training
            images, at most 512 (so small tiles train at their own size).
        augment: the training pipeline; without it, training items are evaluation items.
        seed: seeds the split of a single ``images/`` + ``masks/`` tree.
        num_classes: C, required: mask values lie in ``[0, C)`` or are ``ignore_index``.
        ignore_index: mask value of unlabelled pixels (left out of loss, metrics and
            clustering).
        channels: 1 or 3; default: 1 when the first image is greyscale, else 3.
        class_names: C names (default ``class0``, ``class1``, ...).
        val_fraction: share of a single tree held out for evaluation.
        **pipeline: :class:`~deepnc.data.seg_pipeline.SegmentationPipeline` options, and
            ``test_scale``; ``scale`` defaults to ``None`` (each image's own size).

    Raises:
        ValueError: a missing ``num_classes``, wrong class names, images without masks.
        FileNotFoundError: the folder or its layout is missing.
    """
    if root is None:
        raise ValueError("the segfolder dataset needs --data_root: a folder of images and masks")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            "segfolder needs the class count: dataset_options: {num_classes: C} (C >= 2), "
            f"got {num_classes!r}"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
    layout = segfolder_layout(root, val_fraction=val_fraction, seed=seed, ignore_index=ignore_index)
    layout.class_names = list(class_names or [f"class{i}" for i in range(num_classes)])
    if channels is None:
        with Image.open(layout.train[0][0]) as first:
            channels = 1 if first.mode in ("L", "1", "I;16", "I") else 3
    pipeline.setdefault("scale", None)
    side = image_size or min(MAX_CROP, *(_smaller_side(p) for p, _ in layout.train[:SIZE_PROBE]))
    pipeline.setdefault("crop_size", (side, side))
    mean, std = _channel_stats(layout, channels)
    return _splits("segfolder", layout, channels, mean, std, augment, pipeline)


def _smaller_side(path) -> int:
    with Image.open(path) as image:  # reads the header only
        return min(image.size)


def load_ade20k(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    **pipeline: Any,
) -> DatasetSplits:
    """ADE20K (``ADEChallengeData2016``): 150 classes, 512x512 crops around (2048, 512)."""
    layout = ade20k_layout(_required(root, "ade20k", "the folder holding ADEChallengeData2016"))
    return _standard("ade20k", layout, image_size, augment, pipeline, (512, 512), (2048, 512))


def load_cityscapes(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    **pipeline: Any,
) -> DatasetSplits:
    """Cityscapes (fine): the 19 train ids, 512x1024 crops around (2048, 1024)."""
    layout = cityscapes_layout(_required(root, "cityscapes", "the folder holding leftImg8bit"))
    return _standard("cityscapes", layout, image_size, augment, pipeline, (512, 1024), (2048, 1024))


def load_voc(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    year: str = "2012",
    **pipeline: Any,
) -> DatasetSplits:
    """Pascal VOC: 21 classes, 512x512 crops around (2048, 512)."""
    layout = voc_layout(_required(root, "voc", "the folder holding VOCdevkit"), year=year)
    return _standard("voc", layout, image_size, augment, pipeline, (512, 512), (2048, 512))


def _required(root: str | None, name: str, what: str) -> str:
    if root is None:
        raise ValueError(f"the {name} dataset needs --data_root: {what}")
    return root


def _standard(name, layout, image_size, augment, pipeline, crop, scale) -> DatasetSplits:
    """An RGB set with ImageNet statistics and the recipe's crop and scale as defaults."""
    if image_size is not None and "crop_size" not in pipeline:
        crop = (image_size, image_size)
    pipeline = {"crop_size": crop, "scale": scale, "test_scale": scale} | pipeline
    return _splits(name, layout, 3, IMAGENET_MEAN, IMAGENET_STD, augment, pipeline)


def _splits(
    name: str,
    layout: SegmentationLayout,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool,
    options: dict[str, Any],
) -> DatasetSplits:
    options = {key: tuple(v) if isinstance(v, list) else v for key, v in options.items()}
    test_scale = options.pop("test_scale", None)
    try:
        pipeline = SegmentationPipeline(ignore_index=layout.ignore_index, **options)
    except TypeError as error:
        raise ValueError(f"unknown {name} pipeline option: {error}") from error
    common = dict(
        num_classes=len(layout.class_names),
        channels=channels,
        mean=mean,
        std=std,
        ignore_index=layout.ignore_index,
        label_map=layout.label_map,
    )
    train = SegmentationFiles(
        layout.train, pipeline=pipeline if augment else None, test_scale=test_scale, **common
    )
    return DatasetSplits(
        name=name,
        train=train,
        test=SegmentationFiles(layout.test, test_scale=test_scale, **common),
        num_classes=len(layout.class_names),
        in_channels=channels,
        image_size=max(pipeline.crop_size),
        class_names=list(layout.class_names),
        mean=tuple(mean),
        std=tuple(std),
        task="segmentation",
        ignore_index=layout.ignore_index,
        full_resolution=True,
        test_scale=test_scale,
    )


def _channel_stats(layout: SegmentationLayout, channels: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std of up to ``STATS_IMAGES`` training images (evenly spaced,
    so the same every run), in ``[0, 1]``."""
    step = max(1, len(layout.train) // STATS_IMAGES)
    sums = torch.zeros(3, channels, dtype=torch.float64)  # count, sum, sum of squares
    for image_path, _ in layout.train[::step][:STATS_IMAGES]:
        pixels = read_pixels(image_path, channels).double().flatten(1) / 255
        count = torch.full((channels,), pixels.shape[1], dtype=torch.float64)
        sums += torch.stack([count, pixels.sum(1), (pixels**2).sum(1)])
    count, total, squares = sums
    mean = total / count
    std = (squares / count - mean**2).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
