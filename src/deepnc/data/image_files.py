"""Image files read as a model's inputs: decoded, resized and normalised like the
dataset a checkpoint was trained on (its facts: channels, size, mean, std).

Files are decoded one per item of a :class:`ImageFiles` dataset, so a
``DataLoader`` can decode them in worker processes while the model runs; pixels stay
uint8 until a whole batch is normalised at once (:func:`image_batches`). A file that
cannot be decoded is named, never a crash mid-folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2.functional import resize

from deepnc.data.normalise import normalise
from deepnc.data.seg_pipeline import rescale_size

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageBatch",
    "ImageFiles",
    "decode_image",
    "find_images",
    "image_batches",
    "read_image",
    "read_pixels",
]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """The files given, with every folder replaced by its image files (recursively, sorted)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def decode_image(path: str | Path, facts: Mapping[str, Any]) -> tuple[torch.Tensor, tuple]:
    """``(uint8 pixels (C, h, w), (height, width) of the file)``: the image at ``path`` in
    the model's channels, resized (bilinear, antialiased) to its ``image_size`` square
    unless already so, or, for a set evaluated at full resolution (``full_resolution``
    in the facts), rescaled to its ``test_scale`` with the aspect ratio kept. Decoded by
    PIL (torchvision's decoders are deprecated since 0.29).

    Raises:
        ValueError: the file cannot be read or decoded (the message names it).
    """
    size = facts["image_size"]
    tensor = read_pixels(path, facts["in_channels"])
    original = tuple(tensor.shape[-2:])
    target = (size, size)
    if facts.get("full_resolution"):
        scale = facts.get("test_scale")
        target = rescale_size(*original, scale) if scale else original
    if original != target:
        tensor = resize(tensor, list(target), antialias=True)
    return tensor, original


def read_pixels(path: str | Path, channels: int) -> torch.Tensor:
    """uint8 ``(channels, H, W)`` pixels of an image file, greyscale (1) or RGB (3).

    Raises:
        ValueError: the file cannot be read or decoded (the message names it).
    """
    try:
        with Image.open(path) as image:
            pixels = np.array(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error
    tensor = torch.from_numpy(pixels)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def read_image(path: str | Path, facts: Mapping[str, Any]) -> torch.Tensor:
    """``(C, S, S)`` float32: the image at ``path`` as the model's input.

    Args:
        facts: the dataset's ``describe()`` (a checkpoint's ``dataset``): ``in_channels``,
            ``image_size``, ``mean``, ``std``.

    Raises:
        ValueError: the file cannot be read or decoded (the message names it).
    """
    pixels, _ = decode_image(path, facts)
    return normalise(pixels, facts["mean"], facts["std"])


class ImageFiles(Dataset):
    """Image files as items ``(index, uint8 pixels (C, S, S) or None, (H, W) or message)``:
    an unreadable file gives ``None`` and the message that names it."""

    def __init__(self, files: Iterable[str | Path], facts: Mapping[str, Any]) -> None:
        self.files = [Path(file) for file in files]
        self.facts = dict(facts)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, tuple | str]:
        try:
            return (index, *decode_image(self.files[index], self.facts))
        except ValueError as error:
            return index, None, str(error)


@dataclass
class ImageBatch:
    """One batch of :func:`image_batches`.

    Attributes:
        files: the files read, in order.
        images: ``(B, C, S, S)`` float32 normalised inputs, or ``None`` if none was read.
        sizes: ``(height, width)`` of each file read, as stored.
        skipped: messages naming the files that could not be read.
    """

    files: list[Path]
    images: torch.Tensor | None
    sizes: list[tuple[int, int]]
    skipped: list[str]


def image_batches(
    files: Iterable[str | Path],
    facts: Mapping[str, Any],
    batch_size: int,
    *,
    num_workers: int = 0,
) -> Iterator[ImageBatch]:
    """An :class:`ImageBatch` for every ``batch_size`` files in turn, in order.

    Args:
        files: image files.
        facts: as :func:`read_image`.
        num_workers: ``DataLoader`` worker processes that decode while the caller
            computes (0 decodes in this process).
    """
    dataset = ImageFiles(files, facts)
    loader = DataLoader(
        dataset, batch_size, shuffle=False, num_workers=num_workers, collate_fn=_stack_read
    )
    for indices, pixels, sizes, skipped in loader:
        yield ImageBatch(
            files=[dataset.files[index] for index in indices],
            images=None if pixels is None else normalise(pixels, facts["mean"], facts["std"]),
            sizes=sizes,
            skipped=skipped,
        )


def _stack_read(items: list) -> tuple[list[int], torch.Tensor | None, list, list[str]]:
    """``(indices read, uint8 (B, C, S, S) or None, sizes, messages)``: one tensor per
    batch, so a worker process hands over one shared-memory block, not one per image."""
    read = [item for item in items if item[1] is not None]
    pixels = torch.stack([item[1] for item in read]) if read else None
    skipped = [message for _, image, message in items if image is None]
    return [item[0] for item in read], pixels, [item[2] for item in read], skipped
