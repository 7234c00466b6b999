"""The standard segmentation pipeline, on an image and its mask together (torchvision v2).

Training (mmsegmentation's recipe for ADE20K and Cityscapes): rescale at random to
``ratio_range`` times a base ``scale``, keeping the aspect ratio; pad to the crop size
(image with 0, mask with the ignore index); crop at random, retrying up to 10 times while
one class covers more than ``cat_max_ratio`` of the labelled pixels; flip horizontally;
distort brightness, contrast, saturation and hue (each with probability 0.5, the ranges
of torchvision's ``RandomPhotometricDistort``). Every draw comes from one generator, so
an item's augmentation is a function of its seed, whichever worker process makes it.
Evaluation: only the rescale to the base scale (no randomness), the mask left at its
original size so that the metrics are computed there.

Scales are ``(long side, short side)`` bounds as in mmsegmentation: ``(2048, 512)``
rescales an image so that its long side is at most 2048 and its short side at most 512,
whichever binds first, in either orientation.

>>> pipeline = SegmentationPipeline(crop_size=(8, 8), scale=None, photometric=False)
>>> image, mask = pipeline(torch.zeros(3, 5, 12, dtype=torch.uint8), torch.ones(5, 12))
>>> image.shape, mask.shape, int(mask.max())  # padded with the ignore index
(torch.Size([3, 8, 8]), torch.Size([8, 8]), 255)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

__all__ = ["CROP_TRIES", "SegmentationPipeline", "rescale_size", "resize_for_eval"]

CROP_TRIES = 10  # crops tried before one class's share is allowed over cat_max_ratio
# Photometric ranges (torchvision's RandomPhotometricDistort), each applied with p = 0.5.
BRIGHTNESS, CONTRAST, SATURATION, HUE = (0.875, 1.125), (0.5, 1.5), (0.5, 1.5), (-0.05, 0.05)


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` after a keep-ratio rescale to ``scale = (long, short)`` bounds.

    >>> rescale_size(1024, 2048, (2048, 512)), rescale_size(600, 400, (2048, 512))
    ((512, 1024), (768, 512))
    """
    long_bound, short_bound = scale
    factor = min(long_bound / max(height, width), short_bound / min(height, width))
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_for_eval(image: torch.Tensor, scale: tuple[int, int] | None) -> torch.Tensor:
    """uint8 ``(C, H, W)`` rescaled to ``scale`` (keep ratio, bilinear); as is for ``None``."""
    if scale is None:
        return image
    size = rescale_size(*image.shape[-2:], scale)
    if size == tuple(image.shape[-2:]):
        return image
    return TF.resize(tv_tensors.Image(image), list(size), antialias=True).as_subclass(torch.Tensor)


