"""Any class-per-subfolder image collection, the layout of torchvision's ``ImageFolder``.

Either ``root/train/<class>/*`` with ``root/val/<class>/*`` (or ``test/``), or a single
``root/<class>/*`` tree that is split per class with a seeded 80/20 split. Images of any
size are resized to ``image_size``; greyscale collections stay one-channel.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from deepnc.data.base import DatasetSplits
from deepnc.utils.errors import UnreadableImageError

__all__ = ["UnreadableImageError", "load_imagefolder"]

_LAYOUT = (
    "expected ROOT/train/<class>/<image> and ROOT/val/<class>/<image> (or ROOT/test/...), "
    "or ROOT/<class>/<image> to be split 80/20"
)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _ImageLoader:
    """Opens a file as an RGB or greyscale PIL image, naming the file when it fails."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, path: str) -> Image.Image:
        try:
            with Image.open(path) as image:
                return image.convert(self.mode)
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise UnreadableImageError(f"cannot read image {path}: {error}") from error


def load_imagefolder(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    channels: int | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Load an image folder (see the module docstring for the layouts).

    Args:
        root: the folder; required.
        image_size: side of the square images after resizing (default 64).
        augment: random crop (pad 1/8) and horizontal flip on the train split.
        channels: 1 or 3; default: 1 when the first image is greyscale, else 3.
        seed: seed of the 80/20 split of a single tree.
    """
    if root is None:
        raise ValueError(f"the imagefolder dataset needs --data-root: {_LAYOUT}")
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"imagefolder root {root} does not exist: {_LAYOUT}")
    train_dir = root_path / "train"
    test_dir = next((root_path / n for n in ("val", "test") if (root_path / n).is_dir()), None)
    size = image_size or 64
    probe = ImageFolder(str(train_dir if train_dir.is_dir() else root_path))
    if not probe.samples:
        raise ValueError(f"no images found under {root}: {_LAYOUT}")
    if channels is None:
        channels = 1 if _first_mode(probe) in ("L", "1", "I;16", "I") else 3
    mode = "L" if channels == 1 else "RGB"
    mean, std = ((0.5,), (0.5,)) if channels == 1 else (_IMAGENET_MEAN, _IMAGENET_STD)
    train_tf, test_tf = _transforms(size, mean, std, augment)
    loader = _ImageLoader(mode)
    if train_dir.is_dir():
        if test_dir is None:
            raise FileNotFoundError(f"{root} has train/ but no val/ or test/: {_LAYOUT}")
        train = ImageFolder(str(train_dir), transform=train_tf, loader=loader)
        test = ImageFolder(str(test_dir), transform=test_tf, loader=loader)
        if test.classes != train.classes:
            raise ValueError(
                f"class folders differ between {train_dir} and {test_dir}: "
                f"{sorted(set(train.classes) ^ set(test.classes))}"
            )
    else:
        train, test = _seeded_split(root_path, train_tf, test_tf, loader, seed)
    classes = train.dataset.classes if isinstance(train, Subset) else train.classes
    return DatasetSplits(
        name="imagefolder",
        train=train,
        test=test,
        num_classes=len(classes),
        in_channels=channels,
        image_size=size,
        class_names=list(classes),
        mean=mean,
        std=std,
    )


def _first_mode(folder: ImageFolder) -> str:
    path = folder.samples[0][0]
    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError) as error:
        raise UnreadableImageError(f"cannot read image {path}: {error}") from error


def _transforms(size: int, mean, std, augment: bool) -> tuple[v2.Compose, v2.Compose]:
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    resize = v2.Resize((size, size), antialias=True)
    test = v2.Compose([resize, *tail])
    if not augment:
        return test, test
    train = v2.Compose(
        [resize, v2.RandomCrop(size, padding=max(1, size // 8)), v2.RandomHorizontalFlip(), *tail]
    )
    return train, test


def _seeded_split(root: Path, train_tf, test_tf, loader, seed: int) -> tuple[Dataset, Dataset]:
    train_view = ImageFolder(str(root), transform=train_tf, loader=loader)
    test_view = ImageFolder(str(root), transform=test_tf, loader=loader)
    targets = torch.tensor(train_view.targets)
    generator = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for cls in targets.unique():
        members = torch.nonzero(targets == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = max(1, round(0.2 * len(members))) if len(members) > 1 else 0
        test_idx += members[:cut].tolist()
        train_idx += members[cut:].tolist()
    return Subset(train_view, sorted(train_idx)), Subset(test_view, sorted(test_idx))
