"""Samplers for runs that stop and resume: augmentation seeded per item, and a pass that
starts in the middle of an epoch.

With persistent ``DataLoader`` workers, or any number of them, torch's global generator
in a worker does not follow the epoch, so augmentation drawn from it is not a function of
the run's seed and a resumed run would see other crops. :class:`SeededSampler` yields
``(index, seed)`` pairs instead, the seed a function of ``(base seed, epoch, index)``,
and a dataset that accepts such keys (:class:`~deepnc.data.seg_files.SegmentationFiles`)
draws its augmentation from a generator seeded with it. :class:`SeededItems` gives any
other dataset, whose augmentation draws from torch's global generator (the in-memory
sets, torchvision's ``ImageFolder``), the same keys.

>>> from torch.utils.data import SequentialSampler
>>> sampler = SeededSampler(SequentialSampler(range(3)), seed=0)
>>> first = list(sampler)
>>> [index for index, _ in first], first == list(sampler)
([0, 1, 2], True)
>>> sampler.set_epoch(1)
>>> [seed for _, seed in first] == [seed for _, seed in sampler]
False
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableSampler", "SeededItems", "SeededSampler", "item_seed"]


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for item ``index`` in ``epoch`` of a run seeded with ``seed``."""
    mixed = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index) & (2**64 - 1)
    mixed = ((mixed ^ (mixed >> 30)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (mixed ^ (mixed >> 31)) >> 1


class SeededSampler(Sampler):
    """Wrap ``sampler``: yield ``(index, item_seed(seed, epoch, index))``.

    ``set_epoch`` is passed on to the wrapped sampler (a ``DistributedSampler``'s
    shuffle follows it too).
    """

    def __init__(self, sampler: Sampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.sampler:
            yield index, item_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return len(self.sampler)


class SeededItems(Dataset):
    """Wrap ``dataset`` so that item ``(index, seed)`` is ``dataset[index]`` drawn with
    torch's global generator seeded with ``seed`` (its state outside is kept).

    A plain index passes through. Shapes are the wrapped dataset's.
    """

    seeded_items = True

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class ResumableSampler(Sampler):
    """Wrap ``sampler`` so that one pass can leave out its first items: a run resumed in
    the middle of an epoch takes up the epoch's order where it stopped, without loading
    the batches it already trained on.

    ``set_epoch`` is passed on. After :meth:`skip_next` ``(n)``, the next pass yields the
    wrapped sampler's items from the n-th on (and ``len`` says so); later passes are whole.
    """

    def __init__(self, sampler: Sampler) -> None:
        self.sampler, self._skip = sampler, 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def skip_next(self, count: int) -> None:
        self._skip = count

    def __iter__(self) -> Iterator:
        skip, self._skip = self._skip, 0
        for position, item in enumerate(self.sampler):
            if position >= skip:
                yield item

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self._skip)
