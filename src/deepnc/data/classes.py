"""Keep some classes of a dataset, relabelled ``0 .. len(classes) - 1`` (for open-set and
new-class experiments: train on some classes, hold the others out), or relabelled by
name to a model's classes (a model whose classes were edited, scored on its old data).

>>> from torch.utils.data import TensorDataset
>>> import torch
>>> base = TensorDataset(torch.zeros(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
>>> base.labels = base.tensors[1]
>>> subset = ClassSubset(base, [2, 0])
>>> len(subset), subset.labels.tolist(), subset[0][1]
(4, [1, 0, 1, 0], 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from deepnc.data.base import DatasetSplits, dataset_labels

__all__ = ["ClassSubset", "match_class_names", "select_classes"]


class ClassSubset(Dataset):
    """The items of ``dataset`` whose label is in ``classes``, relabelled by position
    (``classes[i]`` becomes ``i``), or to ``targets[i]`` when ``targets`` is given.

    Attributes:
        indices: ``(N',)`` positions of the kept items in ``dataset``.
        labels: ``(N',)`` new labels: the position of the old label in ``classes``.
    """

    def __init__(
        self, dataset: Dataset, classes: Sequence[int], targets: Sequence[int] | None = None
    ) -> None:
        classes = [int(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes must be distinct, got {classes}")
        old = dataset_labels(dataset)
        lookup = torch.full((int(old.max()) + 1 if len(old) else 1,), -1, dtype=torch.long)
        present = [c for c in classes if 0 <= c < len(lookup)]
        missing = sorted(set(classes) - set(present))
        if missing:
            raise ValueError(
                f"classes {missing} do not occur in the dataset (labels 0-{len(lookup) - 1})"
            )
        new = torch.arange(len(classes)) if targets is None else torch.tensor(list(targets))
        lookup[torch.tensor(classes)] = new
        mapped = lookup[old]
        self.dataset = dataset
        self.indices = torch.nonzero(mapped >= 0).flatten()
        self.labels = mapped[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, _ = self.dataset[int(self.indices[index])]
        return image, int(self.labels[index])


def select_classes(splits: DatasetSplits, classes: Sequence[int]) -> DatasetSplits:
    """``splits`` restricted to ``classes`` (original indices), relabelled in that order.

    Raises:
        ValueError: a segmentation set, fewer than 2 classes, repeated or unknown classes.
    """
    if splits.task != "classification":
        raise ValueError("dataset option classes applies to classification sets only")
    if len(classes) < 2:
        raise ValueError(f"keep at least 2 classes, got {list(classes)}")
    bad = [c for c in classes if not 0 <= int(c) < splits.num_classes]
    if bad:
        raise ValueError(f"classes {bad} are outside [0, {splits.num_classes}) of {splits.name}")
    splits.train = ClassSubset(splits.train, classes)
    splits.test = ClassSubset(splits.test, classes)
    if splits.val is not None:
        splits.val = ClassSubset(splits.val, classes)
    splits.class_names = [splits.class_names[int(c)] for c in classes]
    splits.num_classes = len(classes)
    return splits


def match_class_names(splits: DatasetSplits, names: Sequence[str]) -> tuple[DatasetSplits, list]:
    """``splits`` relabelled to the classes ``names`` (a model's, edited since it was
    trained on ``splits``), by name: each item of a class in ``names`` takes that name's
    index; items of other classes are left out. Item order is kept.

    Returns:
        ``(the relabelled splits, the dataset's class names left out)``.

    Raises:
        ValueError: no class name in common.
    """
    names = list(names)
    shared = [name for name in splits.class_names if name in names]
    if not shared or splits.task != "classification":
        raise ValueError(
            f"the classes of {splits.name} ({splits.class_names[:5]}...) and of the model "
            f"({names[:5]}...) share no name"
        )
    classes = [splits.class_names.index(name) for name in shared]
    targets = [names.index(name) for name in shared]
    for split in ("train", "test", "val"):
        if getattr(splits, split) is not None:
            setattr(splits, split, ClassSubset(getattr(splits, split), classes, targets))
    left_out = [name for name in splits.class_names if name not in names]
    splits.class_names, splits.num_classes = names, len(names)
    return splits, left_out
