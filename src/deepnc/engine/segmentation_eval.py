"""Segmentation metrics over a whole split: mIoU, pixel accuracy, per-class IoU.

The pixels of every batch go into one confusion matrix (torchmetrics, synchronised over
DDP processes); the metrics come from that matrix at the end, so they are the split's
figures, not means of per-batch figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix
from tqdm.auto import tqdm

from deepnc.engine.loop import autocast, sum_over_processes
from deepnc.models.outputs import main_and_aux

__all__ = ["SegmentationResult", "evaluate_segmentation", "iou_from_confusion"]


@dataclass
class SegmentationResult:
    """Metrics over a whole split.

    Attributes:
        miou: mean IoU over the classes present in the labels or the predictions.
        pixel_accuracy: fraction of labelled pixels predicted correctly.
        per_class_iou: ``(C,)`` IoU of each class (NaN for a class never labelled nor
            predicted).
        confusion: ``(C, C)`` pixel counts, rows are true classes, columns predictions.
        loss: mean cross-entropy per labelled pixel.
        samples: images evaluated.
    """

    miou: float
    pixel_accuracy: float
    per_class_iou: torch.Tensor
    confusion: torch.Tensor
    loss: float
    samples: int

    def summary(self) -> dict:
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "loss": self.loss,
            "samples": self.samples,
        }


def iou_from_confusion(confusion: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``(per-class IoU (C,), mIoU, pixel accuracy)`` from a ``(C, C)`` confusion matrix.

    >>> iou, miou, accuracy = iou_from_confusion(torch.tensor([[3, 1], [0, 4]]))
    >>> iou.tolist(), round(miou, 4), accuracy
    ([0.75, 0.800000011920929], 0.775, 0.875)
    """
    counts = confusion.double()
    hits = counts.diagonal()
    union = counts.sum(0) + counts.sum(1) - hits
    iou = torch.where(union > 0, hits / union.clamp_min(1), torch.full_like(hits, float("nan")))
    total = counts.sum()
    miou = float(iou.nanmean()) if (union > 0).any() else float("nan")
    accuracy = float(hits.sum() / total) if total else float("nan")
    return iou.float(), miou, accuracy


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    device: torch.device,
    ignore_index: int | None = None,
    amp: bool = False,
    amp_dtype: str = "auto",
    progress: bool = False,
    description: str = "eval",
) -> SegmentationResult:
    """mIoU, pixel accuracy, per-class IoU and loss of ``model`` over ``loader``.

    Args:
        loader: yields ``(images (B, C_in, H, W), masks (B, H, W))``.
        ignore_index: mask value left out of every figure.

    Under DDP, give every process a disjoint shard of the split.
    """
    model.eval()
    confusion = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index).to(device)
    loss_ignore = -100 if ignore_index is None else ignore_index
    loss_sum = 0.0
    samples = 0
    for images, masks in tqdm(
        loader, desc=description, disable=None if progress else True, leave=False
    ):
        images, masks = images.to(device), masks.to(device)
        with autocast(device, amp, amp_dtype):
            logits, _ = main_and_aux(model(images))
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, masks, ignore_index=loss_ignore, reduction="sum").item()
        confusion.update(logits.argmax(1), masks)
        samples += images.shape[0]
    matrix = confusion.compute().cpu()
    loss_sum, samples = sum_over_processes([loss_sum, samples], device)
    per_class, miou, accuracy = iou_from_confusion(matrix)
    return SegmentationResult(
        miou=miou,
        pixel_accuracy=accuracy,
        per_class_iou=per_class,
        confusion=matrix,
        loss=loss_sum / max(1, int(matrix.sum())),
        samples=int(samples),
    )
