"""What a DNC head's updates may use, and how they report what they leave out: samples
with a class label and finite, non-constant features; NaN/Inf features warned about or
refused (``nonfinite="skip"`` / ``"raise"``)."""

from __future__ import annotations

import warnings

import torch

from deepnc._validate import out_of_range

__all__ = ["nonfinite_rows", "report_nonfinite", "usable_rows"]


def usable_rows(
    embedded: torch.Tensor,
    labels: torch.Tensor,
    finite: torch.Tensor,
    num_classes: int,
    ignore_index: int,
) -> torch.Tensor:
    """``(M,)`` bool: a class label in ``[0, C)``, finite features, and a direction to
    cluster (a constant feature vector normalises to zero).

    Args:
        embedded: ``(M, D)`` features; ``labels`` ``(M,)`` int64; ``finite`` ``(M,)``
            bool, whether each row of the features is finite.
    """
    labelled = (labels != ignore_index) & ~out_of_range(labels, num_classes, ignore_index)
    return labelled & finite & (embedded.abs().amax(dim=1) > 0)


def nonfinite_rows(finite: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """``(M,)`` bool: NaN/Inf features of samples not ignored (what is reported)."""
    return ~finite & (labels != ignore_index)


def report_nonfinite(count: int, policy: str, where: str, *, stacklevel: int = 3) -> None:
    """Raise (``policy="raise"``) or warn (``"skip"``) that ``count`` samples with NaN or
    Inf features were left out of ``where``; nothing when ``count`` is 0."""
    if not count:
        return
    message = f"{count} sample(s) with NaN or Inf features were left out of {where}"
    if policy == "raise":
        raise ValueError(f"features must be finite: {message}")
    warnings.warn(message, stacklevel=stacklevel)
