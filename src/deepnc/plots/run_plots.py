"""Pictures of a run: training curves and the confusion matrix (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

__all__ = ["plot_confusion", "plot_curves"]


def plot_curves(
    rows: Sequence[dict],
    path: str | Path,
    title: str = "",
    *,
    train_key: str = "train_top1",
    test_key: str = "test_top1",
) -> None:
    """Loss and accuracy per epoch, train and test, from the rows of ``metrics.jsonl``.

    ``train_key`` and ``test_key`` name the figures of the right panel (fractions);
    the scored split's loss is ``test_key``'s split with ``_loss`` (``val_loss``...).
    """
    split = test_key.split("_", 1)[0]
    epochs = [row["epoch"] for row in rows]
    tested = [row for row in rows if row.get(test_key) is not None]  # see eval_every
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    loss_axis.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train")
    loss_axis.plot(
        [r["epoch"] for r in tested], [r[f"{split}_loss"] for r in tested], marker="o", label=split
    )
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.plot(
        epochs, [100 * r[train_key] for r in rows], marker="o", label=train_key.replace("_", " ")
    )
    accuracy_axis.plot(
        [r["epoch"] for r in tested],
        [100 * r[test_key] for r in tested],
        marker="o",
        label=test_key.replace("_", " "),
    )
    accuracy_axis.set(xlabel="epoch", ylabel="%", title="accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str], path: str | Path) -> None:
    """Row-normalised ``(C, C)`` confusion matrix (rows: true class) with counts for small C."""
    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(class_names) <= 30:
        axis.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
        axis.set_yticks(range(len(class_names)), class_names)
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                if counts[i, j]:
                    colour = "white" if rates[i, j] > 0.5 else "black"
                    axis.text(
                        j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=colour
                    )
    axis.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised)")
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
