"""What an evaluation reports, per task, and the evaluation of a split with it."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.engine.loop import evaluate
from deepnc.engine.seg_evaluation import evaluate_segmentation
from deepnc.engine.seg_inference import InferenceOptions

__all__ = ["TEST_METRICS", "dominant_class", "evaluate_split", "primary_metric"]

# What an evaluation reports, per task; the first is the headline figure.
TEST_METRICS = {
    "classification": ("top1", "top5", "loss"),
    "segmentation": ("miou", "pixel_accuracy", "loss"),
}


def primary_metric(task: str) -> str:
    """``"top1"`` for classification, ``"miou"`` for segmentation."""
    return TEST_METRICS[task][0]


def evaluate_split(
    model: torch.nn.Module,
    loader: DataLoader,
    data: DatasetSplits,
    device: torch.device,
    *,
    amp: bool = False,
    amp_dtype: str = "auto",
    progress: bool = False,
    inference: InferenceOptions | None = None,
):
    """Evaluate with the task's metrics: an ``EvalResult`` or a ``SegmentationResult``
    (``inference``: how a segmentation model runs on each image; whole by default)."""
    options = {"device": device, "amp": amp, "amp_dtype": amp_dtype, "progress": progress}
    if data.task == "segmentation":
        return evaluate_segmentation(
            model,
            loader,
            num_classes=data.num_classes,
            ignore_index=data.ignore_index,
            inference=inference,
            **options,
        )
    return evaluate(model, loader, num_classes=data.num_classes, **options)


def dominant_class(predicted: torch.Tensor, true: torch.Tensor) -> tuple[int, float, float] | None:
    """``(class, its share of the predictions, its share of the truth)`` when one class
    takes (nearly) every prediction, a model that has collapsed; else ``None``.

    Collapsed: every prediction in one class while the truth holds several, or at least
    90% of them in one class that holds under half of that share in truth.

    Args:
        predicted, true: ``(C,)`` counts of the predictions and of the truth per class
            (a result's ``class_counts()``).

    >>> dominant_class(torch.tensor([10, 0]), torch.tensor([5, 5]))
    (0, 1.0, 0.5)
    >>> dominant_class(torch.tensor([6, 4]), torch.tensor([5, 5])) is None
    True
    """
    total = predicted.double().sum()
    if total == 0:
        return None
    predicted, true = predicted.double() / total, true.double() / true.double().sum()
    top = int(predicted.argmax())
    share, truth = float(predicted[top]), float(true[top])
    several = int((true > 0).sum()) > 1
    if (share == 1.0 and several) or (share >= 0.9 and truth < share / 2):
        return top, share, truth
    return None
