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

from deepnc.explain.explain import Explanation

__all__ = ["plot_gallery", "plot_prediction"]


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

    Args:
        pixels: the input as from :func:`to_pixels`.
        explanation: its :class:`~deepnc.explain.Explanation`.
        training_image: training index -> pixels.
        class_names: C names.
    """
    columns = 1 + max(len(explanation.classes), len(explanation.neighbours))
    rows = 2 if explanation.neighbours else 1
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
    if explanation.neighbours:
        axes[1, 0].text(0.5, 0.5, "nearest\ntraining\nimages", ha="center", va="center", fontsize=9)
        for column, neighbour in enumerate(explanation.neighbours, start=1):
            axes[1, column].axis("on")
            title = f"{class_names[neighbour.label]}\ncos {neighbour.similarity:.3f}"
            _show(axes[1, column], training_image(neighbour.index), title)
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
