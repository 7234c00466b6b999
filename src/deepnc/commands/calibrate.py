"""What ``deepnc calibrate`` does: the scores of known images, stored in a checkpoint, so
that ``predict --reject-at`` works from the checkpoint alone.

A rejection threshold keeps a chosen share of known images
(:func:`deepnc.openset.calibrate_threshold`). The share is chosen when predicting, so the
checkpoint keeps the scores themselves, sorted (at most :data:`MAX_SCORES`: evenly spaced
order statistics of a larger split), with the split, dataset and class names they were
computed with. Editing the classes or snapping changes the scores: those commands drop
the stored calibration.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from deepnc.engine.checkpoint import Checkpoint, resolve_checkpoint
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.models.outputs import main_and_aux
from deepnc.nn.hooks import dnc_heads
from deepnc.openset import confidence_scores

__all__ = ["MAX_SCORES", "calibrate_checkpoint", "known_scores", "model_scores", "stored_scores"]

MAX_SCORES = 10_000
SPLITS = ("test", "val")


def model_scores(model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """``(N,)`` confidence of ``(N, C)`` logits: the cosine to the nearest sub-centroid for a
    model with one DNC head (whose logits are cosines over tau), the largest softmax
    probability otherwise."""
    heads = dnc_heads(model)
    if len(heads) == 1 and heads[0].logit_norm is None:
        return confidence_scores(logits, "similarity", tau=heads[0].tau)
    return confidence_scores(logits, "max_softmax")


@torch.no_grad()
def known_scores(
    model: torch.nn.Module, split, *, device: str | torch.device = "cpu", batch_size: int = 256
) -> torch.Tensor:
    """``(N,)`` :func:`model_scores` of every image of ``split`` (a dataset of
    ``(image, label)``), in order."""
    scores = []
    for images, _ in DataLoader(split, batch_size, shuffle=False):
        logits, _ = main_and_aux(model(images.to(device)))
        scores.append(model_scores(model, logits.float().cpu()))
    return torch.cat(scores)


def stored_scores(checkpoint: Checkpoint) -> torch.Tensor | None:
    """The calibration scores a checkpoint holds (``(M,)``, sorted descending), or ``None``."""
    record = checkpoint.extra.get("calibration")
    if not record:
        return None
    if record.get("class_names") != checkpoint.class_names:
        return None  # made for other classes: a stale record
    return torch.tensor(record["scores"], dtype=torch.float64)


def calibration_record(scores: torch.Tensor, **facts) -> dict:
    """The JSON kept under ``extra["calibration"]``: ``scores`` sorted descending (at most
    :data:`MAX_SCORES` evenly spaced order statistics) and ``facts``."""
    ordered = scores.double().sort(descending=True).values
    if len(ordered) > MAX_SCORES:
        ranks = torch.linspace(0, len(ordered) - 1, MAX_SCORES).round().long()
        ordered = ordered[ranks]
    return {"scores": [round(float(v), 7) for v in ordered], "images": len(scores), **facts}


def calibrate_checkpoint(
    path: str | Path,
    *,
    split: str = "test",
    data_root: str | None = None,
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> tuple[dict, Path]:
    """Score ``split`` of the checkpoint's dataset and store the scores in the checkpoint.

    Args:
        path: a checkpoint file or run folder.
        split: ``"test"``, or ``"val"`` (a run with ``validation_size``): images the model
            was not trained on.
        data_root: where the dataset is now (default: where it was trained).
        out: the checkpoint to write (default: the one read, replaced atomically).

    Returns:
        ``(the record stored, the path written)``.

    Raises:
        ValueError: a segmentation checkpoint, an unknown split, or one the run lacks.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = resolve_checkpoint(path)
    model, checkpoint = load_trained_model(source, device)
    if checkpoint.task != "classification":
        raise ValueError("calibration is for classification checkpoints (rejection of images)")
    data = load_checkpoint_dataset(checkpoint, data_root=data_root)
    images = data.test if split == "test" else data.val
    if images is None:
        raise ValueError(
            "split val needs a run trained with validation_size (a held-out split); use test"
        )
    scores = known_scores(model, images, device=device, batch_size=batch_size)
    if len(scores) == 0:
        raise ValueError(f"the {split} split is empty: nothing to calibrate on")
    record = calibration_record(
        scores, split=split, dataset=data.name, class_names=checkpoint.class_names
    )
    checkpoint.extra = {**checkpoint.extra, "calibration": record}
    target = Path(out) if out else source
    checkpoint.save(target)
    return record, target
