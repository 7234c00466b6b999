"""``segfolder``: your own segmentation data, as a folder of images and a folder of masks.

Layout: ``ROOT/train/images/<name>.<ext>`` with ``ROOT/train/masks/<name>.png``, and the
same under ``ROOT/val/`` (or ``ROOT/test/``). A mask is a single-channel PNG whose pixel
values are class indices in ``[0, num_classes)``, or the ignore index (255 by default)
for unlabelled pixels. Images of any size are resized to ``image_size`` (bilinear),
masks to the same size (nearest neighbour). Both are read once into memory as uint8
(``N * S * S * (channels + 1)`` bytes), which suits the small sets a 2-core machine
trains on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from deepnc.data.base import DatasetSplits, channel_stats
from deepnc.data.image_files import IMAGE_SUFFIXES
from deepnc.data.imagefolder import UnreadableImageError
from deepnc.data.masks import MaskedImageDataset, check_mask_values

__all__ = ["load_segfolder"]

_LAYOUT = (
    "expected ROOT/train/images/<name>.<ext> with ROOT/train/masks/<name>.png, and the same "
    "under ROOT/val/ (or ROOT/test/)"
)


def load_segfolder(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    num_classes: int | None = None,
    ignore_index: int = 255,
    channels: int | None = None,
    class_names: list[str] | None = None,
) -> DatasetSplits:
    """Load a segmentation folder (see the module docstring for the layout).

    Args:
        root: the folder; required.
        image_size: side of the square images and masks after resizing (default 64).
        augment: random joint horizontal flips of the train split.
        num_classes: C, required: mask values must lie in ``[0, C)`` or be ``ignore_index``.
        ignore_index: mask value of unlabelled pixels (left out of loss, metrics and
            clustering).
        channels: 1 or 3; default: 1 when the first image is greyscale, else 3.
        class_names: C names (default ``class0``, ``class1``, ...).

    Raises:
        ValueError: a missing ``num_classes``, masks with other values (naming the file
            and the values), an image and mask of different sizes (naming the pair),
            images without masks (listing them).
        FileNotFoundError: the folder or one of its splits is missing.
    """
    if root is None:
        raise ValueError(f"the segfolder dataset needs --data-root: {_LAYOUT}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            "segfolder needs the class count: dataset_options: {num_classes: C} (C >= 2), "
            f"got {num_classes!r}"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
    root_path = Path(root)
    train_dir = root_path / "train"
    test_dir = next((root_path / n for n in ("val", "test") if (root_path / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(f"{root} lacks train/ or val/ (test/): {_LAYOUT}")
    size = image_size or 64
    pairs = {split: _pairs(folder) for split, folder in (("train", train_dir), ("test", test_dir))}
    if channels is None:
        channels = 1 if _open(pairs["train"][0][0]).mode in ("L", "1", "I;16", "I") else 3
    loaded = {
        split: _read(split_pairs, size, channels, num_classes, ignore_index)
        for split, split_pairs in pairs.items()
    }
    mean, std = channel_stats(loaded["train"][0])
    return DatasetSplits(
        name="segfolder",
        train=MaskedImageDataset(*loaded["train"], mean=mean, std=std, flip=augment),
        test=MaskedImageDataset(*loaded["test"], mean=mean, std=std),
        num_classes=num_classes,
        in_channels=channels,
        image_size=size,
        class_names=list(class_names or [f"class{i}" for i in range(num_classes)]),
        mean=mean,
        std=std,
        task="segmentation",
        ignore_index=ignore_index,
    )


def _pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise FileNotFoundError(f"{split_dir} needs images/ and masks/ folders: {_LAYOUT}")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no images in {images_dir}: {_LAYOUT}")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise ValueError(
            f"{len(missing)} image(s) in {images_dir} have no mask in {masks_dir}: {shown}"
        )
    return [(image, masks[image.stem]) for image in images]


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise UnreadableImageError(f"cannot read {path}: {error}") from error


def _read(pairs, size: int, channels: int, num_classes: int, ignore_index: int):
    """``(images (N, channels, S, S) uint8, masks (N, S, S) int16)``, every pair checked."""
    images = torch.empty(len(pairs), channels, size, size, dtype=torch.uint8)
    masks = torch.empty(len(pairs), size, size, dtype=torch.int16)
    for index, (image_path, mask_path) in enumerate(pairs):
        image = _open(image_path)
        mask_image = _open(mask_path)
        if image.size != mask_image.size:
            raise ValueError(
                f"{image_path} is {image.size[0]}x{image.size[1]} but its mask {mask_path} is "
                f"{mask_image.size[0]}x{mask_image.size[1]}"
            )
        if mask_image.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(
                f"{mask_path} must be a single-channel mask of class indices, got mode "
                f"{mask_image.mode!r}"
            )
        mask = torch.from_numpy(np.array(mask_image, dtype=np.int64))
        check_mask_values(mask, num_classes, ignore_index, f"mask {mask_path}")
        pixels = np.array(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
        tensor = torch.from_numpy(pixels).reshape(*pixels.shape[:2], channels).permute(2, 0, 1)
        if tensor.shape[-2:] != (size, size):
            tensor = F.interpolate(
                tensor[None].float(), (size, size), mode="bilinear", antialias=True
            )
            tensor = tensor[0].round().clamp(0, 255).to(torch.uint8)
            mask = F.interpolate(mask[None, None].float(), (size, size), mode="nearest-exact")[0, 0]
        images[index], masks[index] = tensor, mask.to(torch.int16)
    return images, masks
