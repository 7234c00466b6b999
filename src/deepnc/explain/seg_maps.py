"""Dense explanations: which sub-centroid each pixel of a predicted mask matched.

For a segmentation model with a DNC pixel head, a pixel's class is the class of its
nearest sub-centroid. :func:`subcentroid_maps` returns, per pixel, the predicted class
(exactly the model's prediction) and which of that class's K sub-centroids it matched;
:func:`plot_subcentroid_map` draws image, truth, prediction and that map, one colour per
class and one shade per sub-centroid within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import hsv_to_rgb
from torch import nn

from deepnc.data.normalise import to_pixels
from deepnc.nn.head import DNCHead
from deepnc.plots.seg_plots import class_colours, colour_masks, imshow

__all__ = [
    "SubCentroidMaps",
    "dense_head",
    "plot_pixel_evidence",
    "plot_subcentroid_map",
    "subcentroid_maps",
]


@dataclass
class SubCentroidMaps:
    """Per-pixel evidence, at the input resolution.

    Attributes:
        predicted: ``(B, H, W)`` int64, the model's predicted class.
        subcentroid: ``(B, H, W)`` int64 in ``[0, K)``, the matched sub-centroid of the
            predicted class.
        similarity: ``(B, H, W)`` its cosine similarity (bilinearly upsampled).
    """

    predicted: torch.Tensor
    subcentroid: torch.Tensor
    similarity: torch.Tensor

    def usage(self, num_classes: int, num_subcentroids: int) -> torch.Tensor:
        """``(C, K)`` pixel counts per sub-centroid over the batch."""
        flat = self.predicted.flatten() * num_subcentroids + self.subcentroid.flatten()
        counts = torch.bincount(flat, minlength=num_classes * num_subcentroids)
        return counts.view(num_classes, num_subcentroids)


def dense_head(model: nn.Module) -> DNCHead:
    """The DNC pixel head of a segmentation model (its ``classifier``).

    Raises:
        ValueError: the model is not a segmentation model with a DNC pixel head.
    """
    head = getattr(model, "classifier", None)
    if not isinstance(head, DNCHead) or not hasattr(model, "embed"):
        raise ValueError("dense explanations need a segmentation model with a DNC pixel head")
    return head


@torch.no_grad()
def subcentroid_maps(model: nn.Module, images: torch.Tensor) -> SubCentroidMaps:
    """Run a DNC segmentation model and say which sub-centroid every pixel matched.

    Args:
        model: a :class:`~deepnc.models.SegmentationModel` whose ``classifier`` is a
            :class:`~deepnc.DNCHead` (in eval mode or not: nothing is updated).
        images: ``(B, C_in, H, W)`` normalised images.

    Raises:
        ValueError: the model has no DNC pixel head.
    """
    head = dense_head(model)
    was_training = model.training
    model.eval()
    try:
        features = model.embed(images)  # (B, D, h, w)
        embedded = head.embed(features)  # (B, h, w, D)
        cosines = embedded @ head.subcentroids.flatten(0, 1).T  # (B, h, w, C*K)
        cosines = cosines.permute(0, 3, 1, 2)
        size = images.shape[-2:]
        upsampled = F.interpolate(cosines, size=size, mode="bilinear", align_corners=False)
        upsampled = upsampled.unflatten(1, (head.num_classes, head.num_subcentroids))
        # The model's own prediction: argmax over classes of the upsampled class logits.
        class_scores = F.interpolate(
            cosines.unflatten(1, (head.num_classes, head.num_subcentroids)).amax(2),
            size=size,
            mode="bilinear",
            align_corners=False,
        )
        predicted = class_scores.argmax(1)  # (B, H, W)
        own = upsampled.gather(
            1, predicted[:, None, None].expand(-1, 1, head.num_subcentroids, -1, -1)
        )
        similarity, subcentroid = own[:, 0].max(1)
    finally:
        model.train(was_training)
    return SubCentroidMaps(predicted, subcentroid, similarity)


def _shades(colour: np.ndarray, count: int) -> np.ndarray:
    """``(count, 3)`` shades of one colour, from light to dark."""
    hsv = matplotlib.colors.rgb_to_hsv(colour)
    if count == 1:
        return colour[None]
    values = np.linspace(1.0, 0.35, count)
    grey = hsv[1] < 0.05  # a grey stays grey, in K brightnesses
    saturation = np.zeros(count) if grey else np.linspace(0.35, 1.0, count)
    if grey:
        values = np.linspace(0.85, 0.1, count)
    return hsv_to_rgb(np.stack([np.full(count, hsv[0]), saturation, values], 1))


def plot_subcentroid_map(
    image: torch.Tensor,
    maps: SubCentroidMaps,
    index: int,
    *,
    class_names: Sequence[str],
    num_subcentroids: int,
    mean: Sequence[float],
    std: Sequence[float],
    path: str | Path,
    truth: torch.Tensor | None = None,
    ignore_index: int | None = None,
) -> None:
    """Image | truth | prediction | matched sub-centroid, for item ``index`` of ``maps``.

    In the last panel each class keeps its colour, in K shades: pixels of the same shade
    matched the same sub-centroid. A legend lists the classes present and how many
    pixels each of their sub-centroids took.
    """
    num_classes = len(class_names)
    predicted = maps.predicted[index].cpu()
    matched = maps.subcentroid[index].cpu()
    palette = class_colours(num_classes)
    shades = np.stack([_shades(palette[c], num_subcentroids) for c in range(num_classes)])
    sub_rgb = shades[predicted.numpy(), matched.numpy()]
    panels = [("input", to_pixels(image.cpu(), mean, std))]
    if truth is not None:
        panels.append(("truth", colour_masks(truth[None].cpu(), num_classes, ignore_index)[0]))
    panels.append(("prediction", colour_masks(predicted[None], num_classes)[0]))
    panels.append(("matched sub-centroid", sub_rgb))
    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(3 * len(panels) + 3, 3.2))
    for axis, (title, pixels) in zip(axes, panels, strict=False):
        imshow(axis, pixels)
        axis.set_title(title, fontsize=9)
    legend = axes[-1]
    legend.axis("off")
    present = torch.unique(predicted).tolist()
    for row, label in enumerate(present[:12]):
        counts = torch.bincount(matched[predicted == label], minlength=num_subcentroids)
        y = 1 - (row + 1) / 13
        for k in range(num_subcentroids):
            legend.add_patch(
                plt.Rectangle(
                    (k * 0.045, y), 0.04, 0.06, color=shades[label, k], transform=legend.transAxes
                )
            )
        used = int((counts > 0).sum())
        legend.text(
            num_subcentroids * 0.045 + 0.02,
            y + 0.01,
            f"{class_names[label]} ({used}/{num_subcentroids} used)",
            fontsize=7,
            transform=legend.transAxes,
        )
    legend.set_title("sub-centroids per class", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_pixel_evidence(
    image: torch.Tensor,
    evidence,
    training_image,
    *,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    path: str | Path,
) -> None:
    """The input with the pixel marked and its cosine map to the deciding sub-centroid,
    then the training images nearest that sub-centroid, their region outlined.

    Args:
        image: ``(C_in, H, W)`` normalised input.
        evidence: its :class:`~deepnc.explain.seg_evidence.PixelEvidence`.
        training_image: training index -> ``(C_in, H', W')`` normalised image.
    """
    columns = 2 + len(evidence.regions)
    figure, axes = plt.subplots(1, columns, figsize=(2.1 * columns, 2.6), squeeze=False)
    pixels = to_pixels(image, mean, std)
    row, column = evidence.pixel
    name = class_names[evidence.label]
    imshow(axes[0, 0], pixels)
    axes[0, 0].plot([column], [row], marker="+", color="red", markersize=12, mew=2)
    axes[0, 0].set_title(f"pixel {evidence.pixel}\n{name} #{evidence.subcentroid}", fontsize=8)
    axes[0, 1].imshow(evidence.map.numpy(), cmap="viridis")
    axes[0, 1].axis("off")
    axes[0, 1].set_title(f"cos to {name} #{evidence.subcentroid}", fontsize=8)
    for offset, region in enumerate(evidence.regions, start=2):
        axis = axes[0, offset]
        imshow(axis, to_pixels(training_image(region.index), mean, std))
        axis.contour(region.region.numpy().astype(float), levels=[0.5], colors="red", linewidths=1)
        axis.set_title(f"training image {region.index}\ncos {region.similarity:.3f}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
