"""What ``deepnc predict`` computes: labels for image files from a checkpoint, with scores,
the top classes, rejection of what the model does not know, and the training exemplar
of the deciding sub-centroid; masks for a segmentation checkpoint.

Files are read in batches (:func:`deepnc.data.image_files.image_batches`), decoded in
``DataLoader`` workers while the model runs; one that cannot be decoded is named and
skipped. Masks are written at each image's own size (logits resized before the argmax).
Scores: the cosine to the nearest sub-centroid for a DNC model (``deepnc.openset``'s
``"similarity"``), the softmax probability for a softmax one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from deepnc.commands.calibrate import known_scores, model_scores, stored_scores
from deepnc.data.image_files import ImageBatch, find_images, image_batches
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.models.outputs import main_and_aux
from deepnc.nn.hooks import captured_inputs, dnc_heads
from deepnc.openset import calibrate_threshold

__all__ = ["Prediction", "Predictor"]


@dataclass
class Prediction:
    """One image's answer. Scores are cosines (DNC) or probabilities (softmax).

    Attributes:
        path: the file.
        label, class_name, score: the predicted class and its score.
        top: ``[(class name, score), ...]``, best first.
        accepted: whether the score clears the rejection threshold (``None`` without one).
        exemplar: the index, in the training split, of the image that the deciding
            sub-centroid was snapped to (``None`` unless the checkpoint is snapped).
        exemplar_file: that image's file, relative to the training data's root (``None``
            for a training set that is not read from files).
        mask: where a segmentation model's mask was written (a class-index PNG).
    """

    path: str
    label: int
    class_name: str
    score: float
    top: list[tuple[str, float]] = field(default_factory=list)
    accepted: bool | None = None
    exemplar: int | None = None
    exemplar_file: str | None = None
    mask: str | None = None


class Predictor:
    """A checkpoint loaded once, ready to label image files.

    Args:
        checkpoint: a checkpoint file or run folder.
        top_k: how many classes each prediction lists.
        reject_at: keep this fraction of known images and mark the images below the
            threshold as rejected (``deepnc.openset.calibrate_threshold``); the known
            images' scores are those stored by ``deepnc calibrate``, else those of the
            checkpoint's test split, computed now (``calibrated_on`` says which);
            ``None``: no rejection.
        data_root: where the checkpoint's dataset is now, for a calibration computed now
            (default: where it was trained).
        masks_dir: where a segmentation checkpoint's masks go (required for those).
        device: where the model runs.
        batch_size: images per forward pass.
        num_workers: processes that decode image files while the model runs (0: in
            this process).
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        top_k: int = 3,
        reject_at: float | None = None,
        data_root: str | None = None,
        masks_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        num_workers: int = 0,
    ):
        for name, value, least in (("top_k", top_k, 1), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        self.num_workers = num_workers
        self.model, self.checkpoint = load_trained_model(checkpoint, device)
        self.device, self.batch_size = torch.device(device), batch_size
        if self.checkpoint.dataset.get("full_resolution"):
            self.batch_size = 1  # images keep their own sizes: one at a time
        self.top_k = min(top_k, self.checkpoint.num_classes)
        heads = dnc_heads(self.model)
        self.head = heads[0] if len(heads) == 1 else None
        self.segmentation = self.checkpoint.task == "segmentation"
        if self.segmentation and masks_dir is None:
            raise ValueError("a segmentation checkpoint writes masks: give masks_dir")
        self.masks_dir = Path(masks_dir) if masks_dir is not None else None
        self.threshold, self.calibrated_on = None, None
        if reject_at is not None:
            if self.segmentation:
                raise ValueError("rejection is for classification checkpoints")
            if not 0 < reject_at <= 1:
                raise ValueError(f"--reject-at must lie in (0, 1] (a share), got {reject_at}")
            known = stored_scores(self.checkpoint)
            if known is not None:
                record = self.checkpoint.extra["calibration"]
                self.calibrated_on = f"{record['images']} {record['split']} images, stored"
            else:
                data = load_checkpoint_dataset(self.checkpoint, data_root=data_root)
                known = known_scores(self.model, data.test, device=self.device, batch_size=256)
                self.calibrated_on = f"{len(known)} test images, computed now"
            self.threshold = calibrate_threshold(known, tpr=reject_at)

    def predict(self, paths: Iterable[str | Path]) -> Iterator[Prediction | str]:
        """A :class:`Prediction` per readable image, in order, and for each unreadable one
        the message that names it. ``paths``: image files, and folders searched
        (:func:`~deepnc.data.image_files.find_images`; pass its result to list them once)."""
        files, facts = find_images(paths), self.checkpoint.dataset
        for batch in image_batches(files, facts, self.batch_size, num_workers=self.num_workers):
            yield from batch.skipped
            if batch.images is not None:
                yield from self._batch(batch)

    @torch.no_grad()
    def _batch(self, batch: ImageBatch) -> list[Prediction]:
        files = batch.files
        capture = captured_inputs(self.head) if self._snapped() else nullcontext([])
        with capture as inputs:  # the head's inputs, for the exemplars of snapped models
            logits, _ = main_and_aux(self.model(batch.images.to(self.device)))
        if self.segmentation:
            items = zip(files, logits, batch.sizes, strict=True)
            return [self._mask(file, item, size) for file, item, size in items]
        logits = logits.float().cpu()
        scores = self._scores(logits)
        cosines = self.head is not None and self.head.logit_norm is None
        shown = logits * self.head.tau if cosines else logits.softmax(dim=1)
        top = shown.topk(self.top_k, dim=1)
        exemplars = self._exemplars(inputs[-1], logits) if self._snapped() else None
        files_of = self.checkpoint.exemplars.get("files") if self._snapped() else None
        names = self.checkpoint.class_names
        return [
            Prediction(
                path=str(file),
                label=int(top.indices[i, 0]),
                class_name=names[int(top.indices[i, 0])],
                score=float(scores[i]),
                top=_named(names, top.indices[i], top.values[i]),
                accepted=None if self.threshold is None else bool(scores[i] >= self.threshold),
                exemplar=None if exemplars is None else int(exemplars[i, 2]),
                exemplar_file=None
                if files_of is None
                else files_of[int(exemplars[i, 0])][int(exemplars[i, 1])],
            )
            for i, file in enumerate(files)
        ]

    def _scores(self, logits: torch.Tensor) -> torch.Tensor:
        return model_scores(self.model, logits)

    def _snapped(self) -> bool:
        return self.head is not None and self.checkpoint.snapped

    def _exemplars(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``(N, 3)``: for each input, the predicted class, its snapped sub-centroid nearest
        the input, and that sub-centroid's training index."""
        embedded = self.head.embed(features).cpu()  # (N, E)
        classes = logits.argmax(dim=1)
        subcentroids = self.head.subcentroids.detach().cpu()[classes]  # (N, K, E)
        nearest = torch.einsum("nd,nkd->nk", embedded, subcentroids).argmax(dim=1)
        indices = torch.tensor(self.checkpoint.exemplars["indices"])
        return torch.stack([classes, nearest, indices[classes, nearest]], dim=1)

    def _mask(self, file: Path, logits: torch.Tensor, size: tuple[int, int]) -> Prediction:
        """Write the class-index mask of ``logits`` ``(C, S, S)`` at the file's own
        ``size`` ``(H, W)``: the logits are resized (bilinear) before the argmax."""
        from PIL import Image

        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits[None].float(), size=size, mode="bilinear")[0]
        mask = logits.argmax(dim=0).to(torch.uint8).cpu()  # (H, W) class indices
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        target = self.masks_dir / f"{file.stem}.png"
        Image.fromarray(mask.numpy(), mode="L").save(target)
        counts = torch.bincount(mask.flatten().long(), minlength=self.checkpoint.num_classes)
        share = counts.double() / counts.sum()
        order = share.argsort(descending=True)[: self.top_k]
        names = self.checkpoint.class_names
        return Prediction(
            path=str(file),
            label=int(order[0]),
            class_name=names[int(order[0])],
            score=float(share[order[0]]),
            top=_named(names, order, share[order]),
            mask=str(target),
        )


def _named(
    names: list[str], classes: torch.Tensor, scores: torch.Tensor
) -> list[tuple[str, float]]:
    return [(names[int(c)], float(v)) for c, v in zip(classes, scores, strict=True)]
