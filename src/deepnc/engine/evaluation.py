"""What an evaluation reports, per task, and the evaluation of a split with it."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from deepnc.data import DatasetSplits
from deepnc.engine.loop import evaluate
from deepnc.engine.seg_evaluation import evaluate_segmentation
from deepnc.engine.seg_inference import InferenceOptions

__all__ = ["TEST_METRICS", "evaluate_split", "primary_metric"]

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
