"""Image files read as a model's inputs: decoded, resized and normalised like the
dataset a checkpoint was trained on (its facts: channels, size, mean, std)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from deepnc.data.normalise import normalise

__all__ = ["IMAGE_SUFFIXES", "find_images", "image_batches", "read_image"]

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


def read_image(path: str | Path, facts: Mapping[str, Any]) -> torch.Tensor:
    """``(C, S, S)`` float32: the image at ``path`` as the model's input.

    Args:
        facts: the dataset's ``describe()`` (a checkpoint's ``dataset``): ``in_channels``,
            ``image_size``, ``mean``, ``std``.

    Raises:
        ValueError: the file cannot be read or decoded (the message names it).
    """
    mode = "L" if facts["in_channels"] == 1 else "RGB"
    size = facts["image_size"]
    try:
        with Image.open(path) as image:
            image = image.convert(mode).resize((size, size), Image.BILINEAR)
            pixels = np.array(image, dtype=np.uint8)  # a writable copy for torch
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ValueError(f"{path}: cannot read image ({error})") from error
    tensor = torch.from_numpy(pixels)
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return normalise(tensor, facts["mean"], facts["std"])


def image_batches(
    files: Iterable[Path], facts: Mapping[str, Any], batch_size: int
) -> Iterator[tuple[list[Path], torch.Tensor | None, list[str]]]:
    """``(files read, (B, C, S, S) batch or None, messages for the files skipped)`` for
    every ``batch_size`` files in turn: an unreadable file is named and skipped."""
    files = list(files)
    for start in range(0, len(files), batch_size):
        read, images, skipped = [], [], []
        for file in files[start : start + batch_size]:
            try:
                images.append(read_image(file, facts))
                read.append(file)
            except ValueError as error:
                skipped.append(str(error))
        yield read, (torch.stack(images) if images else None), skipped
