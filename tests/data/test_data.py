"""The dataset registry: real sets load with the right shapes, bad input is explained."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepnc.data import (
    ImageTensorDataset,
    UnreadableImageError,
    dataset_labels,
    list_datasets,
    load_dataset,
    take_subset,
    validate_split,
)
from deepnc.data.in_memory import DEBIAN_FASHION_MNIST, read_idx

needs_fashion = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="apt-get install dataset-fashion-mnist"
)


@needs_fashion
def test_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist")
    assert (len(data.train), len(data.test), data.num_classes) == (60_000, 10_000, 10)
    assert dataset_labels(data.test).bincount().tolist() == [1000] * 10
    image, label = data.test[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert label == 9  # the first test image of Fashion-MNIST is an ankle boot
    assert abs(float(torch.stack([data.test[i][0] for i in range(500)]).mean())) < 0.2


def test_idx_reader_reads_what_it_wrote(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape)
    (tmp_path / "x-idx3-ubyte").write_bytes(header + images.tobytes())
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), images)
    (tmp_path / "short").write_bytes(header + images.tobytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr("deepnc.data.in_memory.DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=str(tmp_path))


def test_digits_split_is_fixed_and_stratified():
    first, second = load_dataset("digits"), load_dataset("digits")
    assert (len(first.train), len(first.test)) == (1437, 360)
    assert torch.equal(dataset_labels(first.test), dataset_labels(second.test))
    assert dataset_labels(first.test).bincount().min() >= 35
    assert first.train[0][0].shape == (1, 8, 8)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"valid names.*Did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    assert {"fashion-mnist", "digits", "cifar10", "imagefolder", "fake"} <= set(list_datasets())


def test_torchvision_sets_without_data_explain_download():
    with pytest.raises(FileNotFoundError, match="--download"):
        load_dataset("cifar10")


def test_subset_is_balanced_and_seeded():
    data = load_dataset("digits", train_subset=100, seed=3)
    counts = dataset_labels(data.train).bincount()
    assert len(data.train) == 100 and counts.max() - counts.min() <= 1
    again = load_dataset("digits", train_subset=100, seed=3)
    assert data.train.indices == again.train.indices
    assert data.train.indices != load_dataset("digits", train_subset=100, seed=4).train.indices
    assert take_subset(data.test, 10_000, 0) is data.test


def test_test_subset_is_balanced_and_the_same_for_every_seed():
    data = load_dataset("digits", test_subset=50, seed=3)
    counts = dataset_labels(data.test).bincount()
    assert len(data.test) == 50 and counts.max() - counts.min() <= 1
    assert data.test.indices == load_dataset("digits", test_subset=50, seed=4).test.indices
    assert len(data.train) == 1437  # the train split is untouched
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="test_subset must be a positive"):
            load_dataset("digits", test_subset=bad)


def test_augmentation_crops_and_flips_but_keeps_shape():
    images = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(50, 1, 1, 1)
    plain = ImageTensorDataset(images, torch.zeros(50), mean=(0.0,), std=(1.0,))
    augmented = ImageTensorDataset(
        images, torch.zeros(50), mean=(0.0,), std=(1.0,), crop_padding=1, flip=True
    )
    assert torch.allclose(plain[0][0] * 255, images[0].float())
    views = {tuple(augmented[0][0].flatten().tolist()) for _ in range(60)}
    assert len(views) > 5 and all(len(v) == 16 for v in views)


def test_resize_and_bad_tensors():
    images = torch.randint(0, 255, (3, 1, 8, 8), dtype=torch.uint8)
    assert ImageTensorDataset(images, torch.zeros(3), mean=(0.5,), std=(0.5,), image_size=16)[0][
        0
    ].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="uint8"):
        ImageTensorDataset(images.float(), torch.zeros(3), mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="labels must be"):
        ImageTensorDataset(images, torch.zeros(4), mean=(0.5,), std=(0.5,))


def test_labels_out_of_range_and_empty_splits_are_caught():
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    bad = ImageTensorDataset(images, torch.tensor([0, 1, 7]), mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match=r"labels outside \[0, 3\): \[7\]"):
        validate_split(bad, 3, "the train split")
    empty = ImageTensorDataset(images[:0], torch.zeros(0), mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="is empty"):
        validate_split(empty, 3, "the train split")


def _write_images(folder: Path, classes: dict[str, int], mode: str = "RGB", size=(20, 12)):
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
                folder / name / f"{index}.png"
            )


def test_imagefolder_with_train_and_val(tmp_path):
    _write_images(tmp_path / "train", {"cat": 4, "dog": 3})
    _write_images(tmp_path / "val", {"cat": 2, "dog": 2}, size=(9, 30))
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=16)
    assert data.class_names == ["cat", "dog"] and data.in_channels == 3
    assert (len(data.train), len(data.test)) == (7, 4)
    assert data.train[0][0].shape == (3, 16, 16) and data.test[3][0].shape == (3, 16, 16)


def test_imagefolder_single_tree_greyscale_is_split(tmp_path):
    _write_images(tmp_path, {"a": 10, "b": 5}, mode="L")
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=8)
    assert data.in_channels == 1 and data.train[0][0].shape == (1, 8, 8)
    assert (len(data.train), len(data.test)) == (12, 3)  # a fifth of each class held out
    assert dataset_labels(data.test).tolist() == [0, 0, 1]


def test_imagefolder_names_an_unreadable_file(tmp_path):
    _write_images(tmp_path / "train", {"a": 2, "b": 2})
    _write_images(tmp_path / "val", {"a": 1, "b": 1})
    (tmp_path / "train" / "b" / "broken.png").write_bytes(b"not an image")
    data = load_dataset("imagefolder", root=str(tmp_path), image_size=8)
    broken = next(i for i, (path, _) in enumerate(data.train.samples) if "broken" in path)
    with pytest.raises(UnreadableImageError, match=r"broken\.png"):
        data.train[broken]


def test_imagefolder_bad_layouts(tmp_path):
    with pytest.raises(ValueError, match="needs --data-root"):
        load_dataset("imagefolder")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("imagefolder", root=str(tmp_path / "nowhere"))
    _write_images(tmp_path / "train", {"a": 2})
    with pytest.raises(FileNotFoundError, match="no val/ or test/"):
        load_dataset("imagefolder", root=str(tmp_path))


def test_fake_is_for_smoke_tests():
    data = load_dataset("fake", num_classes=3, train_size=12, test_size=6)
    assert (len(data.train), data.num_classes, data.in_channels) == (12, 3, 3)
    with pytest.raises(ValueError, match="does not take options"):
        load_dataset("digits", num_classes=3)
