"""Two CPU processes on the gloo backend must end with the sub-centroids of one process
that saw all the data."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from deepnc import DNCHead

STEPS, PER_RANK, WORLD = 6, 24, 2


def make_head(dense: bool, random_draws: bool = False) -> DNCHead:
    torch.manual_seed(0)  # identical LayerNorm everywhere (it is not trained here)
    # random_draws: a per-class pixel cap below the class sizes, or random assignment
    options = dict(max_pixels_per_class=3) if dense else dict(assignment="random")
    return DNCHead(
        8,
        4,
        num_subcentroids=2,
        memory_size=0 if dense else 16,
        momentum=0.5,
        **(options if random_draws else {}),
    )


def batch(step: int, rank: int, dense: bool):
    """Rank ``rank``'s share of the global batch of step ``step``."""
    generator = torch.Generator().manual_seed(1000 * step + rank)
    if dense:
        return torch.randn(2, 8, 3, 4, generator=generator), torch.randint(
            0, 4, (2, 3, 4), generator=generator
        )
    return torch.randn(PER_RANK, 8, generator=generator), torch.randint(
        0, 4, (PER_RANK,), generator=generator
    )


def _worker(rank: int, init_file: str, out_dir: str, dense: bool, random_draws: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        head = make_head(dense, random_draws)
        for step in range(STEPS):
            head(*batch(step, rank, dense))
        torch.save(head.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("random_draws", [False, True], ids=["", "random-draws"])
@pytest.mark.parametrize("dense", [False, True], ids=["vectors-with-memory", "feature-maps"])
def test_two_gloo_processes_match_one_process_on_the_whole_batch(tmp_path, dense, random_draws):
    """Random draws (the pixel cap, random assignment) are the same on every rank too."""
    arguments = (str(tmp_path / "init"), str(tmp_path), dense, random_draws)
    mp.spawn(_worker, args=arguments, nprocs=WORLD)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key  # bit-identical ranks

    single = make_head(dense, random_draws)
    for step in range(STEPS):
        parts = [batch(step, rank, dense) for rank in range(WORLD)]
        single(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    assert single.bank.initialised.all()
    for key, value in single.state_dict().items():
        assert torch.equal(states[0][key], value), key
