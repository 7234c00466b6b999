"""Dense evidence: for one pixel of a segmentation, the training images (and their regions)
whose pixels lie nearest the sub-centroid that decided it.

A DNC pixel head labels a pixel with the class of its nearest sub-centroid
(:func:`~deepnc.explain.seg_maps.subcentroid_maps`). That sub-centroid is a mean of training
pixels, so the question "why this label here?" is answered by showing where in the
training images its pixels are: :func:`nearest_training_regions` scores every training
image by its best pixel's cosine to the sub-centroid and returns the best images with
the cosine map of their pixels and the region whose nearest sub-centroid it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deepnc.data.seg_files import collate_segmentation
from deepnc.explain.seg_maps import dense_head, subcentroid_maps

__all__ = ["PixelEvidence", "RegionEvidence", "explain_pixel", "nearest_training_regions"]


@dataclass
class RegionEvidence:
    """A training image near a sub-centroid.

    Attributes:
        index: its index in the training split.
        similarity: the best cosine of its pixels to the sub-centroid.
        map: ``(H, W)`` cosine of each pixel to the sub-centroid (upsampled bilinearly).
        region: ``(H, W)`` bool, the pixels whose nearest sub-centroid of all is this one.
    """

    index: int
    similarity: float
    map: torch.Tensor
    region: torch.Tensor


@dataclass
class PixelEvidence:
    """Why one pixel got its label: the deciding sub-centroid and its training regions."""

    pixel: tuple[int, int]
    label: int
    subcentroid: int
    similarity: float
    map: torch.Tensor  # (H, W) cosine of the input's pixels to the deciding sub-centroid
    regions: list[RegionEvidence]


def _cosine_maps(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(B, C*K, H, W)`` cosine of every pixel to every sub-centroid, at the input size."""
    head = model.classifier
    embedded = head.embed(model.embed(images))  # (B, h, w, D)
    cosines = (embedded @ head.subcentroids.flatten(0, 1).T).permute(0, 3, 1, 2)
    return F.interpolate(cosines, size=images.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def nearest_training_regions(
    model: nn.Module,
    dataset: Dataset,
    label: int,
    subcentroid: int,
    *,
    top: int = 4,
    batch_size: int = 16,
) -> list[RegionEvidence]:
    """The ``top`` training images whose pixels come nearest sub-centroid ``(label,
    subcentroid)``, best first.

    Args:
        model: a segmentation model with a DNC pixel head.
        dataset: the training split with evaluation transforms (``(image, mask)`` items).
    """
    head = dense_head(model)
    column = label * head.num_subcentroids + subcentroid
    device = head.subcentroids.device
    model.eval()
    found: list[RegionEvidence] = []
    loader = DataLoader(dataset, batch_size, shuffle=False, collate_fn=collate_segmentation)
    start = 0
    for images, _ in loader:
        batches = [images] if isinstance(images, torch.Tensor) else [i[None] for i in images]
        for batch in batches:
            cosines = _cosine_maps(model, batch.to(device)).cpu()
            nearest = cosines.argmax(1)  # (B, H, W) the nearest sub-centroid of each pixel
            for offset in range(len(batch)):
                own = cosines[offset, column]
                found.append(
                    RegionEvidence(start + offset, float(own.max()), own, nearest[offset] == column)
                )
                found = sorted(found, key=lambda e: -e.similarity)[:top]
            start += len(batch)
    return found


@torch.no_grad()
def explain_pixel(
    model: nn.Module,
    image: torch.Tensor,
    pixel: tuple[int, int],
    dataset: Dataset,
    *,
    top: int = 4,
) -> PixelEvidence:
    """The deciding sub-centroid of ``pixel`` ``(row, column)`` of ``image`` ``(C, H, W)``
    and the ``top`` training images nearest it (:func:`nearest_training_regions`).

    Raises:
        ValueError: the pixel lies outside the image, or the model has no DNC pixel head.
    """
    row, column = pixel
    height, width = image.shape[-2:]
    if not (0 <= row < height and 0 <= column < width):
        raise ValueError(f"pixel {pixel} lies outside the {height}x{width} image")
    head = dense_head(model)
    maps = subcentroid_maps(model, image[None].to(head.subcentroids.device))
    label = int(maps.predicted[0, row, column])
    k = int(maps.subcentroid[0, row, column])
    cosines = _cosine_maps(model, image[None].to(head.subcentroids.device))
    cosine_map = cosines[0, label * head.num_subcentroids + k]
    regions = nearest_training_regions(model, dataset, label, k, top=top)
    return PixelEvidence(
        pixel=(row, column),
        label=label,
        subcentroid=k,
        similarity=float(maps.similarity[0, row, column]),
        map=cosine_map.cpu(),
        regions=regions,
    )
