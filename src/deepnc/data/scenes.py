"""``fashion-scenes``: a segmentation set derived from real Fashion-MNIST images.

No real multi-class segmentation benchmark can be installed here, so this one is
*derived*: each canvas holds 2-4 real Fashion-MNIST items, each resized to a random side
and pasted at a random position. A pixel is labelled with its item's class + 1 where the
item's own pixel is above a small threshold, else 0 (background): 11 classes. Items
overlap; a later item covers an earlier one. The images are real photographs of
clothing, the layouts are synthetic: read results on it as a controlled test of dense
heads, not as a measure of real-world segmentation.

Canvases are composed once, deterministically from ``scene_seed`` (not from the training
seed, so every run of a comparison sees the same data). Train canvases use items of the
Fashion-MNIST train split, validation canvases a disjoint held-out tenth of it, test
canvases the test split.

>>> items = torch.full((5, 28, 28), 200, dtype=torch.uint8)
>>> images, masks = compose_scenes(items, torch.arange(5), 3, size=32, seed=0)
>>> images.shape, masks.shape, int(masks.max()) <= 5
(torch.Size([3, 1, 32, 32]), torch.Size([3, 32, 32]), True)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepnc.data.base import DatasetSplits, channel_stats
from deepnc.data.in_memory import FASHION_CLASSES, fashion_mnist_arrays
from deepnc.data.masks import MaskedImageDataset

__all__ = ["SCENE_CLASSES", "compose_scenes", "load_fashion_scenes"]

SCENE_CLASSES = ["background", *FASHION_CLASSES]
HELD_OUT_FRACTION = 0.1  # of the Fashion-MNIST train items, reserved for validation canvases


def compose_scenes(
    items: torch.Tensor,
    item_labels: torch.Tensor,
    count: int,
    *,
    size: int = 64,
    items_per_scene: tuple[int, int] = (2, 4),
    item_sides: tuple[int, int] | None = None,
    threshold: int = 26,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste random items onto blank canvases and label every pixel.

    Args:
        items: ``(M, h, w)`` uint8 greyscale items on a black background.
        item_labels: ``(M,)`` their classes in ``[0, C)``; pixels are labelled class + 1.
        count: N canvases.
        size: S, the canvas side.
        items_per_scene: inclusive range of items per canvas.
        item_sides: inclusive range of the side an item is resized to (default
            ``(S * 5 // 16, S * 11 // 16)``, 20-44 pixels on a 64 canvas).
        threshold: an item pixel above this value (of 255) belongs to the item.
        seed: the same seed always gives the same canvases.

    Returns:
        ``(images (N, 1, S, S) uint8, masks (N, S, S) uint8)``.
    """
    if items.ndim != 3 or items.dtype != torch.uint8:
        raise ValueError(f"items must be uint8 (M, h, w), got {items.dtype} {tuple(items.shape)}")
    low, high = items_per_scene
    if not 1 <= low <= high:
        raise ValueError(
            f"items_per_scene must be (low, high) with 1 <= low <= high, got {items_per_scene}"
        )
    smallest, largest = item_sides or (max(4, size * 5 // 16), max(4, size * 11 // 16))
    if not 1 <= smallest <= largest <= size:
        raise ValueError(f"item_sides must lie in [1, size={size}], got {(smallest, largest)}")
    rng = np.random.default_rng(seed)
    per_scene = rng.integers(low, high + 1, count)
    total = int(per_scene.sum())
    scene_of = np.repeat(np.arange(count), per_scene)
    chosen = rng.integers(0, items.shape[0], total)
    sides = rng.integers(smallest, largest + 1, total)
    tops = (rng.random(total) * (size - sides + 1)).astype(np.int64)
    lefts = (rng.random(total) * (size - sides + 1)).astype(np.int64)

    patches: list[np.ndarray | None] = [None] * total
    for side in np.unique(sides):  # one resize call per distinct side
        which = np.nonzero(sides == side)[0]
        source = items[torch.from_numpy(chosen[which])].unsqueeze(1).float()
        resized = F.interpolate(
            source, size=(int(side), int(side)), mode="bilinear", antialias=True
        )
        resized = resized.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()
        for position, index in enumerate(which):
            patches[index] = resized[position]

    images = np.zeros((count, size, size), np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    classes = item_labels.numpy()[chosen] + 1
    for index in range(total):  # in order: a later item covers an earlier one
        patch = patches[index]
        scene, top, left, side = scene_of[index], tops[index], lefts[index], sides[index]
        inside = patch > threshold
        images[scene, top : top + side, left : left + side][inside] = patch[inside]
        masks[scene, top : top + side, left : left + side][inside] = classes[index]
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(masks)


def load_fashion_scenes(
    *,
    root: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
    train_size: int = 4000,
    val_size: int = 500,
    test_size: int = 1000,
    items_per_scene: tuple[int, int] = (2, 4),
    scene_seed: int = 0,
) -> DatasetSplits:
    """Fashion-scenes canvases (see the module docstring); needs Fashion-MNIST.

    Args:
        root, download: where Fashion-MNIST is (see
            :func:`~deepnc.data.in_memory.fashion_mnist_arrays`).
        image_size: the canvas side (default 64).
        augment: random joint horizontal flips of the train split.
        train_size, val_size, test_size: canvases per split.
        items_per_scene: inclusive range of items per canvas.
        scene_seed: seeds the composition (the same seed always gives the same set).
    """
    size = image_size or 64
    if size < 16:
        raise ValueError(f"fashion-scenes canvases must be at least 16 pixels, got {size}")
    for key, value in (
        ("train_size", train_size),
        ("val_size", val_size),
        ("test_size", test_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive number of canvases, got {value!r}")
    arrays = fashion_mnist_arrays(root, download)
    train_items, train_labels = (torch.from_numpy(a.copy()) for a in arrays["train"])
    test_items, test_labels = (torch.from_numpy(a.copy()) for a in arrays["test"])
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(scene_seed))
    held_out = int(len(order) * HELD_OUT_FRACTION)
    fit, val = order[held_out:], order[:held_out]

    def compose(items, labels, count, offset):
        return compose_scenes(
            items,
            labels,
            count,
            size=size,
            items_per_scene=tuple(items_per_scene),
            seed=scene_seed * 3 + offset,
        )

    splits = {
        "train": compose(train_items[fit], train_labels[fit], train_size, 0),
        "val": compose(train_items[val], train_labels[val], val_size, 1),
        "test": compose(test_items, test_labels, test_size, 2),
    }
    mean, std = channel_stats(splits["train"][0])

    def dataset(split: str, flip: bool) -> MaskedImageDataset:
        images, masks = splits[split]
        return MaskedImageDataset(images, masks, mean=mean, std=std, flip=flip)

    return DatasetSplits(
        name="fashion-scenes",
        train=dataset("train", augment),
        test=dataset("test", False),
        val=dataset("val", False),
        num_classes=len(SCENE_CLASSES),
        in_channels=1,
        image_size=size,
        class_names=list(SCENE_CLASSES),
        mean=mean,
        std=std,
        task="segmentation",
    )
