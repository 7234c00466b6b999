"""Segmentation inference at full resolution: whole-image or sliding-window, optionally over
several scales and with a horizontal flip, the logits resized to the mask's own size
before the argmax.

Sliding windows follow mmsegmentation's ``slide_inference``: windows of ``crop_size``
every ``stride``, the last one in each direction moved back to end at the border, the
logits of overlapping windows averaged. When one window covers the image, it is the
whole image, so both modes agree exactly.

>>> options = InferenceOptions(mode="slide", crop_size=(4, 4), stride=(2, 2))
>>> model = lambda images: {"out": images.repeat(1, 2, 1, 1)}  # 2 "classes"
>>> infer(model, torch.ones(1, 1, 6, 6), options, (6, 6)).shape
torch.Size([1, 2, 6, 6])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from deepnc.models.outputs import main_and_aux

__all__ = ["INFERENCE_MODES", "InferenceOptions", "infer", "slide_logits"]

INFERENCE_MODES = ("whole", "slide")


@dataclass(frozen=True)
class InferenceOptions:
    """How a segmentation model is run on an evaluation image (the config's ``inference``).

    Args:
        mode: ``"whole"`` (the image in one pass) or ``"slide"`` (windows).
        crop_size: ``(height, width)`` of the windows (``slide`` only).
        stride: ``(height, width)`` step between windows (default: 2/3 of the crop,
            mmsegmentation's 512/341).
        scales: factors the image is rescaled by before inference; more than one (or
            ``flip``) averages the softmax probabilities of every view.
        flip: add the horizontally flipped image as a view.
    """

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in INFERENCE_MODES:
            raise ValueError(f"inference mode must be one of {INFERENCE_MODES}, got {self.mode!r}")
        for name in ("crop_size", "stride"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(value)
                if len(value) != 2 or any(not isinstance(v, int) or v < 1 for v in value):
                    raise ValueError(f"inference {name} must be (height, width) >= 1, got {value}")
                object.__setattr__(self, name, value)
        if self.mode == "slide" and self.crop_size is None:
            raise ValueError("inference mode slide needs crop_size: (height, width)")
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"inference scales must be positive numbers, got {self.scales}")
        object.__setattr__(self, "scales", scales)

    @classmethod
    def from_config(cls, values: dict[str, Any] | None) -> InferenceOptions:
        """From the config's ``inference`` mapping; unknown keys are an error naming them."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown inference option(s) {unknown}; allowed: {list(cls.__dataclass_fields__)}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def slide_logits(
    model: Callable, images: torch.Tensor, crop_size: Sequence[int], stride: Sequence[int]
) -> torch.Tensor:
    """``(B, C, H, W)`` logits of ``images`` ``(B, C_in, H, W)``, window by window."""
    height, width = images.shape[-2:]
    crop_h, crop_w = min(crop_size[0], height), min(crop_size[1], width)
    stride_h, stride_w = stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    columns = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    total = counts = None
    for row in range(rows):
        for column in range(columns):
            bottom = min(row * stride_h + crop_h, height)
            right = min(column * stride_w + crop_w, width)
            top, left = bottom - crop_h, right - crop_w
            logits, _ = main_and_aux(model(images[..., top:bottom, left:right]))
            logits = logits.float()
            if total is None:
                total = logits.new_zeros(*logits.shape[:2], height, width)
                counts = logits.new_zeros(1, 1, height, width)
            total[..., top:bottom, left:right] += logits
            counts[..., top:bottom, left:right] += 1
    return total / counts


def infer(
    model: Callable, images: torch.Tensor, options: InferenceOptions, size: Sequence[int]
) -> torch.Tensor:
    """``(B, C, *size)`` scores of ``images`` ``(B, C_in, H, W)``, resized (bilinear) to
    ``size``, the mask's ``(height, width)``: the logits of a single view, or over several
    (scales, flip) the log of the mean softmax probability. Either way their argmax is the
    prediction and their cross-entropy against the mask the loss."""
    views = [
        (scale, flip) for scale in options.scales for flip in (False, True)[: 1 + options.flip]
    ]
    total = None
    for scale, flip in views:
        view = images.flip(-1) if flip else images
        if scale != 1.0:
            scaled = [max(1, round(side * scale)) for side in images.shape[-2:]]
            view = F.interpolate(view, size=scaled, mode="bilinear", align_corners=False)
        if options.mode == "slide":
            stride = options.stride or tuple(max(1, 2 * c // 3) for c in options.crop_size)
            logits = slide_logits(model, view, options.crop_size, stride)
        else:
            logits = main_and_aux(model(view))[0].float()
        logits = logits.flip(-1) if flip else logits
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=list(size), mode="bilinear", align_corners=False)
        if len(views) == 1:
            return logits
        probabilities = logits.softmax(dim=1)
        total = probabilities if total is None else total + probabilities
    return (total / len(views)).clamp_min(torch.finfo(total.dtype).tiny).log()
