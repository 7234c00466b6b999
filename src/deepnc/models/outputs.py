"""What a model returns: a tensor of logits, or torchvision's dict of main and auxiliary
logits (segmentation models with an auxiliary head)."""

from __future__ import annotations

import torch

__all__ = ["main_and_aux"]


def main_and_aux(outputs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux logits or None)`` from a model's output: a tensor, or a
    torchvision-style dict ``{"out": ..., "aux": ...}``."""
    if isinstance(outputs, dict):
        return outputs["out"], outputs.get("aux")
    return outputs, None
