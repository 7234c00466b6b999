"""``ShardedDNCHead``: a DNC head whose classes are split across the processes of a
group, for tens of thousands of classes and more (the Partial FC pattern).

Each of W processes owns a contiguous slice of the C classes
(:func:`~deepnc.nn.sharded_loss.shard_range`): their sub-centroids, class memory and
counters. A step gathers every process's embeddings (differentiably), scores them
against its own classes only, computes the cross-entropy over all classes from two
all-reduced numbers per sample (:func:`~deepnc.nn.sharded_loss.sharded_cross_entropy`),
and moves only its own sub-centroids: nothing of the head is broadcast, and the head's
state per process is 1/W of an unsharded head's. The head has no sharded parameter
(sub-centroids are buffers), so DDP keeps the backbone and the head's LayerNorm; give
DDP the head's buffers to ignore with :func:`exclude_shards_from_ddp`.

From the same sub-centroids and memory, a step equals an unsharded
:class:`~deepnc.DNCHead`'s on the same global batch (tested on 2 and 3 gloo
processes). Seeding differs: each shard draws its own k-means++ seeds.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from deepnc.nn import defaults, distributed
from deepnc.nn.bank import SubCentroidBank
from deepnc.nn.grouping import class_slots
from deepnc.nn.head import DNCHead
from deepnc.nn.input_checks import check_head_arguments, usable_rows
from deepnc.nn.memory import ClassMemory
from deepnc.nn.shard_state import StatePiece, assemble_state
from deepnc.nn.sharded_loss import (
    merged_topk,
    sample_classes,
    shard_range,
    sharded_cross_entropy,
)
from deepnc.nn.temperature import check_tau, resolve_tau
from deepnc.utils.validate import (
    check_features,
    check_range,
    check_target_values,
    check_targets,
)

__all__ = [
    "ShardedClassifier",
    "ShardedDNCHead",
    "ShardedStep",
    "exclude_shards_from_ddp",
    "unsharded_head",
]


class ShardedStep(NamedTuple):
    """What :meth:`ShardedDNCHead.training_step` returns.

    Attributes:
        loss: ``()`` mean cross-entropy over the global batch (the same on every process).
        correct: ``(N,)`` bool, which of this process's samples the head classified right.
    """

    loss: torch.Tensor
    correct: torch.Tensor


class ShardedDNCHead(nn.Module):
    """A DNC head over ``(N, D)`` vectors whose classes are split across processes.

    Args (the others as :class:`~deepnc.DNCHead`'s, for this process's classes):
        in_features: D; ``num_classes``: C over all processes (C >= W).
        sample_rate: in (0, 1]: the share of each shard's classes a training step scores:
            every class of the batch, then seeded random others (Partial FC's
            ``sample_rate``); 1.0 scores them all. Evaluation scores every class.
        rank, world_size: this process and the number of shards; by default those of
            the running process group (0 and 1 without one).

    Attributes:
        class_start, class_end: this process's classes, ``[start, end)``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        num_subcentroids: int = defaults.NUM_SUBCENTROIDS,
        tau: float | str = defaults.TAU,
        momentum: float = defaults.MOMENTUM,
        momentum_warmup: int = 0,
        sinkhorn_eps: float = defaults.SINKHORN_EPS,
        sinkhorn_iterations: int = defaults.SINKHORN_ITERATIONS,
        memory_size: int = defaults.MEMORY_SIZE,
        memory_dtype: str = "float32",
        assignment: str = "sinkhorn",
        dead_after: int = defaults.DEAD_AFTER,
        sample_rate: float = 1.0,
        projection: int | None = None,
        layer_norm: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        self.options = dict(
            num_subcentroids=num_subcentroids,
            tau=tau,
            momentum=momentum,
            momentum_warmup=momentum_warmup,
            sinkhorn_eps=sinkhorn_eps,
            sinkhorn_iterations=sinkhorn_iterations,
            memory_size=memory_size,
            memory_dtype=memory_dtype,
            assignment=assignment,
            dead_after=dead_after,
            projection=projection,
            layer_norm=layer_norm,
            seed=seed,
        )
        """The options of the equivalent unsharded :class:`~deepnc.DNCHead`."""
        check_head_arguments(
            in_features, num_subcentroids, projection, layer_norm, memory_size, None, -100
        )
        self.rank = distributed.rank() if rank is None else rank
        self.world_size = distributed.world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")
        self.num_classes = num_classes
        self.class_start, self.class_end = shard_range(num_classes, self.rank, self.world_size)
        self.in_features, self.embedding_dim = in_features, projection or in_features
        self.tau_option = check_tau(tau)
        self.sample_rate = check_range(
            "sample_rate", sample_rate, 0.0, 1.0, low_open=True, high_open=False
        )
        self.seed = seed
        self.projection = nn.Identity()
        if projection is not None:
            self.projection = nn.Linear(in_features, projection, bias=False)
            nn.init.orthogonal_(self.projection.weight)
        self.norm = nn.LayerNorm(self.embedding_dim) if layer_norm else nn.Identity()
        local = self.class_end - self.class_start
        self.bank = SubCentroidBank(
            local,
            num_subcentroids,
            self.embedding_dim,
            momentum=momentum,
            momentum_warmup=momentum_warmup,
            sinkhorn_eps=sinkhorn_eps,
            sinkhorn_iterations=sinkhorn_iterations,
            assignment=assignment,
            dead_after=dead_after,
            seed=seed,
        )
        self.bank.replicated = False
        size, dim = memory_size, self.embedding_dim
        self.memory = ClassMemory(local, dim, size, memory_dtype) if size else None
        self._checks_left = 10  # target values checked at once (a sync) on the first steps

    @property
    def tau(self) -> float:
        """The temperature in use (``"auto"`` resolved for all C classes)."""
        return resolve_tau(self.tau_option, self.num_classes)

    @property
    def num_local_classes(self) -> int:
        return self.class_end - self.class_start

    embed = DNCHead.embed  # the same projection, LayerNorm and L2 as the unsharded head

    def _gathered_embedding(self, features: torch.Tensor, grad: bool) -> torch.Tensor:
        check_features(features, self.in_features)
        if self.world_size != distributed.world_size():
            raise RuntimeError(
                f"this head is one of {self.world_size} shards, but the process group has "
                f"{distributed.world_size()} processes: build it inside the group it trains in"
            )
        if features.dim() != 2:
            raise ValueError(f"a sharded head takes (N, D) vectors, got {tuple(features.shape)}")
        embedded = self.embed(features)
        if grad:
            return distributed.all_gather_rows_with_grad(embedded)
        return distributed.all_gather_rows(embedded.detach())

    def _scores(self, embedded: torch.Tensor, classes: torch.Tensor | None = None):
        """``(M, C', K)`` cosines to this shard's sub-centroids (all, or ``classes``)."""
        subcentroids = self.bank.subcentroids
        if classes is not None:
            subcentroids = subcentroids[classes]
        with torch.autocast(embedded.device.type, enabled=False):
            cosines = embedded @ subcentroids.reshape(-1, self.embedding_dim).T
        return cosines.unflatten(1, (subcentroids.shape[0], self.bank.num_subcentroids))

    # ------------------------------------------------------------------ training
    def training_step(
        self, features: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0
    ) -> ShardedStep:
        """The loss of this process's batch within the global one, and one update of this
        process's sub-centroids from every process's samples. Every process calls it with
        batches of the same size; once every own class is seeded it makes no host sync.

        Args:
            features: ``(N, D)`` this process's head inputs, any float dtype.
            targets: ``(N,)`` int64 classes in ``[0, C)``.
            label_smoothing: as ``F.cross_entropy``'s.
        """
        check_targets(targets, features)
        if self._checks_left:
            self._checks_left -= 1
            check_target_values(targets, self.num_classes, ignore_index=-100)
        gathered = self._gathered_embedding(features, grad=True)  # (M, E), M = W * N
        labels = distributed.all_gather_rows(targets)
        local = labels - self.class_start
        owned = (local >= 0) & (local < self.num_local_classes)
        local = torch.where(owned, local, self.num_local_classes)
        sizes = self.sample_sizes(labels.numel())
        if sizes[self.rank] < self.num_local_classes:
            with torch.no_grad():
                cosines = self._scores(gathered.detach())
            shard, step = (self.class_start, self.class_end), self.bank.num_updates
            classes = sample_classes(local, shard, sizes[self.rank], step, self.seed)
            logits = self._scores(gathered, classes).amax(dim=-1) / self.tau
            column = torch.searchsorted(classes, local).clamp(max=classes.numel() - 1)
            column_owned = owned & (classes[column] == local)
        else:
            cosines = self._scores(gathered)
            logits = cosines.amax(dim=-1) / self.tau
            column, column_owned = local, owned
        scores = cosines.detach().amax(dim=-1)
        result = sharded_cross_entropy(
            logits,
            torch.where(column_owned, column, -1),
            scores,
            self.class_start,
            scale=1.0 / self.tau,
            num_scored=sum(sizes),
            label_smoothing=label_smoothing,
        )
        correct = result.prediction == labels
        self._update(gathered.detach(), cosines.detach(), local, owned, correct)
        start = distributed.rank() * features.shape[0]
        return ShardedStep(result.loss, correct[start : start + features.shape[0]])

    def sample_sizes(self, batch: int) -> list[int]:
        """The classes each shard scores in a training step over ``batch`` gathered
        samples: ``ceil(sample_rate * C_r)``, but never fewer than the batch could hold
        (every class of the batch is scored), nor more than C_r."""
        sizes = []
        for rank in range(self.world_size):
            start, end = shard_range(self.num_classes, rank, self.world_size)
            sizes.append(min(end - start, max(math.ceil(self.sample_rate * (end - start)), batch)))
        return sizes

    @torch.no_grad()
    def _update(
        self,
        embedded: torch.Tensor,
        cosines: torch.Tensor,
        local: torch.Tensor,
        owned: torch.Tensor,
        correct: torch.Tensor,
    ) -> None:
        """This shard's update from the gathered batch, as ``DNCHead``'s (memory or not).

        Args:
            embedded: ``(M, E)``; ``cosines`` ``(M, C_r, K)``; ``local`` ``(M,)`` int64
                local class (C_r where another shard owns it); ``owned``, ``correct``
                ``(M,)`` bool (correct: the nearest sub-centroid over all shards is the
                sample's class).
        """
        finite = torch.isfinite(embedded).all(dim=1)
        keep = owned & usable_rows(embedded, local, finite, self.num_local_classes, -100)
        labels = local.masked_fill(~keep, 0)
        correct = correct & keep
        own = cosines[torch.arange(labels.numel(), device=labels.device), labels]  # (M, K)
        own = torch.where(keep.unsqueeze(1), own, 0.0)
        self.bank.record_accuracy(labels, correct, include=keep)
        if self.memory is None:
            self.bank.update(embedded, labels, correct, scores=own, include=keep)
            return
        seeded = self.bank.seed_new(embedded, labels, include=keep)[labels]
        self.memory.push(embedded, labels, include=keep & (correct | ~seeded))
        slots = class_slots(labels, correct & seeded, self.num_local_classes)
        self.bank.step_from_memory(self.memory, slots)

    # ---------------------------------------------------------------- prediction
    @torch.no_grad()
    def topk(self, features: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (N, k), classes (N, k) int64)``: this process's samples' k best
        classes over every shard, merged without a ``(N, C)`` matrix (k <= C). Every
        process calls it with batches of the same size."""
        if not 1 <= k <= self.num_classes:
            raise ValueError(f"k must be in [1, {self.num_classes}], got {k}")
        gathered = self._gathered_embedding(features, grad=False)
        scores = self._scores(gathered).amax(dim=-1) / self.tau
        values, classes = merged_topk(scores, self.class_start, k)
        start = distributed.rank() * features.shape[0]
        rows = slice(start, start + features.shape[0])
        return values[rows], classes[rows]

    @torch.no_grad()
    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` fp32 logits of this process's samples over every class, gathered
        from all shards: ``(W * N, C)`` on every process for a moment, so prefer
        :meth:`topk` when C is large. Every process calls it with the same N."""
        gathered = self._gathered_embedding(features, grad=False)
        scores = self._scores(gathered).amax(dim=-1) / self.tau  # (M, C_r)
        widest = shard_range(self.num_classes, 0, self.world_size)
        padded = F.pad(scores, (0, widest[1] - widest[0] - scores.shape[1]))
        shards = distributed.all_gather_rows(padded.unsqueeze(0))  # (W, M, widest)
        parts = []
        for rank in range(self.world_size):
            start, end = shard_range(self.num_classes, rank, self.world_size)
            parts.append(shards[rank, :, : end - start])
        start = distributed.rank() * features.shape[0]
        return torch.cat(parts, dim=1)[start : start + features.shape[0]]

    # ------------------------------------------------------------------- state
    def load_pieces(self, pieces: list[StatePiece]) -> None:
        """Load this shard's classes from ``pieces`` that cover all C classes: the
        shards of a run with any number of processes, or one unsharded head's state
        (:meth:`StatePiece.from_state_dict <deepnc.nn.shard_state.StatePiece.from_state_dict>`)."""
        if pieces and max(piece.end for piece in pieces) != self.num_classes:
            raise ValueError(
                f"the state holds {max(piece.end for piece in pieces)} classes, this head "
                f"{self.num_classes}"
            )
        self.load_state_dict(assemble_state(pieces, self.class_start, self.class_end))

    def to_unsharded(self, pieces: list[StatePiece]) -> DNCHead:
        """The :class:`~deepnc.DNCHead` of all C classes assembled from ``pieces`` (the
        shards' states): for export and single-process prediction."""
        return unsharded_head(self.in_features, self.num_classes, self.options, pieces)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"classes=[{self.class_start}, {self.class_end}), rank={self.rank}, "
            f"world_size={self.world_size}, sample_rate={self.sample_rate}"
        )


