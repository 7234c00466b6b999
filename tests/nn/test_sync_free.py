"""A steady-state training step of the head never waits on the host, and compiles whole.

Both properties are checked on the CPU: a ``TorchDispatchMode`` sees every aten call
of the step and fails on the ones that read a device value back to the host (or whose
output size depends on the data, which needs such a read on CUDA), and
``torch.compile(fullgraph=True)`` fails on any graph break.
"""

import warnings

import pytest
import torch

from deepnc import DNCHead
from helpers.sync_trap import SyncTrap

C, K, D = 6, 3, 8
MODES = {
    "vectors-memory": dict(memory_size=16),
    "vectors-memory-warmup": dict(memory_size=16, momentum_warmup=10),
    "vectors-no-memory": dict(memory_size=0),
    "nearest": dict(memory_size=16, assignment="nearest", dead_after=1),
    "random": dict(memory_size=16, assignment="random"),
    "dense": dict(memory_size=0, ignore_index=255),
    "dense-cap": dict(memory_size=0, ignore_index=255, max_pixels_per_class=5),
}


def batch(mode: str, step: int):
    """Features with NaN, Inf and ignored samples, and a label mix that changes each step."""
    generator = torch.Generator().manual_seed(step)
    dense = mode.startswith("dense")
    count = 2 * 4 * 4 if dense else 20
    labels = torch.randint(0, C, (count,), generator=generator)
    features = torch.randn(count, D, generator=generator) + labels.unsqueeze(1) % 3
    features[1, 0], features[2] = float("nan"), float("inf")
    labels[3] = 255 if dense else -100
    if not dense:
        return features, labels
    maps = features.view(2, 4, 4, D).permute(0, 3, 1, 2).contiguous()
    return maps, labels.view(2, 4, 4).repeat_interleave(2, 1).repeat_interleave(2, 2)


def steady_head(mode: str) -> DNCHead:
    """A head past seeding and past the updates that check their inputs at once."""
    torch.manual_seed(0)
    head = DNCHead(D, C, num_subcentroids=K, **MODES[mode])
    features = torch.randn(10 * C, D)
    labels = torch.arange(C).repeat(10)
    if mode.startswith("dense"):
        features, labels = features.view(6, 10, D, 1).transpose(1, 2), labels.view(6, 10, 1)
    head.seed(features, labels)
    assert head.bank.all_seeded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(12):
            head(*batch(mode, step))
    return head


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_steady_state_step_makes_no_host_sync(mode):
    head = steady_head(mode)
    before = head.subcentroids.clone()
    for step in range(12, 15):
        features, targets = batch(mode, step)
        with SyncTrap():
            head(features, targets).sum()
    assert not torch.equal(before, head.subcentroids)  # the trapped steps did update
    assert torch.isfinite(head.subcentroids).all()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_train_mode_forward_compiles_as_one_graph_without_recompiling(mode):
    torch._dynamo.reset()
    eager, compiled_head = steady_head(mode), steady_head(mode)
    compiled = torch.compile(compiled_head, fullgraph=True, dynamic=False, backend="aot_eager")
    with torch._dynamo.config.patch(error_on_recompile=True):
        for step in range(12, 17):  # a different label mix every step
            features, targets = batch(mode, step)
            expected = eager(features, targets)
            torch.testing.assert_close(compiled(features, targets), expected, equal_nan=True)
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(compiled_head.state_dict()[key], value, msg=key)


def test_bad_targets_after_the_first_updates_are_left_out_and_reported_later():
    head, reference = steady_head("vectors-memory"), steady_head("vectors-memory")
    features, labels = batch("vectors-memory", 20)
    bad, ignored = labels.clone(), labels.clone()
    bad[:5], ignored[:5] = 17, -100  # out of range, past the updates checked at once
    head(features, bad)
    reference(features, ignored)
    for key, value in reference.state_dict().items():  # as if they had been ignored
        assert torch.equal(head.state_dict()[key], value), key
    with pytest.raises(ValueError, match=r"\[0, 6\).*5 target\(s\).*for example 17"):
        head.check_inputs()
    head.check_inputs()  # reported once, then forgotten


def test_nonfinite_raise_still_raises_at_the_check_and_skip_warns():
    strict = DNCHead(D, C, num_subcentroids=K, memory_size=16, nonfinite="raise")
    strict.seed(torch.randn(10 * C, D), torch.arange(C).repeat(10))
    clean = torch.randn(20, D), torch.randint(0, C, (20,))
    for _ in range(10):
        strict(*clean)  # the updates checked at once
    strict(*batch("vectors-memory", 0))  # NaN and Inf rows: counted, left out
    assert torch.isfinite(strict.subcentroids).all()
    assert torch.isfinite(strict.memory.features).all()
    with pytest.raises(ValueError, match="features must be finite: 2 sample"):
        strict.check_inputs()
    lenient = DNCHead(D, C, num_subcentroids=K, validate="deferred")
    lenient(*batch("vectors-memory", 0))
    with pytest.warns(UserWarning, match="2 sample"):
        lenient.check_inputs()


def test_validate_always_checks_every_update_at_once():
    head = DNCHead(D, C, num_subcentroids=K, validate="always")
    clean = torch.randn(20, D), torch.randint(0, C, (20,))
    for _ in range(12):
        head(*clean)
    with pytest.raises(ValueError, match="got values \\[9\\]"):
        head(clean[0], torch.full((20,), 9))


def test_seed_seeds_without_moving_and_ignores_left_out_samples():
    head = DNCHead(D, C, num_subcentroids=K)
    features, labels = torch.randn(40, D), torch.arange(C - 1).repeat(8)
    features[0] = float("nan")
    seeded = head.seed(features, labels)
    assert seeded.tolist() == [True] * (C - 1) + [False]
    assert not head.bank.all_seeded and int(head.bank.num_updates) == 0
    assert torch.isfinite(head.subcentroids).all()
    head.seed(torch.randn(K, D), torch.full((K,), C - 1))
    assert head.bank.all_seeded


def test_a_capped_class_clusters_exactly_min_count_cap_of_its_correct_samples():
    from deepnc import SubCentroidBank

    bank = SubCentroidBank(3, 2, 4, momentum=0.5)
    bank.update(
        torch.nn.functional.normalize(torch.randn(12, 4), dim=-1), torch.arange(3).repeat(4)
    )
    for _ in range(5):
        labels = torch.tensor([0] * 20 + [1] * 3 + [2] * 7)
        correct = torch.ones(30, dtype=torch.bool)
        correct[:4] = False  # class 0 has 16 correct samples
        features = torch.nn.functional.normalize(torch.randn(30, 4), dim=-1)
        before = bank.assigned.sum(1).clone()
        bank.update(features, labels, correct, max_per_class=5)
        assert (bank.assigned.sum(1) - before).tolist() == [5, 3, 5]


def test_seed_heads_seeds_every_class_of_a_model_and_keeps_its_batch_norm_statistics():
    import torchvision

    import deepnc

    model = deepnc.convert(torchvision.models.resnet18(num_classes=4), num_subcentroids=2)
    running = model.bn1.running_mean.clone()
    batches = [(torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 3] * 2))] * 3
    assert deepnc.seed_heads(model, batches)
    assert model.fc.bank.initialised.all() and int(model.fc.bank.num_updates) == 0
    assert torch.equal(running, model.bn1.running_mean)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with deepnc.training_targets(model, batches[0][1]):
        compiled(batches[0][0])  # seeded first: the whole training forward is one graph
    assert int(model.fc.bank.num_updates) == 1
