"""Adding and removing classes of a trained DNC head: old classes untouched, new ones learnt."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from deepnc import DNCHead
from deepnc.incremental import add_classes, head_inputs, remove_classes
from deepnc.models import create_model


def _head(memory_size=0):
    torch.manual_seed(0)
    head = DNCHead(8, 3, num_subcentroids=2, memory_size=memory_size, layer_norm=False)
    directions = torch.eye(8)[:3] * 5
    labels = torch.arange(3).repeat(20)
    head.update(directions[labels] + 0.1 * torch.randn(60, 8), labels)
    return head.eval()


def test_new_classes_are_learnt_and_old_ones_untouched():
    head = _head()
    before = head.subcentroids.clone()
    probe = torch.randn(10, 8)
    old_logits = head(probe)
    new_directions = torch.eye(8)[3:5] * 5
    labels = torch.tensor([0] * 5 + [1] * 5)
    examples = new_directions[labels] + 0.1 * torch.randn(10, 8)
    assert add_classes(head, examples, labels) == [3, 4]
    assert head.num_classes == 5 and head.subcentroids.shape == (5, 2, 8)
    assert torch.equal(head.subcentroids[:3], before)  # the old classes did not move
    assert torch.equal(head(probe)[:, :3], old_logits)
    queries = new_directions + 0.1 * torch.randn(2, 8)
    assert head(queries).argmax(1).tolist() == [3, 4]
    assert head.bank.initialised.all()


def test_per_class_k_and_too_few_examples():
    head = _head()
    examples, labels = torch.randn(6, 8), torch.tensor([0, 0, 0, 1, 1, 1])
    add_classes(head, examples, labels, num_subcentroids=1)
    assert torch.equal(head.subcentroids[3, 0], head.subcentroids[3, 1])  # one distinct
    with pytest.warns(UserWarning, match="fewer examples than 2"):
        add_classes(head, torch.randn(1, 8), torch.tensor([0]))
    assert torch.equal(head.subcentroids[5, 0], head.subcentroids[5, 1])


def test_a_head_with_memory_grows_its_memory_and_round_trips():
    head = _head(memory_size=4)
    add_classes(head, torch.randn(4, 8), torch.tensor([0, 0, 1, 1]))
    assert head.memory.features.shape == (5, 4, 8) and head.memory.count[3:].tolist() == [2, 2]
    fresh = DNCHead(8, 5, num_subcentroids=2, memory_size=4, layer_norm=False)
    fresh.load_state_dict(head.state_dict())
    assert torch.equal(fresh.subcentroids, head.subcentroids)


def test_remove_classes():
    head = _head(memory_size=4)
    probe = torch.randn(7, 8)
    logits = head(probe)
    assert remove_classes(head, [1]) == [0, 2]
    assert head.num_classes == 2 and head.memory.features.shape[0] == 2
    assert torch.equal(head(probe), logits[:, [0, 2]])
    with pytest.raises(ValueError, match="every class"):
        remove_classes(head, [0, 1])
    with pytest.raises(ValueError, match="outside"):
        remove_classes(head, [5])


def test_bad_input():
    head = _head()
    with pytest.raises(ValueError, match="exist already"):
        add_classes(
            head,
            torch.randn(2, 8),
            torch.tensor([0, 1]),
            names=["cat", "dog"],
            class_names=["dog", "bird", "fish"],
        )
    with pytest.raises(ValueError, match="repeat a name"):
        add_classes(head, torch.randn(2, 8), torch.tensor([0, 1]), names=["cat", "cat"])
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        add_classes(head, torch.randn(2, 7), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        add_classes(head, torch.full((2, 8), float("nan")), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"new classes \[1\] have no example"):
        add_classes(head, torch.randn(2, 8), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="num_subcentroids must lie"):
        add_classes(head, torch.randn(2, 8), torch.tensor([0, 1]), num_subcentroids=3)
    assert head.num_classes == 3  # nothing was added by a failed call


def test_head_inputs_collects_what_the_head_sees():
    model = create_model("resnet20", num_classes=3, in_chans=1)
    images, labels = torch.randn(10, 1, 16, 16), torch.arange(10) % 3
    features, collected = head_inputs(model, DataLoader(TensorDataset(images, labels), 4))
    assert features.shape == (10, 64) and torch.equal(collected, labels)
    added = add_classes(model.fc, features, collected)
    assert added == [3, 4, 5] and model(images).shape == (10, 6)
