"""Pictures of segmentation: class colours, coloured masks, and rows of image | truth |
prediction (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from deepnc.data.normalise import to_pixels

__all__ = ["class_colours", "colour_masks", "imshow", "plot_segmentation"]


def imshow(axis, pixels: np.ndarray) -> None:
    """uint8 grey ``(H, W)``, uint8 RGB or float RGB in [0, 1], pixel for pixel."""
    grey = pixels.ndim == 2
    axis.imshow(
        pixels,
        cmap="gray" if grey else None,
        vmin=0 if grey else None,
        vmax=255 if grey else None,
        interpolation="nearest",
    )
    axis.axis("off")


def class_colours(num_classes: int) -> np.ndarray:
    """``(C, 3)`` distinct RGB colours in [0, 1]; class 0 (usually background) is dark grey."""
    others = num_classes - 1
    if others <= 10:  # tab10 without its grey (kept for the background), plus a dark indigo
        colours = plt.get_cmap("tab10")([0, 1, 2, 3, 4, 5, 6, 8, 9])[:, :3]
        indigo = plt.get_cmap("tab20b")([0])[:, :3]
        palette = np.concatenate([colours, indigo])[:others]
    elif others <= 20:
        palette = plt.get_cmap("tab20")(np.arange(others))[:, :3]
    else:
        palette = plt.get_cmap("hsv")(np.linspace(0, 1, others, endpoint=False))[:, :3]
    return np.concatenate([np.full((1, 3), 0.25), palette])


def colour_masks(
    masks: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """``(B, H, W)`` class masks as ``(B, H, W, 3)`` RGB; ignored pixels are white."""
    palette = class_colours(num_classes)
    flat = masks.clamp(0, num_classes - 1).numpy()
    rgb = palette[flat]
    if ignore_index is not None:
        rgb[masks.numpy() == ignore_index] = 1.0
    return rgb


def plot_segmentation(
    images: torch.Tensor | Sequence[torch.Tensor],
    truth: torch.Tensor | Sequence[torch.Tensor],
    predicted: torch.Tensor | Sequence[torch.Tensor],
    *,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    path: str | Path,
    ignore_index: int | None = None,
) -> None:
    """Rows of image | truth | prediction for ``(B, C_in, H, W)`` images and ``(B, H, W)``
    masks, or sequences of ``(C_in, H, W)`` and ``(H, W)`` of varying sizes."""
    count = len(images)
    num_classes = len(class_names)
    figure, axes = plt.subplots(count, 3, figsize=(7.5, 2.5 * count), squeeze=False)
    for row in range(count):
        pixels = to_pixels(images[row].cpu(), mean, std)
        truth_rgb = colour_masks(truth[row][None].cpu(), num_classes, ignore_index)[0]
        predicted_rgb = colour_masks(predicted[row][None].cpu(), num_classes)[0]
        for column, (title, shown) in enumerate(
            (("input", pixels), ("truth", truth_rgb), ("prediction", predicted_rgb))
        ):
            axis = axes[row, column]
            imshow(axis, shown)
            if row == 0:
                axis.set_title(title, fontsize=9)
    palette = class_colours(num_classes)
    handles = [
        matplotlib.patches.Patch(color=palette[c], label=name) for c, name in enumerate(class_names)
    ]
    figure.legend(handles=handles[:20], loc="lower center", ncol=min(6, num_classes), fontsize=7)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
