"""What every dataset of the registry returns: two splits of images and labels, and facts.

Small sets (Fashion-MNIST, MNIST, CIFAR, digits) are held in memory as one uint8 tensor
and augmented by slicing, which costs microseconds per image instead of the
milliseconds of a PIL pipeline; that matters on a 2-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from deepnc.data.normalise import normalise
from deepnc.nn.grouping import rank_within_class

__all__ = [
    "DatasetSplits",
    "ImageTensorDataset",
    "dataset_labels",
    "hold_out",
    "item_file",
    "item_name",
    "take_subset",
    "validate_split",
]


@dataclass
class DatasetSplits:
    """A dataset's train and test splits and what a model needs to know about them.

    Attributes:
        name: registry name, e.g. ``"fashion-mnist"``.
        train, test: datasets yielding ``(image (C, H, W) float32, label int)``.
        num_classes: C; labels lie in ``[0, C)``.
        in_channels: 1 for greyscale, 3 for RGB.
        image_size: side of the square images the transforms produce.
        class_names: C readable names.
        mean, std: per-channel normalisation applied by the transforms.
        task: ``"classification"`` (labels are ints) or ``"segmentation"`` (labels are
            ``(H, W)`` int64 masks).
        ignore_index: mask value that marks pixels without a label (segmentation only).
        val: an optional validation split, of the same kind as ``test``.
        full_resolution: evaluation items keep each image's own size (segmentation sets
            streamed from files): images rescaled to ``test_scale``, masks as stored.
        test_scale: ``(long, short)`` rescale of evaluation images, or ``None``.
        unreadable: messages naming the image files left out because they cannot be
            decoded (``skip_unreadable``), empty otherwise.
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    class_names: list[str]
    mean: tuple[float, ...] = field(default=(0.5,))
    std: tuple[float, ...] = field(default=(0.5,))
    task: str = "classification"
    ignore_index: int | None = None
    val: Dataset | None = None
    full_resolution: bool = False
    test_scale: tuple[int, int] | None = None
    unreadable: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        """JSON-ready facts stored with checkpoints (no tensors, no paths)."""
        facts = {
            "name": self.name,
            "task": self.task,
            "ignore_index": self.ignore_index,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "train_size": len(self.train),
            "test_size": len(self.test),
        }
        if self.full_resolution:  # absent from the facts of every other set
            facts["full_resolution"] = True
            facts["test_scale"] = list(self.test_scale) if self.test_scale else None
        return facts


class ImageTensorDataset(Dataset):
    """Images in memory with optional random-crop and flip augmentation.

    Args:
        images: ``(N, C, H, W)`` uint8.
        labels: ``(N,)`` integer class indices.
        mean, std: per-channel normalisation of images scaled to ``[0, 1]``.
        image_size: resize (bilinear, antialiased, once at construction) to this side.
        crop_padding: zero-pad by this many pixels and crop back at a random offset.
        flip: random horizontal flips.

    Items are ``(image (C, S, S) float32, label int)``. The augmentation draws from
    torch's global generator, which the engine re-seeds every epoch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        image_size: int | None = None,
        crop_padding: int = 0,
        flip: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"labels must be (N,) = ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        if image_size is not None and image_size != images.shape[-1]:
            images = _resize(images, image_size)
        self.size = images.shape[-1]
        self.crop_padding = crop_padding
        self.flip = flip
        self.images = F.pad(images, [crop_padding] * 4) if crop_padding else images
        self.labels = labels.long()
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.crop_padding:
            top, left = torch.randint(0, 2 * self.crop_padding + 1, (2,)).tolist()
            image = image[:, top : top + self.size, left : left + self.size]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return normalise(image, self.mean, self.std), int(self.labels[index])


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    out = []
    for chunk in images.split(4096):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True)
        out.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images scaled to ``[0, 1]``."""
    scaled = images[:10_000].float().div(255).transpose(0, 1).flatten(1)
    return tuple(scaled.mean(1).tolist()), tuple(scaled.std(1).clamp_min(1e-3).tolist())


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """``(N,)`` labels of a dataset without loading its images, where it exposes them.

    Understands ``labels`` (this package), ``targets`` (torchvision) and ``Subset``.
    """
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    for attribute in ("labels", "targets"):
        if hasattr(dataset, attribute):
            return torch.as_tensor(getattr(dataset, attribute), dtype=torch.long)
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)


def item_file(dataset: Dataset, index: int) -> Path | None:
    """The file that item ``index`` of ``dataset`` is read from, or ``None`` (an in-memory
    set). Follows ``Subset`` and ``ClassSubset`` (their ``dataset`` and ``indices``) down
    to a dataset with torchvision's ``samples`` (``(path, label)`` pairs) or ``files``."""
    while hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        index, dataset = int(dataset.indices[index]), dataset.dataset
    if hasattr(dataset, "samples"):
        return Path(dataset.samples[index][0])
    if hasattr(dataset, "files"):
        return Path(dataset.files[index])
    return None


def item_name(dataset: Dataset, index: int, root: str | Path | None) -> str | None:
    """:func:`item_file` as a string, relative to ``root`` where the file lies under it
    (what a person who has the data opens), or ``None``."""
    file = item_file(dataset, index)
    if file is None:
        return None
    if root is not None and file.resolve().is_relative_to(Path(root).resolve()):
        return file.resolve().relative_to(Path(root).resolve()).as_posix()
    return str(file)


def take_subset(dataset: Dataset, size: int, seed: int) -> Dataset:
    """A class-balanced, seeded subset of ``size`` samples (the whole set if it is smaller).

    Samples are drawn round-robin over classes from a seeded permutation, so every class
    keeps its share and the same ``seed`` always gives the same subset.
    """
    if size >= len(dataset):
        return dataset
    labels = dataset_labels(dataset)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    # Rank of each sample within its class, in shuffled order: take ranks 0, 1, 2, ...
    rank = rank_within_class(labels[order], int(labels.max()) + 1)
    keep = order[torch.argsort(rank * len(labels) + torch.arange(len(labels)), stable=True)[:size]]
    return Subset(dataset, keep.sort().values.tolist())


def hold_out(dataset: Dataset, size: int, plain: Dataset | None = None) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)``: the samples of ``dataset`` outside a class-balanced subset of
    ``size`` drawn with seed 0 (:func:`take_subset`), and that subset taken from
    ``plain`` (the same samples without augmentation; default ``dataset``).

    Raises:
        ValueError: ``size`` is not a positive int smaller than the dataset.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size < len(dataset):
        raise ValueError(
            f"validation_size must be a positive int below the {len(dataset)} training images, "
            f"got {size!r}"
        )
    held_out = take_subset(dataset, size, seed=0)
    taken = set(held_out.indices)
    rest = [index for index in range(len(dataset)) if index not in taken]
    return Subset(dataset, rest), Subset(plain if plain is not None else dataset, held_out.indices)


def validate_split(dataset: Dataset, num_classes: int, description: str) -> None:
    """Raise ``ValueError`` for an empty split or labels outside ``[0, num_classes)``."""
    if len(dataset) == 0:
        raise ValueError(f"{description} is empty: no images to train or evaluate on")
    labels = dataset_labels(dataset)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.numel():
        raise ValueError(
            f"{description} has labels outside [0, {num_classes}): "
            f"{sorted(set(bad.tolist()))[:10]} ({bad.numel()} samples)"
        )
