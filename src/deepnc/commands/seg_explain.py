"""``deepnc explain`` for a segmentation checkpoint: per-pixel sub-centroid maps.

For every input (image files and/or test images, with their true masks), writes
``dense_<i>.png`` (input, truth, prediction, matched sub-centroid) and ``dense.json``
(per input: the classes predicted and how many pixels each sub-centroid took).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from deepnc.data import DatasetSplits
from deepnc.data.masks import resize_masks
from deepnc.explain.seg_evidence import explain_pixel
from deepnc.explain.seg_maps import plot_pixel_evidence, plot_subcentroid_map, subcentroid_maps

__all__ = ["explain_pixels", "explain_segmentation"]

BATCH = 16


def explain_segmentation(
    model: nn.Module,
    data: DatasetSplits,
    inputs: list[tuple[str, torch.Tensor]],
    truths: list[torch.Tensor | None],
    out_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Draw and record the sub-centroid map of every input; return the records.

    Args:
        model: a segmentation model with a DNC pixel head (see
            :func:`~deepnc.explain.seg_maps.subcentroid_maps`).
        data: the checkpoint's dataset (names, normalisation, ignore index).
        inputs: ``(name, image (C_in, H, W))`` pairs, normalised like ``data``.
        truths: the true ``(H, W)`` mask of each input, or None.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = model.classifier
    records = []
    same_size = len({image.shape for _, image in inputs}) <= 1
    step = BATCH if same_size else 1  # a full-resolution set: one image at a time
    for start in range(0, len(inputs), step):
        chunk = inputs[start : start + step]
        images = torch.stack([image for _, image in chunk])
        maps = subcentroid_maps(model, images.to(device))
        for offset, (name, image) in enumerate(chunk):
            number = start + offset
            truth = truths[number]
            if truth is not None and truth.shape != image.shape[-2:]:  # shown at image size
                truth = resize_masks(truth[None], tuple(image.shape[-2:]))[0]
            plot_subcentroid_map(
                image,
                maps,
                offset,
                class_names=data.class_names,
                num_subcentroids=head.num_subcentroids,
                mean=data.mean,
                std=data.std,
                path=out / f"dense_{number}.png",
                truth=truth,
                ignore_index=data.ignore_index,
            )
            predicted = maps.predicted[offset].cpu()
            matched = maps.subcentroid[offset].cpu()
            usage = {
                data.class_names[label]: torch.bincount(
                    matched[predicted == label], minlength=head.num_subcentroids
                ).tolist()
                for label in torch.unique(predicted).tolist()
            }
            record = {
                "name": name,
                "figure": f"dense_{number}.png",
                "pixels_per_subcentroid": usage,
            }
            if truth is not None:
                labelled = truth != (data.ignore_index if data.ignore_index is not None else -1)
                correct = (predicted == truth) & labelled
                record["pixel_accuracy"] = float(correct.sum() / labelled.sum().clamp_min(1))
            records.append(record)
    (out / "dense.json").write_text(json.dumps(records, indent=2))
    return records


def explain_pixels(
    model: nn.Module,
    data: DatasetSplits,
    inputs: list[tuple[str, torch.Tensor]],
    pixel: tuple[int, int],
    out_dir: str | Path,
    *,
    top: int = 4,
) -> list[dict]:
    """For ``pixel`` of every input: ``pixel_<i>.png`` and ``pixels.json`` (the deciding
    sub-centroid and the training images nearest it, see
    :func:`~deepnc.explain.seg_evidence.explain_pixel`)."""
    out = Path(out_dir)
    records = []
    for number, (name, image) in enumerate(inputs):
        evidence = explain_pixel(model, image, pixel, data.train, top=top)
        plot_pixel_evidence(
            image,
            evidence,
            lambda index: data.train[index][0],
            class_names=data.class_names,
            mean=data.mean,
            std=data.std,
            path=out / f"pixel_{number}.png",
        )
        records.append(
            {
                "name": name,
                "pixel": list(evidence.pixel),
                "label": data.class_names[evidence.label],
                "subcentroid": evidence.subcentroid,
                "similarity": evidence.similarity,
                "figure": f"pixel_{number}.png",
                "training_images": [
                    {
                        "index": r.index,
                        "similarity": r.similarity,
                        "region_pixels": int(r.region.sum()),
                    }
                    for r in evidence.regions
                ],
            }
        )
    (out / "pixels.json").write_text(json.dumps(records, indent=2))
    return records
