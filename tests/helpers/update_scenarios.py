"""Deterministic streams of training steps, one per mode of the sub-centroid update.

``tests/fixtures/update_v0_1.safetensors`` holds the buffers that v0.1's update (the one with
host syncs, commit 3cb90af) reached on these streams; ``test_update_equivalence.py``
checks that today's sync-free update reaches the same ones (integers equal, floats
within 1e-5). The file was written by ``python tests/helpers/update_scenarios.py`` at that
commit; running it on a later commit rewrites it from that commit's update.

Every stream seeds its classes mid-run (a class first appears at step 8), carries
ignored and NaN/Inf samples, and is long enough for dead sub-centroids to be re-seeded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from deepnc import DNCHead

GOLDEN = Path(__file__).parents[1] / "fixtures" / "update_v0_1.safetensors"
STEPS, CLASSES, DIM = 30, 5, 8

SCENARIOS: dict[str, dict] = {
    "vectors-memory": dict(memory_size=16, momentum=0.9, dead_after=3),
    "vectors-memory-nearest": dict(memory_size=16, assignment="nearest", dead_after=1),
    "vectors-memory-warmup": dict(memory_size=16, momentum=0.99, momentum_warmup=5),
    "vectors-no-memory": dict(memory_size=0, momentum=0.8, assignment="nearest", dead_after=1),
    "dense": dict(memory_size=0, momentum=0.9, dead_after=1, ignore_index=255),
    "dense-cap-not-reached": dict(
        memory_size=0, momentum=0.9, dead_after=3, ignore_index=255, max_pixels_per_class=500
    ),
}


def make_head(name: str) -> DNCHead:
    torch.manual_seed(0)
    return DNCHead(DIM, CLASSES, num_subcentroids=3, **SCENARIOS[name])


def batch(name: str, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s features and targets: clustered classes, some ignored or non-finite."""
    generator = torch.Generator().manual_seed(100 * step + len(name))
    means = 3 * torch.randn(CLASSES, 2, DIM, generator=torch.Generator().manual_seed(5))
    dense = name.startswith("dense")
    count = 2 * 6 * 6 if dense else 24
    labels = torch.randint(0, CLASSES - (step < 8), (count,), generator=generator)
    mode = torch.randint(0, 2, (count,), generator=generator)
    features = means[labels, mode] + torch.randn(count, DIM, generator=generator)
    if step % 4 == 1:
        features[3, 2] = float("nan")
        features[5] = float("inf")
    ignore = -100 if not dense else 255
    labels[torch.rand(count, generator=generator) < 0.1] = ignore
    if not dense:
        return features, labels
    maps = features.view(2, 6, 6, DIM).permute(0, 3, 1, 2).contiguous()
    targets = labels.view(2, 6, 6).repeat_interleave(2, 1).repeat_interleave(2, 2)
    return maps, targets  # targets at twice the feature resolution


def run(name: str) -> dict[str, torch.Tensor]:
    """The head's buffers after the stream of ``name``, keyed ``name/buffer``."""
    head = make_head(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(STEPS):
            head(*batch(name, step))
    return {f"{name}/{key}": value.clone() for key, value in head.state_dict().items()}


if __name__ == "__main__":
    from safetensors.torch import save_file

    GOLDEN.parent.mkdir(exist_ok=True)
    save_file({k: v for name in SCENARIOS for k, v in run(name).items()}, GOLDEN)
    print(f"wrote {GOLDEN}")
