"""The small standard sets, read into memory: Fashion-MNIST, MNIST, CIFAR-10/100, digits, fake.

Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` when it is
installed, else from a torchvision root. Nothing here downloads unless the user passes
``download=True``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from deepnc.data.base import DatasetSplits, ImageTensorDataset, channel_stats

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "FASHION_CLASSES",
    "fashion_mnist_arrays",
    "load_cifar",
    "load_digits",
    "load_fake",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array: images ``(N, H, W)``, labels ``(N,)``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {array.size} bytes")
    return array.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_folder(candidates: list[Path]) -> Path | None:
    for folder in candidates:
        stems = [stem for pair in _IDX_FILES.values() for stem in pair]
        if all(_find_idx(folder, stem) for stem in stems):
            return folder
    return None


def _splits_from_arrays(
    name: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: list[str],
    *,
    image_size: int | None,
    augment: bool,
    crop_padding: int,
    flip: bool,
) -> DatasetSplits:
    """Build both splits from ``{"train": (images, labels), "test": ...}``; images NHW or NHWC."""
    tensors = {}
    for split, (images, labels) in arrays.items():
        images = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        tensors[split] = (images.contiguous(), torch.from_numpy(np.asarray(labels, np.int64)))
    mean, std = channel_stats(tensors["train"][0])
    common = {"mean": mean, "std": std, "image_size": image_size}
    train = ImageTensorDataset(
        *tensors["train"],
        **common,
        crop_padding=crop_padding if augment else 0,
        flip=flip and augment,
    )
    test = ImageTensorDataset(*tensors["test"], **common)
    return DatasetSplits(
        name=name,
        train=train,
        test=test,
        num_classes=len(class_names),
        in_channels=train.images.shape[1],
        image_size=train.size,
        class_names=class_names,
        mean=mean,
        std=std,
    )


def fashion_mnist_arrays(
    root: str | None = None, download: bool = False
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST's raw arrays: ``{"train": (images, labels), "test": (images, labels)}``.

    Images are ``(N, 28, 28)`` uint8, labels ``(N,)`` uint8.

    Looked for, in order: IDX files in ``root`` or ``root/FashionMNIST/raw``, then the
    Debian package's ``/usr/share/datasets/fashion-mnist``; with ``download=True``
    torchvision fetches it into ``root``.
    """
    candidates = [Path(root), Path(root) / "FashionMNIST" / "raw"] if root else []
    folder = _idx_folder([*candidates, DEBIAN_FASHION_MNIST])
    if folder is None and download:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(root or "data", train=True, download=True)
        FashionMNIST(root or "data", train=False, download=True)
        folder = _idx_folder([Path(root or "data") / "FashionMNIST" / "raw"])
    if folder is None:
        where = f" under {root}" if root else ""
        raise FileNotFoundError(
            f"Fashion-MNIST not found{where}. Install it with "
            "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, files in "
            f"{DEBIAN_FASHION_MNIST}), put the four IDX files in --data-root, or pass "
            "--download (needs the internet)."
        )
    return {
        split: tuple(read_idx(_find_idx(folder, stem)) for stem in stems)
        for split, stems in _IDX_FILES.items()
    }


def load_fashion_mnist(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
) -> DatasetSplits:
    """Fashion-MNIST: 60,000 + 10,000 greyscale 28x28 images of 10 kinds of clothing.

    Where it is looked for: see :func:`fashion_mnist_arrays`.
    """
    return _splits_from_arrays(
        "fashion-mnist",
        fashion_mnist_arrays(root, download),
        FASHION_CLASSES,
        image_size=image_size,
        augment=augment,
        crop_padding=2,
        flip=True,
    )


def load_mnist(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
) -> DatasetSplits:
    """MNIST through torchvision from ``root`` (``download=True`` fetches it)."""
    from torchvision.datasets import MNIST

    arrays = {}
    for split in ("train", "test"):
        dataset = _torchvision_or_explain(MNIST, "mnist", root, split == "train", download)
        arrays[split] = (dataset.data.numpy(), dataset.targets.numpy())
    return _splits_from_arrays(
        "mnist",
        arrays,
        [str(i) for i in range(10)],
        image_size=image_size,
        augment=augment,
        crop_padding=2,
        flip=False,
    )


def load_cifar(
    num_classes: int,
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
) -> DatasetSplits:
    """CIFAR-10 or CIFAR-100 through torchvision from ``root``, with crop (pad 4) and flip."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, name = (CIFAR10, "cifar10") if num_classes == 10 else (CIFAR100, "cifar100")
    arrays, class_names = {}, []
    for split in ("train", "test"):
        dataset = _torchvision_or_explain(cls, name, root, split == "train", download)
        arrays[split] = (dataset.data, np.asarray(dataset.targets))
        class_names = list(dataset.classes)
    return _splits_from_arrays(
        name, arrays, class_names, image_size=image_size, augment=augment, crop_padding=4, flip=True
    )


def _torchvision_or_explain(cls, name: str, root: str | None, train: bool, download: bool):
    if root is None and not download:
        raise FileNotFoundError(
            f"{name} needs --data-root pointing at a torchvision copy of it, "
            "or --download (needs the internet) to fetch one there"
        )
    try:
        return cls(root or "data", train=train, download=download)
    except RuntimeError as error:
        raise FileNotFoundError(
            f"{name} not found under {root}: {error} Pass --download (needs the internet) "
            "or point --data-root at the folder that torchvision downloaded it into."
        ) from error


def load_digits(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
) -> DatasetSplits:
    """scikit-learn's 1,797 8x8 digits, split 80/20 per class with a fixed seed (always present)."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    data = sklearn_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        images, data.target, test_size=0.2, stratify=data.target, random_state=0
    )
    return _splits_from_arrays(
        "digits",
        {"train": (train_x, train_y), "test": (test_x, test_y)},
        [str(i) for i in range(10)],
        image_size=image_size,
        augment=augment,
        crop_padding=1,
        flip=False,
    )


def load_fake(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    num_classes: int = 10,
    train_size: int = 256,
    test_size: int = 64,
) -> DatasetSplits:
    """torchvision ``FakeData`` (random RGB images, random labels), for smoke tests only."""
    from torchvision.datasets import FakeData
    from torchvision.transforms.functional import pil_to_tensor

    size = image_size or 32
    arrays = {}
    for split, count, offset in (("train", train_size, 0), ("test", test_size, train_size)):
        fake = FakeData(count, (3, size, size), num_classes, random_offset=offset)
        items = [fake[i] for i in range(count)]
        images = torch.stack([pil_to_tensor(image) for image, _ in items]).permute(0, 2, 3, 1)
        arrays[split] = (images.numpy(), np.array([label for _, label in items]))
    return _splits_from_arrays(
        "fake",
        arrays,
        [f"class{i}" for i in range(num_classes)],
        image_size=None,
        augment=augment,
        crop_padding=2,
        flip=True,
    )
