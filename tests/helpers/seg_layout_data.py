"""Synthetic segmentation sets written to disk in each layout the library reads.

Every image is drawn from its own label map: a pixel of train id ``c`` has the value
``PIXEL_OF[c]`` in every channel (ignored pixels are black), so a test can check that an
image and its mask stay aligned through any joint transform. Sizes vary, some images are
not square. The stored mask values are each layout's own (ADE20K's shifted labels,
Cityscapes' label ids, VOC's palette indices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((48, 64), (40, 40), (64, 48), (36, 52))  # (height, width): some not square
PIXEL_OF = (30, 110, 190)  # the value of train ids 0, 1, 2 in the images
CITYSCAPES_ID_OF = (7, 8, 11)  # road, sidewalk, building: train ids 0, 1, 2


def train_ids(index: int, size: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` train ids in {0, 1, 2} (255 on a border strip): three vertical bands
    whose edges move with ``index``."""
    height, width = size
    columns = np.arange(width)
    first, second = width // 3 + index % 5, 2 * width // 3 - index % 3
    labels = np.where(columns < first, 0, np.where(columns < second, 1, 2)).astype(np.uint8)
    labels = np.repeat(labels[None], height, axis=0)
    labels[: 2 + index % 2] = 255
    return labels


def image_of(labels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB image of a train-id map."""
    values = np.zeros(labels.shape, np.uint8)
    for train_id, value in enumerate(PIXEL_OF):
        values[labels == train_id] = value
    return np.repeat(values[..., None], 3, axis=2)


def _pairs(count: int, offset: int = 0):
    for index in range(offset, offset + count):
        labels = train_ids(index, SIZES[index % len(SIZES)])
        yield index, image_of(labels), labels


def write_segfolder(root: Path, count: int = 20, *, split: bool = False) -> Path:
    """``root/images`` + ``root/masks`` (or ``train/`` and ``val/`` with ``split``)."""
    folders = {"train": range(count), "val": range(count, count + count // 4)}
    if not split:
        folders = {".": range(count)}
    for folder, indices in folders.items():
        for kind in ("images", "masks"):
            (root / folder / kind).mkdir(parents=True, exist_ok=True)
        for index, image, labels in _pairs(len(indices), indices.start):
            Image.fromarray(image).save(root / folder / "images" / f"im{index:03d}.png")
            Image.fromarray(labels).save(root / folder / "masks" / f"im{index:03d}.png")
    return root


def write_ade20k(root: Path, count: int = 12) -> Path:
    """``ADEChallengeData2016``: JPEG images, PNG labels shifted by one (0 = other)."""
    base = root / "ADEChallengeData2016"
    for split, offset in (("training", 0), ("validation", count)):
        for kind in ("images", "annotations"):
            (base / kind / split).mkdir(parents=True, exist_ok=True)
        for index, image, labels in _pairs(count // 2 if offset else count, offset):
            stored = np.where(labels == 255, 0, labels + 1).astype(np.uint8)
            name = f"ADE_{split}_{index:08d}"
            Image.fromarray(image).save(base / "images" / split / f"{name}.jpg", quality=100)
            Image.fromarray(stored).save(base / "annotations" / split / f"{name}.png")
    return root


def write_cityscapes(root: Path, count: int = 12) -> Path:
    """``leftImg8bit`` + ``gtFine`` with label ids (unlabelled: id 0)."""
    for split, offset in (("train", 0), ("val", count)):
        for index, image, labels in _pairs(count // 2 if offset else count, offset):
            city = "aachen" if index % 2 else "bremen"
            stem = f"{city}_{index:06d}_000019"
            images = root / "leftImg8bit" / split / city
            targets = root / "gtFine" / split / city
            images.mkdir(parents=True, exist_ok=True)
            targets.mkdir(parents=True, exist_ok=True)
            ids = np.zeros(labels.shape, np.uint8)
            for train_id, label_id in enumerate(CITYSCAPES_ID_OF):
                ids[labels == train_id] = label_id
            Image.fromarray(image).save(images / f"{stem}_leftImg8bit.png")
            Image.fromarray(ids).save(targets / f"{stem}_gtFine_labelIds.png")
    return root


def write_voc(root: Path, count: int = 12) -> Path:
    """``VOCdevkit/VOC2012``: JPEG images, palette PNG masks (255 borders), split lists."""
    base = root / "VOCdevkit" / "VOC2012"
    for kind in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / kind).mkdir(parents=True, exist_ok=True)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253
    for split, offset in (("train", 0), ("val", count)):
        names = []
        for index, image, labels in _pairs(count // 2 if offset else count, offset):
            name = f"2007_{index:06d}"
            names.append(name)
            Image.fromarray(image).save(base / "JPEGImages" / f"{name}.jpg", quality=100)
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(palette)
            mask.save(base / "SegmentationClass" / f"{name}.png")
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names))
    return root
