"""What a DNC head's updates may use, and how they report what they leave out: samples
with a class label and finite, non-constant features; NaN/Inf features warned about or
refused (``nonfinite="skip"`` / ``"raise"``); bad inputs checked at once on the first
updates and counted on the device after that (:class:`InputChecks`)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from deepnc.nn import defaults
from deepnc.utils.validate import (
    check_choice,
    check_positive_int,
    check_target_values,
    out_of_range,
)

__all__ = [
    "VALIDATE_MODES",
    "InputChecks",
    "check_head_arguments",
    "flatten_targets",
    "nonfinite_rows",
    "report_nonfinite",
    "usable_rows",
]

VALIDATE_MODES = ("first", "always", "deferred")


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


class InputChecks(nn.Module):
    """When a head checks the values of its update inputs, and what the updates left out
    since the last report, counted on the device (see ``DNCHead(validate=...)``).

    Targets outside ``[0, C)`` that are not ``ignore_index``, and NaN/Inf features, are
    always left out of an update on the device, so they never reach a sub-centroid;
    reporting them needs the host to read the device (a sync), hence the choice.

    Args:
        validate: ``"first"``: at once on the first ``defaults.CHECKED_UPDATES`` (10) updates in
            eager mode, where a wrong label space or a broken input pipeline shows up;
            after that, and inside ``torch.compile``, counted on the device and
            reported by :meth:`report` (``DNCHead.check_inputs``, which the trainer
            calls at every epoch's end). ``"always"``: at once on every update (one
            sync per step; it breaks a compiled graph). ``"deferred"``: only by
            :meth:`report`.

    Buffers (not persistent: a checkpoint carries the model, not pending complaints):
        bad_targets: ``()`` int64 targets outside ``[0, C)`` that were not ignored.
        bad_target_value: ``()`` int64 one of them, for the message.
        nonfinite_samples: ``()`` int64 samples with NaN/Inf features.
    """

    bad_targets: torch.Tensor
    bad_target_value: torch.Tensor
    nonfinite_samples: torch.Tensor

    def __init__(self, validate: str = "first") -> None:
        super().__init__()
        self.validate = check_choice("validate", validate, VALIDATE_MODES)
        self.checked_updates = 0  # host-side: updates checked at once so far
        for name in ("bad_targets", "bad_target_value", "nonfinite_samples"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long), persistent=False)

    def check_now(self, targets: torch.Tensor, num_classes: int, ignore_index: int) -> bool:
        """Check the target values now if ``validate`` says so; whether the update should
        also check its features at once (a host-side decision, never traced)."""
        if torch.compiler.is_compiling() or self.validate == "deferred":
            return False
        if self.validate == "first":
            if self.checked_updates >= defaults.CHECKED_UPDATES:
                return False
            self.checked_updates += 1
        check_target_values(targets, num_classes, ignore_index)
        return True

    def count_left_out(
        self, labels: torch.Tensor, finite: torch.Tensor, num_classes: int, ignore_index: int
    ) -> None:
        """Count, on the device, what :meth:`report` will say: ``labels`` ``(M,)`` int64,
        ``finite`` ``(M,)`` bool."""
        bad = out_of_range(labels, num_classes, ignore_index)
        self.bad_targets += bad.sum()
        example = torch.where(bad, labels, torch.iinfo(torch.long).min).amax()
        self.bad_target_value.copy_(torch.where(bad.any(), example, self.bad_target_value))
        self.nonfinite_samples += nonfinite_rows(finite, labels, ignore_index).sum()

    def report(self, num_classes: int, ignore_index: int, nonfinite: str) -> None:
        """Raise or warn about what was counted, and forget it (reads three counters: one
        sync). ``nonfinite``: the head's policy, ``"skip"`` (warn) or ``"raise"``."""
        bad, example, skipped = torch.stack(
            [self.bad_targets, self.bad_target_value, self.nonfinite_samples]
        ).tolist()
        self.bad_targets.zero_()
        self.nonfinite_samples.zero_()
        since = " since the last check"
        if bad:
            raise ValueError(
                f"targets must be class indices in [0, {num_classes}) or ignore_index = "
                f"{ignore_index}: {bad} target(s) were not (for example {example}) and "
                f"were left out of the sub-centroid updates{since}"
            )
        report_nonfinite(skipped, nonfinite, f"the sub-centroid updates{since}", stacklevel=4)


def flatten_targets(targets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``(M,)`` int64 targets, one per row of the flattened features: dense targets of
    another size are first resized to the ``(B, D, H, W)`` feature map (nearest)."""
    if features.dim() == 4 and targets.shape[-2:] != features.shape[-2:]:
        resized = F.interpolate(targets.unsqueeze(1).float(), size=features.shape[-2:])
        targets = resized.squeeze(1).round().long()
    return targets.reshape(-1).long()


def check_head_arguments(
    in_features: int,
    num_subcentroids: int,
    projection: int | None,
    layer_norm: bool,
    memory_size: int,
    max_pixels_per_class: int | None,
    ignore_index: int,
) -> None:
    """Check the sizes a :class:`~deepnc.DNCHead` is built with (see its ``Args``).

    Raises:
        TypeError, ValueError: naming the argument and what it must be.
    """
    check_positive_int("in_features", in_features)
    check_positive_int("num_subcentroids", num_subcentroids)
    if projection is not None:
        check_positive_int("projection", projection)
    if layer_norm and (projection or in_features) < 2:
        raise ValueError(
            "the embedding must have >= 2 channels with layer_norm=True (a LayerNorm over "
            f"one channel outputs a constant), got {projection or in_features}"
        )
    check_positive_int("memory_size", memory_size, minimum=0)
    if 0 < memory_size < num_subcentroids:
        raise ValueError(
            f"memory_size must be 0 or >= num_subcentroids = {num_subcentroids} so that "
            f"every sub-centroid can receive a sample, got {memory_size}"
        )
    if max_pixels_per_class is not None:
        check_positive_int("max_pixels_per_class", max_pixels_per_class)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
