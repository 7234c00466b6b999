"""Pictures of explanations: a prediction with its evidence, and the gallery of sub-centroids.

Images arrive as the model saw them (normalised tensors) and are turned back into
pixels with the dataset's mean and std.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from deepnc.explain.evidence import Explanation

__all__ = ["MAP_COLOURS", "map_range", "overlay", "plot_gallery", "plot_prediction"]

MAP_COLOURS = "viridis"  # perceptually uniform: yellow = contributes most to the similarity
MAP_OPACITY = 0.55


def map_range(*maps: torch.Tensor | None) -> tuple[float, float]:
    """One colour scale ``(low, high)`` for maps shown side by side (input and exemplar)."""
    values = [m for m in maps if m is not None]
    if not values:
        return 0.0, 1.0
    low = min(float(m.min()) for m in values)
    high = max(float(m.max()) for m in values)
    return low, max(high, low + 1e-6)


def overlay(pixels: np.ndarray, values: torch.Tensor, low: float, high: float) -> np.ndarray:
    """uint8 ``(H, W, 3)``: ``pixels`` (grey or RGB uint8) under a similarity map
    ``(h, w)`` upsampled to them (bilinear), coloured by :data:`MAP_COLOURS` over
    ``[low, high]``."""
    from deepnc.explain.similarity_maps import upsample

    height, width = pixels.shape[:2]
    resized = upsample(values[None].float(), (height, width))[0].numpy()
    scaled = np.clip((resized - low) / (high - low), 0, 1)
    colours = plt.get_cmap(MAP_COLOURS)(scaled)[..., :3]
    base = pixels.astype(np.float64) / 255
    base = np.repeat(base[..., None], 3, axis=2) if base.ndim == 2 else base
    blended = (1 - MAP_OPACITY) * base + MAP_OPACITY * colours
    return (blended * 255).round().astype(np.uint8)


def _show(axis, pixels: np.ndarray | None, title: str) -> None:
    if pixels is None:
        axis.text(0.5, 0.5, "no exemplar", ha="center", va="center", fontsize=8)
    else:
        axis.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255)
    axis.set_title(title, fontsize=8)
    axis.set_xticks([])
    axis.set_yticks([])


def plot_prediction(
    pixels: np.ndarray,
    explanation: Explanation,
    training_image: Callable[[int], np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
) -> None:
    """The input, the exemplar of the nearest sub-centroid of each top class, and neighbours.

    When the evidence carries similarity maps, a second row shows, per class, the input
    and the exemplar overlaid with their maps on one colour scale (legend at the right).

    Args:
        pixels: the input as from :func:`to_pixels`.
        explanation: its :class:`~deepnc.explain.Explanation`.
        training_image: training index -> pixels.
        class_names: C names.
    """
    with_maps = any(evidence.map is not None for evidence in explanation.classes)
    columns = 1 + max(len(explanation.classes), len(explanation.neighbours))
    rows = 1 + (2 if with_maps else 0) + bool(explanation.neighbours)
    figure, axes = plt.subplots(rows, columns, figsize=(1.7 * columns, 2.0 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    predicted = class_names[explanation.predicted]
    axes[0, 0].axis("on")
    _show(axes[0, 0], pixels, f"input\npredicted: {predicted}")
    for column, evidence in enumerate(explanation.classes, start=1):
        axes[0, column].axis("on")
        exemplar = training_image(evidence.exemplar) if evidence.exemplar >= 0 else None
        title = f"{class_names[evidence.label]} #{evidence.subcentroid}\ncos {evidence.score:.3f}"
        _show(axes[0, column], exemplar, title)
    row = 1
    if with_maps:
        axes[1, 0].text(0.5, 0.5, "where the\ninput\nmatches", ha="center", va="center")
        axes[2, 0].text(0.5, 0.5, "where the\nexemplar\nmatches", ha="center", va="center")
        for column, evidence in enumerate(explanation.classes, start=1):
            low, high = map_range(evidence.map, evidence.exemplar_map)
            if evidence.map is not None:
                axes[1, column].axis("on")
                shown = overlay(pixels, evidence.map, low, high)
                _show(axes[1, column], shown, class_names[evidence.label])
            if evidence.exemplar_map is not None and evidence.exemplar >= 0:
                axes[2, column].axis("on")
                picture = overlay(
                    training_image(evidence.exemplar), evidence.exemplar_map, low, high
                )
                _show(axes[2, column], picture, f"training image {evidence.exemplar}")
        colours = plt.cm.ScalarMappable(cmap=MAP_COLOURS, norm=plt.Normalize(0, 1))
        bar = figure.colorbar(colours, ax=axes[1:3, :].ravel().tolist(), shrink=0.8, ticks=[0, 1])
        bar.ax.set_yticklabels(["least", "most"], fontsize=7)
        bar.set_label("contribution to the cosine", fontsize=7)
        row = 3
    if explanation.neighbours:
        axes[row, 0].text(
            0.5, 0.5, "nearest\ntraining\nimages", ha="center", va="center", fontsize=9
        )
        for column, neighbour in enumerate(explanation.neighbours, start=1):
            axes[row, column].axis("on")
            title = f"{class_names[neighbour.label]}\ncos {neighbour.similarity:.3f}"
            _show(axes[row, column], training_image(neighbour.index), title)
    if not with_maps:
        figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_gallery(
    indices: torch.Tensor,
    occupancy: torch.Tensor,
    training_image: Callable[[int], np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
) -> None:
    """Each class's K sub-centroids as their exemplar images, with their occupancy.

    Args:
        indices: ``(C, K)`` training indices of the exemplars (-1: none).
        occupancy: ``(C, K)`` training samples each sub-centroid is nearest to.
    """
    num_classes, num_subcentroids = indices.shape
    figure, axes = plt.subplots(
        num_classes,
        num_subcentroids,
        figsize=(1.4 * num_subcentroids + 1.2, 1.45 * num_classes),
        squeeze=False,
    )
    totals = occupancy.sum(dim=1).clamp_min(1)
    for cls in range(num_classes):
        for k in range(num_subcentroids):
            index = int(indices[cls, k])
            share = 100 * float(occupancy[cls, k]) / float(totals[cls])
            _show(
                axes[cls, k], training_image(index) if index >= 0 else None, f"#{k}: {share:.0f}%"
            )
        axes[cls, 0].set_ylabel(class_names[cls], fontsize=8, rotation=0, ha="right", va="center")
    figure.suptitle("sub-centroids as training images (share of the class they serve)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
