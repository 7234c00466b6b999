"""A head's learnt projection: the sub-centroids live in its P dimensions, the state dict
round-trips it, and learn_projection finds the directions where the classes differ."""

import pytest
import torch

from deepnc import DNCHead
from deepnc.nn.projection import learn_projection


def signal_in_two_of_many(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four classes on a square in dimensions 0 and 1; 62 dimensions of larger noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    corners = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    features = 3 * torch.randn(n, 64, generator=generator)
    features[:, :2] = corners[labels] + 0.3 * torch.randn(n, 2, generator=generator)
    return features, labels


def accuracy(head: DNCHead, features: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (head.eval()(features).argmax(dim=1) == labels).float().mean().item()


def test_a_projected_head_keeps_its_sub_centroids_in_the_projected_width():
    head = DNCHead(12, 3, num_subcentroids=2, projection=5)
    assert head.in_features == 12 and head.embedding_dim == 5
    logits = head(torch.randn(6, 12), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert logits.shape == (6, 3) and head.subcentroids.shape == (3, 2, 5)
    assert head(torch.randn(2, 12, 3, 3)).shape == (2, 3, 3, 3)  # a 1x1 map on feature maps
    weight = head.projection.weight
    torch.testing.assert_close(weight @ weight.T, torch.eye(5))  # orthogonal rows at start
    copy = DNCHead(12, 3, num_subcentroids=2, projection=5)
    copy.load_state_dict(head.state_dict())
    x = torch.randn(4, 12)
    torch.testing.assert_close(copy.eval()(x), head.eval()(x))
    assert "embedding_dim=5" in repr(head)
    with pytest.raises(TypeError, match="projection must be an int"):
        DNCHead(12, 3, projection=2.5)
    with pytest.raises(ValueError, match="embedding must have >= 2 channels"):
        DNCHead(12, 3, projection=1)


def test_learn_projection_finds_the_directions_that_separate_the_classes():
    features, labels = signal_in_two_of_many(800, seed=0)
    test_features, test_labels = signal_in_two_of_many(800, seed=1)
    frozen = DNCHead(64, 4, num_subcentroids=2, tau="auto", memory_size=32)
    frozen.fit(features, labels)
    head = DNCHead(64, 4, num_subcentroids=2, tau="auto", memory_size=32, projection=8)
    momentum = head.bank.momentum
    losses = learn_projection(head, features, labels, epochs=15, lr=1e-2, batch_size=100)
    assert len(losses) == 15 and losses[-1] < 0.5 * losses[0]
    assert accuracy(frozen, test_features, test_labels) < 0.7
    assert accuracy(head, test_features, test_labels) > 0.9
    assert not head.training and head.bank.momentum == momentum  # its own momentum back
    norms = head.subcentroids.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_learn_projection_checks_its_arguments():
    head = DNCHead(8, 2, num_subcentroids=1, projection=4)
    features, labels = torch.randn(10, 8), torch.arange(10) % 2
    with pytest.raises(ValueError, match="epochs must be an int >= 0"):
        learn_projection(head, features, labels, epochs=-1)
    with pytest.raises(ValueError, match="momentum"):
        learn_projection(head, features, labels, momentum=1.0)
    with pytest.raises(ValueError, match=r"labels \(N,\)"):
        learn_projection(head, features, labels[:5])
    assert learn_projection(head, features, labels, epochs=0) == []  # only refits
