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

from deepnc.data.normalise import normalise

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageBatch",
    "ImageFiles",
    "decode_image",
    "find_images",
    "image_batches",
    "read_image",
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
    """``(uint8 pixels (C, S, S), (height, width) of the file)``: the image at ``path`` in
    the model's channels, resized (bilinear) to its ``image_size`` unless already so.

    Raises:
        ValueError: the file cannot be read or decoded (the message names it).
    """
    mode = "L" if facts["in_channels"] == 1 else "RGB"
    size = facts["image_size"]
    try:
        with Image.open(path) as image:
            original = (image.height, image.width)
            image = image.convert(mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            pixels = np.array(image, dtype=np.uint8)  # a writable copy for torch
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error
    tensor = torch.from_numpy(pixels)
    return (tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)), original


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
        dataset, batch_size, shuffle=False, num_workers=num_workers, collate_fn=_keep_as_list
    )
    for items in loader:
        read = [item for item in items if item[1] is not None]
        images = torch.stack([pixels for _, pixels, _ in read]) if read else None
        yield ImageBatch(
            files=[dataset.files[index] for index, _, _ in read],
            images=None if images is None else normalise(images, facts["mean"], facts["std"]),
            sizes=[size for _, _, size in read],
            skipped=[message for _, pixels, message in items if pixels is None],
        )


def _keep_as_list(items: list) -> list:
    return items
