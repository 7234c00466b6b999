"""k-means++ seeding of sub-centroids from real features, for many classes at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepnc.nn.grouping import group_by_class

__all__ = ["kmeans_plus_plus", "seed_classes", "seeding_generators"]


def seeding_generators(seed: int, updates_done: int) -> tuple[torch.Generator, torch.Generator]:
    """The two CPU generators of :func:`seed_classes` (the subset, the k-means++ draws),
    built identically on every process from the bank's seed and its update count."""
    pair = []
    for salt in (2, 3):
        generator = torch.Generator()
        generator.manual_seed((seed * 1_000_003 + updates_done) * 8 + salt)
        pair.append(generator)
    return pair[0], pair[1]


def seed_classes(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    num_subcentroids: int,
    *,
    max_per_class: int,
    generators: tuple[torch.Generator, torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor]:
    """First sub-centroids of every class present: k-means++ on at most
    ``max_per_class`` of its samples (a random subset).

    Args:
        features: ``(M, D)`` unit-norm features; ``labels`` ``(M,)`` int64 in ``[0, C)``.
        generators: CPU generators for the subset and for the k-means++ draws.

    Returns:
        ``(classes (S,), sub-centroids (S, K, D))``: the classes present and their seeds.
    """
    groups = group_by_class(
        labels, num_classes, max_per_class=max_per_class, generator=generators[0]
    )
    padded = groups.gather(features.float())  # (S, N, D)
    seeds = kmeans_plus_plus(padded, groups.mask, num_subcentroids, generator=generators[1])
    chosen = torch.gather(padded, 1, seeds.unsqueeze(-1).expand(-1, -1, padded.shape[-1]))
    return groups.classes, F.normalize(chosen, dim=-1)


def kmeans_plus_plus(
    features: torch.Tensor,
    mask: torch.Tensor,
    num_seeds: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose ``num_seeds`` real samples per problem, spread out as k-means++ does.

    The first seed is a uniformly random real sample; each next one is drawn with
    probability proportional to its squared distance to the nearest seed so far. On
    unit vectors the squared distance is ``2 - 2 cos``. A problem with fewer distinct
    samples than ``num_seeds`` repeats samples (a repeated sub-centroid is later
    re-seeded as dead).

    Args:
        features: ``(B, N, D)`` unit-norm samples of B independent problems, padded.
        mask: ``(B, N)`` bool, True at real samples; every problem needs at least one.
        num_seeds: K, the number of seeds per problem.
        generator: CPU generator for the draws (the draws are made on the CPU so that
            every process of a distributed run makes the same ones).

    Returns:
        ``(B, K)`` int64 index of each seed into dimension N.
    """
    batch, num_samples, _ = features.shape
    if batch and not bool(mask.any(dim=1).all()):
        raise ValueError("kmeans_plus_plus needs at least one real sample per problem")
    valid = mask.to(torch.float64).cpu()
    seeds = torch.empty(batch, num_seeds, dtype=torch.long)
    seeds[:, 0] = torch.multinomial(valid, 1, generator=generator).squeeze(1)
    nearest = torch.full((batch, num_samples), 4.0, dtype=torch.float64)  # max squared chord
    batch_index = torch.arange(batch)
    for k in range(1, num_seeds):
        chosen = features[batch_index.to(features.device), seeds[:, k - 1].to(features.device)]
        cosine = torch.einsum("bnd,bd->bn", features, chosen).to(torch.float64).cpu()
        nearest = torch.minimum(nearest, (2.0 - 2.0 * cosine).clamp(min=0.0))
        # Padding weighs 0; the tiny floor keeps a problem drawable when all of its
        # real samples are already seeds (fewer distinct samples than K).
        weights = (nearest + 1e-12) * valid
        seeds[:, k] = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return seeds.to(features.device)