class ShardedClassifier(nn.Module):
    """A backbone and a :class:`ShardedDNCHead`, as one module for DDP to wrap (after
    :func:`exclude_shards_from_ddp`), so that DDP averages the backbone's and the head's
    LayerNorm gradients.

    ``forward(images, targets)`` is a training step (a :class:`ShardedStep`);
    ``forward(images)`` gives the ``(N, C)`` logits (``head.topk`` for large C).

    Example (under ``torchrun``, one process per GPU):
        >>> model = ShardedClassifier(backbone, ShardedDNCHead(2048, 21_843))  # doctest: +SKIP
        >>> exclude_shards_from_ddp(model)  # doctest: +SKIP
        >>> model = DistributedDataParallel(model)  # doctest: +SKIP
        >>> model(images, labels).loss.backward()  # doctest: +SKIP
    """

    def __init__(self, backbone: nn.Module, head: ShardedDNCHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor | None = None, **options
    ) -> ShardedStep | torch.Tensor:
        features = self.backbone(images)
        if targets is None:
            return self.head(features)
        return self.head.training_step(features, targets, **options)


def exclude_shards_from_ddp(model: nn.Module) -> list[str]:
    """Tell DDP to leave the sharded heads' buffers alone (they differ per process, and
    DDP would overwrite them with process 0's), before wrapping ``model``. Returns the
    names excluded."""
    names = []
    for prefix, module in model.named_modules():
        if isinstance(module, ShardedDNCHead):
            names += [f"{prefix}.{name}".lstrip(".") for name, _ in module.named_buffers()]
    from torch.nn.parallel import DistributedDataParallel

    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    return names


def unsharded_head(
    in_features: int, num_classes: int, options: dict, pieces: list[StatePiece]
) -> DNCHead:
    """The :class:`~deepnc.DNCHead` of all ``num_classes`` classes, with ``options`` (a
    sharded head's :attr:`~ShardedDNCHead.options`), assembled from its shards' ``pieces``."""
    head = DNCHead(in_features, num_classes, **options)
    result = head.load_state_dict(assemble_state(pieces, 0, num_classes), strict=False)
    missing = [key for key in result.missing_keys if not key.startswith("input_checks.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"the shards do not make this head: missing {missing}, "
            f"unexpected {result.unexpected_keys}"
        )
    return head
