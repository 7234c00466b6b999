"""Images with per-pixel label masks, held in memory: the item type of segmentation sets.

>>> images = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
>>> masks = torch.zeros(2, 8, 8, dtype=torch.uint8)
>>> image, mask = MaskedImageDataset(images, masks, mean=(0.5,), std=(0.5,))[0]
>>> image.shape, mask.shape, mask.dtype
(torch.Size([1, 8, 8]), torch.Size([8, 8]), torch.int64)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from deepnc.data.normalise import normalise

__all__ = ["MaskedImageDataset", "check_mask_values", "random_subset", "resize_masks"]


class MaskedImageDataset(Dataset):
    """Images and their label masks in memory, with an optional joint horizontal flip.

    Args:
        images: ``(N, C, H, W)`` uint8.
        masks: ``(N, H, W)`` integer class indices (uint8 or int16/int32/int64); the
            ignore index may appear.
        mean, std: per-channel normalisation of images scaled to ``[0, 1]``.
        flip: flip image and mask together, at random (torch's global generator, which
            the engine re-seeds every epoch).

    Items are ``(image (C, H, W) float32, mask (H, W) int64)``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        flip: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if masks.ndim != 3 or masks.shape[0] != images.shape[0]:
            raise ValueError(
                f"masks must be (N, H, W) with N = {images.shape[0]}, got {tuple(masks.shape)}"
            )
        if masks.shape[1:] != images.shape[2:]:
            raise ValueError(
                f"masks are {tuple(masks.shape[1:])} but images are {tuple(images.shape[2:])}"
            )
        if masks.is_floating_point():
            raise ValueError(f"masks must hold integer class indices, got {masks.dtype}")
        self.images = images
        self.masks = masks
        self.flip = flip
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.flip and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        image = normalise(image, self.mean, self.std)
        return image, mask.long()


def check_mask_values(
    mask: torch.Tensor, num_classes: int, ignore_index: int | None, where: str
) -> None:
    """Raise ``ValueError`` naming ``where`` and the bad values when a mask holds values
    outside ``[0, num_classes)`` other than ``ignore_index``."""
    values = torch.unique(mask)
    bad = values[(values < 0) | (values >= num_classes)]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.numel():
        allowed = f"[0, {num_classes})" + (
            f" or the ignore index {ignore_index}" if ignore_index is not None else ""
        )
        raise ValueError(f"{where} holds values {bad.tolist()[:10]}; allowed: {allowed}")


def resize_masks(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` integer masks resized to ``(N, size, size)`` (or ``(N, *size)``) by
    nearest neighbour."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    resized = F.interpolate(masks.unsqueeze(1).float(), size=size, mode="nearest-exact")
    return resized.squeeze(1).round().to(masks.dtype)


def random_subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    """A seeded random subset of ``size`` items (the whole set if it is smaller): the
    dataset's own ``subset(indices)`` where it has one, else a ``Subset``."""
    if size >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(dataset), generator=generator)[:size].sort().values.tolist()
    return dataset.subset(keep) if hasattr(dataset, "subset") else Subset(dataset, keep)
