"""fashion-scenes and segfolder: deterministic composition, masks that match pixels, bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from deepnc.data import compose_scenes, load_dataset
from deepnc.data.in_memory import DEBIAN_FASHION_MNIST
from deepnc.data.masks import MaskedImageDataset, check_mask_values

needs_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist"
)


def _items(count=6, side=12):
    generator = torch.Generator().manual_seed(0)
    items = torch.randint(0, 256, (count, side, side), generator=generator, dtype=torch.uint8)
    return items, torch.arange(count) % 3


def test_compose_scenes_is_deterministic_and_labels_every_item_pixel():
    items, labels = _items()
    images, masks = compose_scenes(items, labels, 20, size=32, seed=3, threshold=26)
    again_images, again_masks = compose_scenes(items, labels, 20, size=32, seed=3, threshold=26)
    other_images, _ = compose_scenes(items, labels, 20, size=32, seed=4, threshold=26)
    assert torch.equal(images, again_images) and torch.equal(masks, again_masks)
    assert not torch.equal(images, other_images)
    assert images.shape == (20, 1, 32, 32) and masks.shape == (20, 32, 32)
    # A pixel is labelled exactly where an item's pixel above the threshold was pasted.
    assert torch.equal(masks > 0, images[:, 0] > 26)
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3}


def test_compose_scenes_puts_the_later_item_on_top():
    bright = torch.full((2, 8, 8), 200, dtype=torch.uint8)
    images, masks = compose_scenes(
        bright, torch.tensor([0, 1]), 50, size=8, items_per_scene=(2, 2), item_sides=(8, 8)
    )
    # Two full-canvas items: the second one covers the first everywhere.
    assert (images == 200).all()
    assert all(len(mask.unique()) == 1 for mask in masks)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(items_per_scene=(3, 2)), "items_per_scene"),
        (dict(item_sides=(4, 40)), "item_sides"),
    ],
)
def test_compose_scenes_rejects_bad_arguments(kwargs, message):
    items, labels = _items()
    with pytest.raises(ValueError, match=message):
        compose_scenes(items, labels, 2, size=32, **kwargs)


@needs_fashion
def test_fashion_scenes_splits():
    data = load_dataset(
        "fashion-scenes", image_size=32, train_size=40, val_size=8, test_size=12, train_subset=30
    )
    assert data.task == "segmentation" and data.num_classes == 11 and data.in_channels == 1
    assert (len(data.train), len(data.val), len(data.test)) == (30, 8, 12)
    assert data.class_names[0] == "background"
    image, mask = data.test[0]
    assert image.shape == (1, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64
    again = load_dataset("fashion-scenes", image_size=32, train_size=40, val_size=8, test_size=12)
    assert torch.equal(again.test.masks, data.test.masks)  # independent of the training seed
    with pytest.raises(ValueError, match="does not take options \\['size'\\]"):
        load_dataset("fashion-scenes", size=3)


def test_masked_dataset_flips_image_and_mask_together():
    images = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(8, 1, 1, 1)
    masks = torch.arange(16).view(1, 4, 4).repeat(8, 1, 1) % 5
    dataset = MaskedImageDataset(images, masks, mean=(0.0,), std=(1 / 255,), flip=True)
    flipped = 0
    for index in range(8):
        image, mask = dataset[index]
        assert torch.equal(image[0].round().long() % 5, mask)
        flipped += int(mask[0, 0] != 0)
    assert 0 < flipped < 8
    with pytest.raises(ValueError, match="masks are"):
        MaskedImageDataset(images, masks[:, :3], mean=(0.0,), std=(1.0,))


def test_check_mask_values_names_the_place_and_values():
    check_mask_values(torch.tensor([0, 1, 255]), 2, 255, "mask a.png")
    with pytest.raises(ValueError, match=r"mask a.png holds values \[7\]"):
        check_mask_values(torch.tensor([0, 7, 255]), 2, 255, "mask a.png")


def _write_pair(folder, name, image, mask):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{name}.png")
    if mask is not None:
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


def _segfolder(root, count=3, size=10, bad=None):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(count):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            mask = rng.integers(0, 3, (size, size), dtype=np.uint8)
            mask[0, 0] = 255
            _write_pair(root / split, f"img{index}", image, mask)
    return root


def test_segfolder_crops_for_training_and_keeps_full_resolution_for_evaluation(tmp_path):
    root = _segfolder(tmp_path)
    data = load_dataset("segfolder", root=str(root), image_size=8, num_classes=3)
    assert data.task == "segmentation" and data.ignore_index == 255 and data.in_channels == 3
    image, mask = data.train[0]  # a random rescale and an 8x8 crop
    assert image.shape == (3, 8, 8) and mask.shape == (8, 8)
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255}
    image, mask = data.test[0]  # as stored, the ignore index kept
    assert image.shape == (3, 10, 10) and mask.shape == (10, 10) and mask[0, 0] == 255
    assert data.class_names == ["class0", "class1", "class2"]
    assert data.describe()["full_resolution"] is True


def test_segfolder_crops_small_tiles_at_their_own_size_unless_told(tmp_path):
    root = _segfolder(tmp_path, size=12)
    data = load_dataset("segfolder", root=str(root), num_classes=3)
    assert data.image_size == 12 and data.train[0][0].shape == (3, 12, 12)
    told = load_dataset("segfolder", root=str(root), num_classes=3, crop_size=[6, 8])
    assert told.train[0][0].shape == (3, 6, 8)


def test_segfolder_bad_input(tmp_path):
    root = _segfolder(tmp_path / "values")
    data = load_dataset("segfolder", root=str(root), num_classes=2)
    with pytest.raises(ValueError, match=r"img0.png holds values \[2\]"):
        data.test[0]  # masks are checked as they are read
    with pytest.raises(ValueError, match="num_classes"):
        load_dataset("segfolder", root=str(root))

    root = _segfolder(tmp_path / "sizes")
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(root / "train/masks/img1.png")
    data = load_dataset("segfolder", root=str(root), num_classes=3)
    with pytest.raises(ValueError, match=r"img1.png is 10x10 but its mask .*img1.png is 6x6"):
        data.train[1]

    root = _segfolder(tmp_path / "missing")
    (root / "val/masks/img0.png").unlink()
    (root / "val/masks/img2.png").unlink()
    with pytest.raises(ValueError, match=r"2 image\(s\) .* have no mask .*: img0.png, img2.png"):
        load_dataset("segfolder", root=str(root), num_classes=3)

    with pytest.raises(FileNotFoundError, match="train/"):
        load_dataset("segfolder", root=str(tmp_path / "nowhere"), num_classes=3)
