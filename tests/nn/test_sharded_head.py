"""A head sharded across 2 and 3 gloo processes (7 classes: not divisible) equals one
unsharded head on the same global batch: logits, loss, the gradients that reach the
features, sub-centroids and memory after several steps; its steady-state step makes no
host sync; its shard files load with another number of processes."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from deepnc import DNCHead, ShardedClassifier, ShardedDNCHead, exclude_shards_from_ddp
from deepnc.engine.shard_files import load_head_shard, save_head_shard, unsharded_head
from deepnc.nn.shard_state import StatePiece
from deepnc.nn.sharded_loss import sample_classes, shard_range
from helpers.sync_trap import SyncTrap

C, D, K, MEMORY, PER_RANK, STEPS, SMOOTHING = 7, 8, 2, 4, 3, 5, 0.1
MANY = 40  # classes of the sampling test: 20 per shard, more than a global batch holds
OPTIONS = dict(num_subcentroids=K, memory_size=MEMORY, momentum=0.5)


def warm_head(classes: int = C) -> DNCHead:
    """The unsharded head both sides start from (fitted on real-looking features)."""
    torch.manual_seed(0)
    head = DNCHead(D, classes, **OPTIONS)
    labels = torch.arange(8 * classes) % classes
    head.fit(torch.randn(8 * classes, D) + F.one_hot(labels % D, D).float() * 2, labels)
    return head


def global_batch(step: int, world: int, classes: int = C) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    labels = torch.randint(0, classes, (world * PER_RANK,), generator=generator)
    features = torch.randn(world * PER_RANK, D, generator=generator)
    return features + F.one_hot(labels % D, D).float() * 2, labels


def _worker(rank: int, world: int, init_file: str, out_dir: str, sample_rate: float) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        classes = C if sample_rate == 1.0 else MANY
        head = ShardedDNCHead(D, classes, sample_rate=sample_rate, **OPTIONS)
        head.load_pieces([StatePiece.from_state_dict(warm_head(classes).state_dict())])
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        results = {"losses": [], "grads": [], "correct": []}
        smoothing = SMOOTHING if sample_rate == 1.0 else 0.0
        for step in range(STEPS):
            features, labels = global_batch(step, world, classes)
            mine = features[rows].clone().requires_grad_()
            out = head.training_step(mine, labels[rows], label_smoothing=smoothing)
            out.loss.backward()
            results["losses"].append(out.loss.detach())
            results["grads"].append(mine.grad / world)  # DDP's averaging divides by W
            results["correct"].append(out.correct)
        features, _ = global_batch(99, world, classes)
        results["logits"] = head(features[rows])
        results["topk"] = head.topk(features[rows], 3)[1]
        results["state"] = {key: value.clone() for key, value in head.state_dict().items()}
        save_head_shard(head, os.path.join(out_dir, "shards"))
        for step in range(12):  # past the first steps, which check their targets at once
            head.training_step(*(t[rows] for t in global_batch(step, world, classes)))
        features, labels = global_batch(50, world, classes)
        with SyncTrap():
            head.training_step(features[rows], labels[rows])
        results["ddp_grad"] = ddp_step(rank, world) if sample_rate == 1.0 else None
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def backbone() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(D, D)


def ddp_step(rank: int, world: int) -> torch.Tensor:
    """One step of a backbone and a sharded head wrapped by DDP: the backbone's gradient."""
    from torch.nn.parallel import DistributedDataParallel

    head = ShardedDNCHead(D, C, **OPTIONS)
    head.load_pieces([StatePiece.from_state_dict(warm_head().state_dict())])
    model = ShardedClassifier(backbone(), head)
    assert "head.bank.subcentroids" in exclude_shards_from_ddp(model)
    model = DistributedDataParallel(model)  # buffers of different shapes: not broadcast
    features, labels = global_batch(0, world)
    rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    model(features[rows], labels[rows]).loss.backward()
    return model.module.backbone.weight.grad


def reference(world: int, sample_rate: float = 1.0, classes: int | None = None) -> dict:
    """The unsharded head on the global batches; with sampling, the loss over the classes
    that every shard samples (drawn as the shards draw them)."""
    classes = classes or (C if sample_rate == 1.0 else MANY)
    head = warm_head(classes).train()
    results = {"losses": [], "grads": [], "correct": []}
    for step in range(STEPS):
        features, labels = global_batch(step, world, classes)
        features.requires_grad_()
        scored = sampled(head, labels, world, sample_rate) if sample_rate < 1.0 else None
        logits = head(features, labels)
        if scored is None:
            smoothing = SMOOTHING if classes == C else 0.0  # the workers' choice
            loss = F.cross_entropy(logits, labels, label_smoothing=smoothing)
        else:
            loss = F.cross_entropy(logits[:, scored], torch.searchsorted(scored, labels))
        loss.backward()
        results["losses"].append(loss.detach())
        results["grads"].append(features.grad)
        results["correct"].append(logits.argmax(1) == labels)
    head.eval()
    results["logits"] = head(global_batch(99, world, classes)[0])
    results["state"] = head.state_dict()
    return results


