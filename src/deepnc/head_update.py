"""One sub-centroid update of a :class:`~deepnc.DNCHead` from a training batch, on the
device: the samples left out are masked, never copied out; all processes' rows are
gathered; then the bank clusters either the batch (dense heads, no memory) or each
class's memory of recent correct samples.
"""

from __future__ import annotations

import torch

from deepnc import distributed
from deepnc.grouping import ClassSlots, class_slots
from deepnc.head_checks import nonfinite_rows, report_nonfinite, usable_rows

__all__ = ["step_from_memory", "update_from_batch"]


@torch.no_grad()
def update_from_batch(
    head,
    embedded: torch.Tensor,
    similarities: torch.Tensor,
    class_scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    checked: bool,
) -> None:
    """One update of ``head`` (a :class:`~deepnc.DNCHead`).

    Args:
        embedded: ``(N, D)`` or ``(B, H, W, D)`` normalised features.
        similarities: ``(..., C, K)`` their cosines to every sub-centroid.
        class_scores: ``(..., C)`` the best cosine of each class.
        labels: ``(M,)`` int64 flat targets, M = N or B*H*W.
        checked: report NaN/Inf features at once (a sync) instead of counting them for
            :meth:`DNCHead.check_inputs <deepnc.DNCHead.check_inputs>`.
    """
    dense = embedded.dim() == 4
    num_classes, ignore_index = head.num_classes, head.ignore_index
    embedded = embedded.reshape(-1, head.in_features)
    similarities = similarities.reshape(-1, num_classes, head.num_subcentroids)
    class_scores = class_scores.reshape(-1, num_classes)
    if labels.numel() == 0:
        head.bank.num_updates += 1
        return
    finite = torch.isfinite(embedded).all(dim=1)
    if checked:
        skipped = int(nonfinite_rows(finite, labels, ignore_index).sum())
        report_nonfinite(skipped, head.nonfinite, "the sub-centroid update", stacklevel=6)
    correct = head.correctly_classified(class_scores, labels)
    safe = labels.clamp(0, num_classes - 1)
    own = similarities[torch.arange(labels.numel(), device=labels.device), safe]  # (M, K)
    # Every row travels, left-out ones included (masked after), so that all processes
    # send the same number of rows and nothing is read back to the host.
    embedded, own, labels, correct, finite = distributed.all_gather_together(
        embedded, own, labels, correct, finite, check_sizes=checked
    )
    keep = usable_rows(embedded, labels, finite, num_classes, ignore_index)
    if not checked:
        head.input_checks.count_left_out(labels, finite, num_classes, ignore_index)
    labels = labels.masked_fill(~keep, 0)
    correct &= keep
    own = torch.where(keep.unsqueeze(1), own, 0.0)

    bank = head.bank
    bank.record_accuracy(labels, correct, include=keep)
    if head.memory is None or dense:
        bank.update(
            embedded,
            labels,
            correct,
            scores=own,
            max_per_class=head.max_pixels_per_class,
            include=keep,
        )
        return
    seeded = bank.seed_new(embedded, labels, include=keep)[labels]
    head.memory.push(embedded, labels, include=keep & (correct | ~seeded))  # seeds' too
    step_from_memory(bank, head.memory, class_slots(labels, correct & seeded, num_classes))


@torch.no_grad()
def step_from_memory(bank, memory, slots: ClassSlots) -> None:
    """Cluster the memories of the slots' classes and move their sub-centroids.

    Args:
        bank: the :class:`~deepnc.SubCentroidBank`; ``memory`` its
            :class:`~deepnc.ClassMemory` (L samples per class).
        slots: the S classes to move (``slots.valid`` masks unused slots).
    """
    classes = slots.classes
    filled = memory.filled()[classes] & slots.valid.unsqueeze(1)  # (S, L)
    stored = memory.features[classes]  # (S, L, D)
    with torch.autocast(stored.device.type, enabled=False):  # fp32 under autocast
        scores = torch.einsum("cld,ckd->clk", stored, bank.subcentroids[classes])
    slot = torch.arange(classes.numel(), device=classes.device).unsqueeze(1)
    ids = torch.where(filled, slot, classes.numel()).view(-1)  # empty slots left out
    bank.step(
        stored.view(-1, bank.dim),
        None,
        scores.reshape(-1, bank.num_subcentroids),
        slots=ClassSlots(classes=classes, valid=slots.valid, ids=ids),
        rows_per_slot=memory.length,
    )
