"""Start a segmentation model from a classification checkpoint: the backbone moves whole.

A DNC classifier has no learnt classifier weights: everything it learnt is the
embedding (the backbone and the DNC head's LayerNorm). :func:`transfer_backbone` loads
the backbone tensor for tensor into a :class:`~deepnc.models.SegmentationModel` whose
backbone has the same name, and, for DNC, the head's embedding normalisation when its
width matches the segmentation decoder's (``model_options: {decoder_channels: D}``) and no
projection (``head_options.projection``) stands before it: a projection head is used in
pretraining only and dropped at transfer with the LayerNorm over its outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from deepnc.engine.checkpoint import Checkpoint, resolve_checkpoint

__all__ = ["TransferReport", "transfer_backbone"]

BACKBONE_PREFIX = "backbone."
_NORM_TARGETS = ("classifier.norm.weight", "classifier.norm.bias")


@dataclass
class TransferReport:
    """Which tensors came from the checkpoint.

    Attributes:
        source: the checkpoint file.
        loaded: keys of the segmentation model filled from the checkpoint.
        new: keys of the segmentation model left as initialised (decoder, classifier...).
        unused: checkpoint tensors not used (the classifier layer and its buffers).
        notes: why a tensor that could have moved did not (e.g. a width mismatch).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "new": self.new,
            "unused": self.unused,
            "notes": self.notes,
        }

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"initialised from {self.source}: {len(self.loaded)} tensors loaded, "
            f"{len(self.new)} new, {len(self.unused)} of the checkpoint unused"
            + ("; " + "; ".join(self.notes) if self.notes else "")
        )


def transfer_backbone(model: nn.Module, checkpoint: str | Path) -> TransferReport:
    """Load a classification checkpoint's backbone (and DNC normalisation) into ``model``.

    Args:
        model: a segmentation model whose state-dict keys start with ``backbone.``.
        checkpoint: a classification ``checkpoint.safetensors`` or its run folder.

    Raises:
        ValueError: the checkpoint is not a classification one, or its backbone does
            not match (the message lists the missing and mismatched tensors).
    """
    path = resolve_checkpoint(checkpoint)
    saved = Checkpoint.load(path)
    if saved.task != "classification":
        raise ValueError(f"--init-from needs a classification checkpoint; {path} is {saved.task}")
    source = saved.model
    target = model.state_dict()
    backbone = [key for key in target if key.startswith(BACKBONE_PREFIX)]
    if not backbone:
        raise ValueError(f"{type(model).__name__} has no backbone.* tensors to initialise")
    problems = []
    for key in backbone:
        wanted = target[key]
        given = source.get(key[len(BACKBONE_PREFIX) :])
        if given is None:
            problems.append(f"{key}: missing from the checkpoint")
        elif given.shape != wanted.shape:
            problems.append(f"{key}: checkpoint {tuple(given.shape)}, model {tuple(wanted.shape)}")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        trained = saved.config.get("model", "?")
        raise ValueError(
            f"the backbone of {path} (model {trained!r}) does not match the segmentation "
            f"model's: {len(problems)} of {len(backbone)} tensors differ:\n  {shown}{more}"
        )
    updates = {key: source[key[len(BACKBONE_PREFIX) :]] for key in backbone}
    report = TransferReport(source=str(path))
    used = {key[len(BACKBONE_PREFIX) :] for key in backbone}
    norm_source = _dnc_norm_keys(source)
    if norm_source and _has_projection(source, norm_source):
        report.notes.append(
            "the DNC embedding normalisation was not loaded: it follows the classifier's "
            "projection, which is dropped at transfer"
        )
    elif norm_source and all(key in target for key in _NORM_TARGETS):
        pairs = list(zip(_NORM_TARGETS, norm_source, strict=True))
        if all(source[s].shape == target[t].shape for t, s in pairs):
            updates.update({t: source[s] for t, s in pairs})
            used.update(norm_source)
        else:
            report.notes.append(
                f"the DNC embedding normalisation was not loaded: it is "
                f"{tuple(source[norm_source[0]].shape)} wide in the checkpoint and "
                f"{tuple(target[_NORM_TARGETS[0]].shape)} in the model "
                "(set model_options.decoder_channels to match)"
            )
    with torch.no_grad():
        for key, value in updates.items():
            target[key].copy_(value)
    report.loaded = sorted(updates)
    report.new = sorted(set(target) - set(updates))
    report.unused = sorted(set(source) - used)
    return report


def _has_projection(source: dict[str, torch.Tensor], norm_keys: tuple[str, str]) -> bool:
    """Whether the DNC head whose LayerNorm is ``norm_keys`` projects its inputs first."""
    return norm_keys[0].removesuffix("norm.weight") + "projection.weight" in source


def _dnc_norm_keys(source: dict[str, torch.Tensor]) -> tuple[str, str] | None:
    """``(weight, bias)`` keys of the DNC head's LayerNorm in a classification state dict."""
    for key in source:
        if key.endswith(".bank.subcentroids"):
            prefix = key[: -len("bank.subcentroids")]
            weight, bias = prefix + "norm.weight", prefix + "norm.bias"
            if weight in source and bias in source:
                return weight, bias
    return None
