"""What ``deepnc add-classes`` and ``remove-classes`` do to a checkpoint: new classes from
folders of example images, or classes removed, written as a new checkpoint (the old one
is left as it is) whose class names follow. See :mod:`deepnc.incremental` for the
method: the old classes' sub-centroids do not move and no weight of the network changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from deepnc.data.image_files import find_images, image_batches
from deepnc.engine.checkpoint import Checkpoint, resolve_checkpoint
from deepnc.engine.restore import load_trained_model
from deepnc.incremental import add_classes, head_inputs, remove_classes
from deepnc.nn.hooks import single_dnc_head

__all__ = ["add_classes_from_folders", "remove_named_classes"]


@torch.no_grad()
def add_classes_from_folders(
    checkpoint: str | Path,
    folder: str | Path,
    out: str | Path,
    *,
    num_subcentroids: int | None = 1,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> tuple[Checkpoint, list[str]]:
    """Add one class per subfolder of ``folder`` (its name the class name, its images the
    examples) to a classification checkpoint's DNC head; write the result to ``out``.

    Args:
        num_subcentroids: distinct sub-centroids per new class; 1 (the default) suits a
            few examples per class, ``None`` takes the head's K.

    Returns:
        ``(the new checkpoint, messages for the files skipped)``.

    Raises:
        ValueError: not a DNC classification checkpoint, no class folder, a class
            without a readable image, a name that exists, or ``out`` is the checkpoint.
    """
    model, saved = _editable(checkpoint, out, device)
    head = single_dnc_head(model, "add-classes needs")
    classes = (
        sorted(p for p in Path(folder).iterdir() if p.is_dir()) if Path(folder).is_dir() else []
    )
    if not classes:
        raise ValueError(f"{folder} holds no class folder (one subfolder of images per class)")
    features, labels, skipped = [], [], []
    for label, class_dir in enumerate(classes):
        batches = []
        for batch in image_batches(find_images([class_dir]), saved.dataset, batch_size):
            skipped += batch.skipped
            if batch.images is not None:
                batches.append((batch.images, torch.full((len(batch.images),), label)))
        if not batches:
            raise ValueError(f"{class_dir} holds no readable image for its class")
        inputs, targets = head_inputs(model, batches, device)
        features.append(inputs)
        labels.append(targets)
    names = [p.name for p in classes]
    add_classes(
        head,
        torch.cat(features),
        torch.cat(labels),
        num_subcentroids=num_subcentroids,
        names=names,
        class_names=saved.class_names,
    )
    edited = _edited(saved, model, saved.class_names + names)
    if edited.exemplars is not None:  # the new classes' examples are not training images
        rows = [[-1] * head.num_subcentroids for _ in names]
        similarity = [[float("nan")] * head.num_subcentroids for _ in names]
        edited.exemplars = {
            **edited.exemplars,
            "indices": edited.exemplars["indices"] + rows,
            "similarity": edited.exemplars["similarity"] + similarity,
        }
    edited.extra = {**edited.extra, "added_classes": {"names": names, "from": str(folder)}}
    edited.save(out)
    return edited, skipped


@torch.no_grad()
def remove_named_classes(
    checkpoint: str | Path, names: Sequence[str], out: str | Path
) -> Checkpoint:
    """Remove the classes called ``names`` from a DNC checkpoint; write it to ``out``.

    Raises:
        ValueError: an unknown name, every class named, or ``out`` is the checkpoint.
    """
    model, saved = _editable(checkpoint, out, "cpu")
    head = single_dnc_head(model, "remove-classes needs")
    unknown = sorted(set(names) - set(saved.class_names))
    if unknown:
        raise ValueError(f"no class {unknown}; the classes are {saved.class_names}")
    remaining = remove_classes(head, [saved.class_names.index(name) for name in names])
    edited = _edited(saved, model, [saved.class_names[i] for i in remaining])
    if edited.exemplars is not None:
        edited.exemplars = {
            **edited.exemplars,
            **{
                key: [edited.exemplars[key][i] for i in remaining]
                for key in ("indices", "similarity")
            },
        }
    edited.extra = {**edited.extra, "removed_classes": list(names)}
    edited.save(out)
    return edited


def _editable(checkpoint, out, device):
    model, saved = load_trained_model(checkpoint, device)
    if saved.task != "classification":
        raise ValueError("adding and removing classes is for classification checkpoints")
    if resolve_checkpoint(out).resolve() == resolve_checkpoint(checkpoint).resolve():
        raise ValueError(f"{out} is the checkpoint itself: write the edited one elsewhere")
    return model, saved


def _edited(saved: Checkpoint, model, class_names: list[str]) -> Checkpoint:
    """A checkpoint for use with the edited model and its classes (a stored calibration is
    dropped: the scores of known images change with the classes)."""
    dataset = {**saved.dataset, "num_classes": len(class_names), "class_names": class_names}
    extra = {key: value for key, value in saved.extra.items() if key != "calibration"}
    return saved.for_use(model=dict(model.state_dict()), dataset=dataset, extra=extra)
