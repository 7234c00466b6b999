"""Segmentation metrics over a whole split: mIoU, pixel accuracy, per-class IoU.

The pixels of every batch go into one confusion matrix (torchmetrics, synchronised over
DDP processes); the metrics come from that matrix at the end, so they are the split's
figures, not means of per-batch figures. Each image is scored at its mask's own size: the
logits (whole-image or sliding-window, :mod:`deepnc.engine.seg_inference`) are resized to
it before the argmax. Batches of images of different sizes come as lists (see
:func:`deepnc.data.seg_files.collate_segmentation`) and are run one image at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix

from deepnc.engine.loop import autocast, sum_over_processes
from deepnc.engine.seg_inference import InferenceOptions, infer
from deepnc.utils.progress import progress_bar

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

    def class_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predicted (C,), true (C,))``: the predicted and the labelled pixels per class."""
        return self.confusion.sum(0), self.confusion.sum(1)

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
    inference: InferenceOptions | None = None,
) -> SegmentationResult:
    """mIoU, pixel accuracy, per-class IoU and loss of ``model`` over ``loader``.

    Args:
        loader: yields ``(images (B, C_in, h, w), masks (B, H, W))``, or lists of
            ``(C_in, h, w)`` images and ``(H, W)`` masks of varying sizes; an image may
            be smaller or larger than its mask (rescaled for inference).
        ignore_index: mask value left out of every figure.
        inference: whole-image (default) or sliding-window, scales and flip.

    Under DDP, give every process a disjoint shard of the split.
    """
    model.eval()
    inference = inference or InferenceOptions()
    confusion = MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index).to(device)
    loss_ignore = -100 if ignore_index is None else ignore_index
    loss_sum = 0.0
    samples = 0
    for images, masks in progress_bar(loader, description, progress):
        pairs = (
            [(images, masks)]
            if isinstance(images, torch.Tensor)
            else [(image[None], mask[None]) for image, mask in zip(images, masks, strict=True)]
        )
        for batch, target in pairs:
            batch, target = batch.to(device), target.to(device)
            with autocast(device, amp, amp_dtype):
                scores = infer(model, batch, inference, target.shape[-2:])
            loss_sum += F.cross_entropy(
                scores, target, ignore_index=loss_ignore, reduction="sum"
            ).item()
            confusion.update(scores.argmax(1), target)
            samples += batch.shape[0]
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
