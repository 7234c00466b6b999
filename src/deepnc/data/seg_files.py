"""Segmentation data streamed from files: one image and its mask decoded per item.

Nothing is held in memory beyond the list of file pairs, so a set of any size costs the
same; in ``DataLoader`` workers the decoding overlaps the training step. A mask is a
single-channel image of label values (class-index PNGs, palette PNGs such as VOC's, or a
dataset's own label ids) mapped to train ids by an optional lookup table (Cityscapes'
ids, ADE20K's shifted labels); values outside ``[0, C)`` that are not the ignore index
are an error naming the file.

Training items go through :class:`~deepnc.data.seg_pipeline.SegmentationPipeline`
(fixed-size crops). Evaluation items are ``(image rescaled to the test scale, mask at the
file's own size)``, so the metrics are computed at full resolution; their sizes vary, so
batches of them are lists (:func:`collate_segmentation`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from deepnc.data.image_files import read_pixels
from deepnc.data.masks import check_mask_values
from deepnc.data.normalise import normalise
from deepnc.data.seg_pipeline import SegmentationPipeline, resize_for_eval

__all__ = ["MASK_MODES", "SegmentationFiles", "collate_segmentation", "read_mask"]

MASK_MODES = ("L", "P", "I", "I;16", "1")  # single-channel label images


def read_mask(path: str | Path, label_map: torch.Tensor | None = None) -> torch.Tensor:
    """int64 ``(H, W)`` label values of a mask file, through ``label_map`` if given.

    Args:
        label_map: ``(V,)`` int64 lookup table from stored values to train ids.

    Raises:
        ValueError: not a single-channel image, or a value beyond the lookup table.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in MASK_MODES:
                raise ValueError(
                    f"{path} must be a single-channel mask of class indices, got mode "
                    f"{image.mode!r}"
                )
            values = torch.from_numpy(np.array(image, dtype=np.int64))
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"{path}: cannot read mask ({error})") from error
    if label_map is None:
        return values
    if values.numel() and (values.min() < 0 or values.max() >= len(label_map)):
        raise ValueError(f"mask {path} holds values outside [0, {len(label_map)}) of its layout")
    return label_map[values]


class SegmentationFiles(Dataset):
    """Image and mask file pairs decoded per item.

    ``seeded_items = True``: the engine samples it through a
    :class:`~deepnc.data.samplers.SeededSampler`.

    Args:
        pairs: ``[(image path, mask path), ...]``.
        num_classes: C; mapped mask values must lie in ``[0, C)`` or be ``ignore_index``.
        channels: 1 or 3, the model's input channels.
        mean, std: per-channel normalisation of images scaled to ``[0, 1]``.
        ignore_index: the mask value of unlabelled pixels.
        label_map: optional ``(V,)`` int64 lookup from stored mask values to train ids.
        pipeline: the training augmentation; ``None`` for evaluation items.
        test_scale: ``(long, short)`` rescale of evaluation images (``None``: as stored).

    Items: ``(image (C, h, w) float32, mask (h, w) int64)``; the image is at crop size in
    training, at the test scale in evaluation, where the mask keeps the file's size.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        *,
        num_classes: int,
        channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        ignore_index: int = 255,
        label_map: torch.Tensor | None = None,
        pipeline: SegmentationPipeline | None = None,
        test_scale: tuple[int, int] | None = None,
    ) -> None:
        self.pairs = [(Path(image), Path(mask)) for image, mask in pairs]
        self.num_classes, self.channels = num_classes, channels
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = ignore_index
        self.label_map = label_map
        self.pipeline = pipeline
        self.test_scale = test_scale

    seeded_items = True

    def __len__(self) -> int:
        return len(self.pairs)

    def subset(self, indices: Sequence[int]) -> SegmentationFiles:
        """The same dataset over the pairs at ``indices``."""
        kept = copy.copy(self)
        kept.pairs = [self.pairs[i] for i in indices]
        return kept

    def raw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(uint8 pixels (C, H, W), int64 mask (H, W))`` as stored, checked."""
        image_path, mask_path = self.pairs[index]
        pixels = read_pixels(image_path, self.channels)
        mask = read_mask(mask_path, self.label_map)
        if pixels.shape[-2:] != mask.shape:
            raise ValueError(
                f"{image_path} is {pixels.shape[-1]}x{pixels.shape[-2]} but its mask "
                f"{mask_path} is {mask.shape[-1]}x{mask.shape[-2]}"
            )
        check_mask_values(mask, self.num_classes, self.ignore_index, f"mask {mask_path}")
        return pixels, mask

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``key``: an index, or ``(index, seed)`` from a
        :class:`~deepnc.data.samplers.SeededSampler` (the augmentation's seed)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        pixels, mask = self.raw(index)
        if self.pipeline is not None:
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            pixels, mask = self.pipeline(pixels, mask, generator)
        else:
            pixels = resize_for_eval(pixels, self.test_scale)
        return normalise(pixels, self.mean, self.std), mask


def collate_segmentation(items: list[tuple[torch.Tensor, torch.Tensor]]):
    """Stack ``(image, mask)`` items into ``(B, C, H, W)``, ``(B, H, W)`` when all sizes
    agree; else keep them as lists (full-resolution evaluation of images of many sizes)."""
    if len({(image.shape, mask.shape) for image, mask in items}) == 1:
        return default_collate(items)
    return [image for image, _ in items], [mask for _, mask in items]
