"""Argument checks shared by the modules: each error names the argument and the allowed values."""

from __future__ import annotations

import math
from collections.abc import Collection

import torch

__all__ = [
    "check_choice",
    "check_features",
    "check_positive_float",
    "check_positive_int",
    "check_range",
    "check_target_values",
    "check_targets",
    "out_of_range",
]


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float > 0, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value}")
    return float(value)


def check_range(
    name: str, value: object, low: float, high: float, *, low_open: bool, high_open: bool
) -> float:
    """Check ``low < value < high`` (or with ``<=`` where the side is closed)."""
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    allowed = f"{left}{low}, {high}{right}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float in {allowed}, got {type(value).__name__}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{name} must be a float in {allowed}, got {value}")
    return float(value)


def check_choice(name: str, value: object, allowed: Collection[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_features(features: object, in_features: int) -> None:
    """Features must be float ``(N, D)`` or ``(B, D, H, W)`` with ``D == in_features``."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"features must be a floating point tensor, got dtype {features.dtype}")
    if features.dim() not in (2, 4):
        raise ValueError(
            "features must have shape (N, D) or (B, D, H, W), "
            f"got {features.dim()} dimensions {tuple(features.shape)}"
        )
    if features.shape[1] != in_features:
        raise ValueError(
            f"features must have width D = in_features = {in_features} in dimension 1, "
            f"got shape {tuple(features.shape)}"
        )


def check_targets(targets: object, features: torch.Tensor) -> None:
    """Targets must be integer ``(N,)`` for ``(N, D)`` features, ``(B, H, W)`` for maps.

    Dense targets may have a different spatial size than the feature map (they are
    resized by the head). Only types, shapes and devices are checked here (no sync);
    values are checked by :func:`check_target_values`.
    """
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor of class indices, got {targets.dtype}")
    if features.dim() == 2:
        expected = f"({features.shape[0]},)"
        ok = targets.shape == features.shape[:1]
    else:
        expected = f"({features.shape[0]}, H, W)"
        ok = targets.dim() == 3 and targets.shape[0] == features.shape[0]
    if not ok and features.dim() == 4 and targets.shape == features.shape[:1]:
        raise ValueError(
            f"the DNC head sees feature maps {tuple(features.shape)} but one class per image "
            f"{tuple(targets.shape)}: it replaced a 1x1 convolution that classifies every "
            "position before a global pooling (as in SqueezeNet). Put the head after the "
            "pooling instead: replace that part of the classifier by nn.Sequential("
            "nn.AdaptiveAvgPool2d(1), nn.Flatten(), DNCHead(D, C))"
        )
    if not ok:
        raise ValueError(
            f"targets must have shape {expected} to match features of shape "
            f"{tuple(features.shape)}, got {tuple(targets.shape)}"
        )
    if targets.device != features.device:
        raise ValueError(
            f"targets must be on the device of features ({features.device}), got {targets.device}"
        )


def out_of_range(targets: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Bool mask of the targets that are neither a class in ``[0, C)`` nor ignored."""
    return (targets != ignore_index) & ((targets < 0) | (targets >= num_classes))


def check_target_values(targets: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Targets must lie in ``[0, num_classes)`` or equal ``ignore_index``.

    This reads the targets back to the host (a sync): the head calls it on its first
    updates only, unless asked to on every one (see ``DNCHead(validate=...)``).
    """
    bad = out_of_range(targets, num_classes, ignore_index)
    if bool(bad.any()):
        values = torch.unique(targets[bad])[:10].tolist()
        raise ValueError(
            f"targets must be class indices in [0, {num_classes}) or ignore_index = "
            f"{ignore_index}, got values {values}"
        )