def sampled(head: DNCHead, labels: torch.Tensor, world: int, rate: float) -> torch.Tensor:
    """``(S,)`` the classes the shards of ``head`` score for ``labels`` at this step."""
    shards = [
        ShardedDNCHead(D, head.num_classes, sample_rate=rate, rank=r, world_size=world)
        for r in range(world)
    ]
    chosen = []
    for shard in shards:
        local = labels - shard.class_start
        local = torch.where(
            (local >= 0) & (local < shard.num_local_classes), local, shard.num_local_classes
        )
        size = shard.sample_sizes(labels.numel())[shard.rank]
        span = (shard.class_start, shard.class_end)
        draws = sample_classes(local, span, size, head.bank.num_updates, shard.seed)
        chosen.append(draws + shard.class_start)
    return torch.cat(chosen)


@pytest.mark.parametrize("world", [2, 3])
def test_a_sharded_head_equals_one_unsharded_head_on_the_global_batch(tmp_path, world):
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path), 1.0), nprocs=world)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    expected = reference(world)
    for step in range(STEPS):
        for rank, got in enumerate(ranks):
            rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
            assert torch.allclose(got["losses"][step], expected["losses"][step], atol=1e-5)
            assert torch.allclose(got["grads"][step], expected["grads"][step][rows], atol=1e-6)
            assert torch.equal(got["correct"][step], expected["correct"][step][rows])
    for rank, got in enumerate(ranks):
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        assert torch.allclose(got["logits"], expected["logits"][rows], atol=1e-5)
        assert torch.equal(got["topk"], expected["logits"][rows].topk(3).indices)
        start, end = shard_range(C, rank, world)
        for key, value in got["state"].items():
            full = expected["state"][key]
            want = full[start:end] if value.shape != full.shape else full
            assert torch.allclose(value.float(), want.float(), atol=1e-6), (rank, key)

    # under DDP, the backbone moves as with one unsharded head on the global batch
    model, head = backbone(), warm_head().train()
    features, labels = global_batch(0, world)
    F.cross_entropy(head(model(features), labels), labels).backward()
    for got in ranks:
        assert torch.allclose(got["ddp_grad"], model.weight.grad, atol=1e-6)

    # the shard files make the unsharded head, and load on another number of processes
    merged = unsharded_head(tmp_path / "shards")
    for key, value in merged.state_dict().items():
        assert torch.allclose(value.float(), expected["state"][key].float(), atol=1e-6), key
    other = 5 - world  # 2 -> 3, 3 -> 2
    for rank in range(other):
        head = ShardedDNCHead(D, C, rank=rank, world_size=other, **OPTIONS)
        load_head_shard(head, tmp_path / "shards")
        start, end = shard_range(C, rank, other)
        assert torch.equal(head.bank.subcentroids, merged.bank.subcentroids[start:end])
        assert torch.equal(head.memory.features, merged.memory.features[start:end])


def test_negative_class_sampling_scores_the_batch_classes_and_a_seeded_share(tmp_path):
    """20 classes per shard, half scored per step: the loss is the cross-entropy over the
    sampled classes (every class of the batch among them), the gradients follow it, and
    the update and evaluation still use every class."""
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), 0.5), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    expected, full = reference(2, sample_rate=0.5), reference(2, classes=MANY)
    assert ranks[0]["state"]["bank.subcentroids"].shape[0] == MANY // 2
    for step in range(STEPS):
        for rank, got in enumerate(ranks):
            rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
            assert torch.allclose(got["losses"][step], expected["losses"][step], atol=1e-5)
            assert torch.allclose(got["grads"][step], expected["grads"][step][rows], atol=1e-6)
        assert not torch.allclose(expected["losses"][step], full["losses"][step], atol=1e-3)
    for rank, got in enumerate(ranks):
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        assert torch.allclose(got["logits"], expected["logits"][rows], atol=1e-5)
        start, end = shard_range(MANY, rank, 2)
        want = expected["state"]["bank.subcentroids"][start:end]
        assert torch.allclose(got["state"]["bank.subcentroids"], want, atol=1e-6)


def test_one_process_equals_an_unsharded_head_and_arguments_are_checked():
    head = ShardedDNCHead(D, C, **OPTIONS)
    head.load_pieces([StatePiece.from_state_dict(warm_head().state_dict())])
    features, labels = global_batch(0, 1)
    expected = warm_head().train()
    loss = F.cross_entropy(expected(features, labels), labels)
    assert torch.allclose(head.training_step(features, labels).loss, loss, atol=1e-6)
    assert torch.equal(head.bank.subcentroids, expected.bank.subcentroids)
    with pytest.raises(ValueError, match="at least one class per process"):
        ShardedDNCHead(D, 2, rank=0, world_size=3)
    with pytest.raises(ValueError, match="sample_rate"):
        ShardedDNCHead(D, C, sample_rate=0.0)
    with pytest.raises(RuntimeError, match="one of 2 shards"):
        ShardedDNCHead(D, C, rank=0, world_size=2)(features)
    with pytest.raises(ValueError, match="holds 7 classes"):
        ShardedDNCHead(D, 8).load_pieces([StatePiece.from_state_dict(head.state_dict())])
