"""Per-channel image normalisation, both ways: the one place it is written.

>>> pixels = torch.tensor([[[0, 255]]], dtype=torch.uint8)  # (C, H, W) = (1, 1, 2)
>>> normalise(pixels, (0.5,), (0.5,))
tensor([[[-1.,  1.]]])
>>> to_uint8(normalise(pixels, (0.5,), (0.5,)), (0.5,), (0.5,))
tensor([[[  0, 255]]], dtype=torch.uint8)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["normalise", "to_pixels", "to_uint8"]


def _per_channel(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a ``(C, 1, 1)`` float32 tensor, broadcastable over ``(..., C, H, W)``."""
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).view(-1, 1, 1)


def normalise(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 pixels ``(..., C, H, W)`` (or floats in ``[0, 255]``) -> the network's input,
    ``(pixels / 255 - mean) / std`` per channel, float32."""
    return (pixels.float() / 255 - _per_channel(mean, pixels)) / _per_channel(std, pixels)


def to_uint8(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Inverse of :func:`normalise`: a network input ``(..., C, H, W)`` -> uint8 pixels
    (clamped to ``[0, 255]``)."""
    pixels = image.float() * _per_channel(std, image) + _per_channel(mean, image)
    return pixels.clamp(0, 1).mul(255).round().to(torch.uint8)


def to_pixels(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``(C, H, W)`` tensor as uint8 pixels ``(H, W)`` (grey) or ``(H, W, 3)``."""
    pixels = to_uint8(image.cpu(), mean, std)
    return pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