@dataclass(frozen=True)
class SegmentationPipeline:
    """Training augmentation of an image and its mask, applied together.

    Args:
        crop_size: ``(height, width)`` of the training crops.
        scale: ``(long, short)`` base scale of the random rescale; ``None``: the
            image's own size.
        ratio_range: the rescale draws a factor of the base scale from this range.
        cat_max_ratio: a crop is redrawn (up to 10 times) while one class covers more
            than this share of its labelled pixels; 1 disables the check.
        flip: flip horizontally with probability 0.5.
        photometric: random brightness, contrast, saturation and hue (torchvision's
            ``RandomPhotometricDistort``; brightness and contrast only for greyscale).
        ignore_index: the mask value of padding.

    Call it with uint8 ``(C, H, W)`` pixels, an integer ``(H, W)`` mask and optionally a
    ``torch.Generator`` (default: torch's global one); it returns both cropped to
    ``crop_size``.
    """

    crop_size: tuple[int, int] = (512, 512)
    scale: tuple[int, int] | None = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip: bool = True
    photometric: bool = True
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be (height, width) >= 1, got {self.crop_size}")
        if self.scale is not None and (len(self.scale) != 2 or min(self.scale) < 1):
            raise ValueError(f"scale must be (long, short) >= 1 or null, got {self.scale}")
        low, high = self.ratio_range
        if not 0 < low <= high:
            raise ValueError(
                f"ratio_range must be (low, high) with 0 < low <= high, got {low, high}"
            )
        if not 0 < self.cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must lie in (0, 1], got {self.cat_max_ratio}")

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(uint8 (C, h, w), int64 (h, w))`` with ``(h, w) = crop_size``."""
        draw = _Draws(generator)
        image, mask = tv_tensors.Image(image), tv_tensors.Mask(mask.long())
        image, mask = self._rescale(image, mask, draw)
        image, mask = self._pad(image, mask)
        top, left = self._crop_corner(mask, draw)
        height, width = self.crop_size
        image = TF.crop(image, top, left, height, width)
        mask = TF.crop(mask, top, left, height, width)
        if self.flip and draw.uniform() < 0.5:
            image, mask = TF.horizontal_flip(image), TF.horizontal_flip(mask)
        if self.photometric:
            image = _distort(image, draw)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def _rescale(self, image, mask, draw: _Draws):
        height, width = image.shape[-2:]
        base = self.scale or (max(height, width), min(height, width))
        ratio = draw.uniform(*self.ratio_range)
        size = rescale_size(height, width, (base[0] * ratio, base[1] * ratio))
        if size == (height, width):
            return image, mask
        return TF.resize(image, list(size), antialias=True), TF.resize(mask, list(size))

    def _pad(self, image, mask):
        """Pad right and bottom up to the crop size: image 0, mask the ignore index."""
        missing_h = max(0, self.crop_size[0] - image.shape[-2])
        missing_w = max(0, self.crop_size[1] - image.shape[-1])
        if not missing_h and not missing_w:
            return image, mask
        padding = [0, 0, missing_w, missing_h]  # left, top, right, bottom
        return TF.pad(image, padding, fill=0), TF.pad(mask, padding, fill=self.ignore_index)

    def _crop_corner(self, mask: torch.Tensor, draw: _Draws) -> tuple[int, int]:
        """``(top, left)`` of a crop whose largest class keeps under ``cat_max_ratio``."""
        height, width = self.crop_size
        spare_h, spare_w = mask.shape[-2] - height, mask.shape[-1] - width
        corner = (0, 0)
        for _ in range(CROP_TRIES):
            corner = (draw.integer(spare_h + 1), draw.integer(spare_w + 1))
            if self.cat_max_ratio >= 1:
                break
            window = mask[corner[0] : corner[0] + height, corner[1] : corner[1] + width]
            labelled = window[window != self.ignore_index]
            counts = torch.bincount(labelled.flatten()) if labelled.numel() else labelled
            counts = counts[counts > 0]
            if counts.numel() > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                break
        return corner


class _Draws:
    """Uniform draws from one generator (``None``: torch's global one)."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def integer(self, high: int) -> int:
        return int(torch.randint(high, (), generator=self.generator))


def _distort(image: torch.Tensor, draw: _Draws) -> torch.Tensor:
    """Brightness, contrast, saturation and hue, each with probability 0.5 (contrast first
    or last at random); greyscale images get brightness and contrast only."""
    colour = image.shape[0] == 3
    factors = {
        name: draw.uniform(*bounds) if draw.uniform() < 0.5 else None
        for name, bounds in (
            ("brightness", BRIGHTNESS),
            ("contrast", CONTRAST),
            ("saturation", SATURATION),
            ("hue", HUE),
        )
    }
    contrast_first = draw.uniform() < 0.5
    if factors["brightness"] is not None:
        image = TF.adjust_brightness(image, factors["brightness"])
    if factors["contrast"] is not None and contrast_first:
        image = TF.adjust_contrast(image, factors["contrast"])
    if colour and factors["saturation"] is not None:
        image = TF.adjust_saturation(image, factors["saturation"])
    if colour and factors["hue"] is not None:
        image = TF.adjust_hue(image, factors["hue"])
    if factors["contrast"] is not None and not contrast_first:
        image = TF.adjust_contrast(image, factors["contrast"])
    return image
