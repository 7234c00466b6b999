"""Progress bars start a loader's workers once per pass and draw nothing from the random
stream beyond what iterating the loader draws."""

import multiprocessing

import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from deepnc.utils.progress import progress_bar

STARTS = multiprocessing.get_context("fork").Value("i", 0)


def _count_start(worker_id: int) -> None:
    with STARTS.get_lock():
        STARTS.value += 1


def _loader(workers: int = 0) -> DataLoader:
    data = TensorDataset(torch.arange(12.0))
    return DataLoader(data, batch_size=4, num_workers=workers, worker_init_fn=_count_start)


def test_a_pass_starts_the_workers_once():
    STARTS.value = 0
    batches = list(progress_bar(_loader(workers=1), "pass", enabled=False))
    assert len(batches) == 3 and STARTS.value == 1
    STARTS.value = 0
    list(tqdm(_loader(workers=1), disable=True))  # what tqdm.auto does with a loader
    assert STARTS.value == 2


def test_a_bar_draws_nothing_from_the_random_stream():
    torch.manual_seed(0)
    list(_loader())
    after_plain_pass = torch.rand(3)
    torch.manual_seed(0)
    bar = progress_bar(_loader(), "pass", enabled=False)
    assert bar.total == 3
    list(bar)
    assert torch.equal(torch.rand(3), after_plain_pass)
    assert list(progress_bar(iter(range(3)), "no length", enabled=False)) == [0, 1, 2]
