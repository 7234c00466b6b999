"""``DNCHead``: the nearest-sub-centroid classifier that replaces a softmax layer.

Vectors ``(N, D) -> (N, C)`` and feature maps ``(B, D, H, W) -> (B, C, H, W)``, like
the ``nn.Linear`` or 1x1 ``nn.Conv2d`` it replaces. The logits are
``max_k cos(x, p_ck) / tau``, so their argmax is the class of the single nearest
sub-centroid. The sub-centroids are buffers moved by clustering during training
(when targets are given), never by the optimiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepnc.nn import defaults, distributed
from deepnc.nn.bank import SubCentroidBank
from deepnc.nn.grouping import class_slots
from deepnc.nn.input_checks import (
    VALIDATE_MODES,
    InputChecks,
    check_head_arguments,
    flatten_targets,
    nonfinite_rows,
    report_nonfinite,
    usable_rows,
)
from deepnc.nn.memory import ClassMemory
from deepnc.nn.memory import memory_dtype as memory_dtype_of
from deepnc.nn.temperature import check_tau, resolve_tau
from deepnc.utils.validate import (
    check_choice,
    check_features,
    check_target_values,
    check_targets,
)

__all__ = ["VALIDATE_MODES", "DNCHead"]


class DNCHead(nn.Module):
    """Deep Nearest Centroids classifier head.

    Args:
        in_features: D, the width of the incoming features.
        num_classes: C.
        num_subcentroids: K sub-centroids per class (4 for classification, 10 is the
            usual choice for dense prediction).
        tau: temperature; logits are ``max-cosine / tau``: a number > 0, or ``"auto"``
            (from the class count; :mod:`deepnc.nn.temperature`).
        momentum: mu of the sub-centroid moving average, in [0, 1).
        momentum_warmup: W >= 0: the n-th update of a class uses
            ``min(mu, (1 + n) / (W + n))``; 0 uses mu from the start (see
            :class:`~deepnc.nn.bank.SubCentroidBank`).
        sinkhorn_eps: entropy weight of the balanced assignment (> 0).
        sinkhorn_iterations: Sinkhorn-Knopp iterations per update (>= 1).
        memory_size: features kept per class in a FIFO memory for ``(N, D)`` inputs
            (>= K), or 0 to cluster only the current batch. Feature maps never use
            the memory: a batch has pixels enough. The memory costs C x L x D floats.
        memory_dtype: how the memory stores features: ``"float32"``, or ``"bfloat16"`` /
            ``"float16"`` for half the bytes (the maths stays fp32).
        assignment: ``"sinkhorn"`` (the method), ``"nearest"`` or ``"random"``
            (ablations; see :class:`~deepnc.nn.bank.SubCentroidBank`).
        dead_after: updates without a sample after which a sub-centroid is re-seeded.
        max_pixels_per_class: cap on the correct pixels of one class clustered per
            step (a seeded random subset), bounding memory; ``None`` for no cap.
        ignore_index: target value that marks pixels or samples to leave out.
        projection: P: a learnt linear map D -> P (no bias, orthogonal start) before the
            LayerNorm, so the sub-centroids live in P dimensions: the metric a frozen
            backbone lacks (:func:`~deepnc.nn.projection.learn_projection` trains it on
            cached features; in a trained network, one more layer). ``None``: none.
        layer_norm: apply a learnable LayerNorm over D (P with a projection) before L2
            normalisation (the method's embedding normalisation; its parameters belong to
            the embedding).
        logit_norm: an ablation: the official code's LayerNorm over the C class scores
            (a learnt gain and bias per class) in place of the division by tau. Its
            logits are not cosines over tau: similarity scores, class edits and the
            rejection threshold need a head without it.
        nonfinite: what to do with NaN/Inf features during an update: ``"skip"`` them
            with a warning, or ``"raise"`` a ValueError. They never reach the bank.
        validate: when the values of update inputs are checked (types and shapes
            always are): ``"first"`` (default) at once on the first 10 eager updates,
            then counted on the device and reported by :meth:`check_inputs`;
            ``"always"`` at once (a sync per step); ``"deferred"`` only by
            :meth:`check_inputs`. Bad targets and NaN/Inf features never reach a
            sub-centroid either way (:class:`~deepnc.nn.input_checks.InputChecks`).
        seed: seeds the random draws of seeding and subsampling.

    Example:
        >>> head = DNCHead(in_features=8, num_classes=3, num_subcentroids=2)
        >>> x, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> logits = head(x, y)  # training mode: seeds / updates the sub-centroids
        >>> logits.shape
        torch.Size([6, 3])
        >>> head(torch.randn(2, 8, 5, 5)).shape  # feature maps work too
        torch.Size([2, 3, 5, 5])
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
        max_pixels_per_class: int | None = None,
        ignore_index: int = -100,
        projection: int | None = None,
        layer_norm: bool = True,
        logit_norm: bool = False,
        nonfinite: str = "skip",
        validate: str = "first",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_head_arguments(
            in_features, num_subcentroids, projection, layer_norm, memory_size,
            max_pixels_per_class, ignore_index,
        )  # fmt: skip
        self.in_features, self.embedding_dim = in_features, projection or in_features
        self.tau_option = check_tau(tau)
        self.memory_size, self.memory_dtype = memory_size, memory_dtype
        memory_dtype_of(memory_dtype)  # checked now, not at the first update
        self.max_pixels_per_class = max_pixels_per_class
        self.ignore_index = ignore_index
        self.nonfinite = check_choice("nonfinite", nonfinite, ("skip", "raise"))
        self.input_checks = InputChecks(validate)
        self._bank_options = dict(
            momentum=momentum,
            momentum_warmup=momentum_warmup,
            sinkhorn_eps=sinkhorn_eps,
            sinkhorn_iterations=sinkhorn_iterations,
            assignment=assignment,
            dead_after=dead_after,
            seed=seed,
        )
        self.projection = nn.Identity()
        if projection is not None:
            self.projection = nn.Linear(in_features, projection, bias=False)
            nn.init.orthogonal_(self.projection.weight)
        self.norm = nn.LayerNorm(self.embedding_dim) if layer_norm else nn.Identity()
        self._logit_norm = logit_norm
        self._pending_targets: torch.Tensor | None = None  # set by deepnc.training_targets
        self.bank: SubCentroidBank
        self.memory: ClassMemory | None
        self._build(num_classes, num_subcentroids)

    def _build(self, num_classes: int, num_subcentroids: int) -> None:
        self.bank = SubCentroidBank(
            num_classes, num_subcentroids, self.embedding_dim, **self._bank_options
        )
        size = self.memory_size
        dim, dtype = self.embedding_dim, self.memory_dtype
        self.memory = ClassMemory(num_classes, dim, size, dtype) if size else None
        self.logit_norm = nn.LayerNorm(num_classes) if self._logit_norm else None

    @property
    def validate(self) -> str:
        """When input values are checked: ``"first"``, ``"always"`` or ``"deferred"``."""
        return self.input_checks.validate

    @property
    def tau(self) -> float:
        """The temperature in use (``"auto"`` resolved for the current class count)."""
        return resolve_tau(self.tau_option, self.num_classes)

    @property
    def num_classes(self) -> int:
        return self.bank.num_classes

    @property
    def num_subcentroids(self) -> int:
        return self.bank.num_subcentroids

    @property
    def subcentroids(self) -> torch.Tensor:
        """``(C, K, E)`` fp32 unit sub-centroids, E = ``embedding_dim`` (a buffer; zeros for
        unseeded classes)."""
        return self.bank.subcentroids

    def reset(self, num_classes: int, num_subcentroids: int | None = None) -> None:
        """Start over with ``num_classes`` unseeded classes (keeps the embedding), like
        timm's ``reset_classifier``."""
        device = self.bank.subcentroids.device
        self._build(num_classes, num_subcentroids or self.num_subcentroids)
        self.to(device)

    # ---------------------------------------------------------------- forward
    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, and in training mode with targets, one sub-centroid update.

        Once every class is seeded the update makes no host-device sync (see
        ``validate``), and the whole train-mode forward compiles as one graph
        (``torch.compile(head, fullgraph=True)``).

        Args:
            features: ``(N, D)`` vectors or ``(B, D, H, W)`` feature maps, any float dtype.
            targets: ``(N,)`` or ``(B, H', W')`` int64 class indices (or
                ``ignore_index``); dense targets of another size are resized to the
                feature map by nearest neighbour. Used only in training mode.

        Returns:
            fp32 logits ``(N, C)`` or ``(B, C, H, W)``, in train and eval alike.
        """
        check_features(features, self.in_features)
        if targets is None:
            targets = self._pending_targets
        update = self.training and targets is not None
        if update:
            check_targets(targets, features)
            checked = self.input_checks.check_now(targets, self.num_classes, self.ignore_index)
        embedded, similarities = self._similarities(features)
        class_scores = similarities.amax(dim=-1)  # (..., C)
        norm = self.logit_norm
        logits = class_scores / self.tau if norm is None else norm(class_scores)
        if update:
            self._apply_update(
                embedded.detach(),
                similarities.detach(),
                class_scores.detach(),
                self.flatten_targets(targets, features),
                checked=checked,
            )
        if features.dim() == 4:
            logits = logits.permute(0, 3, 1, 2).contiguous()
        return logits

    @torch.no_grad()
    def update(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """One sub-centroid update from features and targets, in any mode.

        Args: as :meth:`forward`; the targets are required.
        """
        check_features(features, self.in_features)
        check_targets(targets, features)
        checked = self.input_checks.check_now(targets, self.num_classes, self.ignore_index)
        embedded, similarities = self._similarities(features)
        flat = self.flatten_targets(targets, features)
        self._apply_update(embedded, similarities, similarities.amax(dim=-1), flat, checked=checked)

    @torch.no_grad()
    def seed(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Seed the unseeded classes present, by k-means++, and move nothing else: a host
        step (it syncs) before training, so that a compiled step never meets an unseeded
        class (:func:`deepnc.seed_heads` does a model and its batches).

        Args: as :meth:`update`. Returns ``(C,)`` bool, the classes this call seeded.
        """
        check_target_values(targets, self.num_classes, self.ignore_index)
        embedded, labels, keep = self._usable_embedding(features, targets)
        return self.bank.initialise(embedded, labels.masked_fill(~keep, 0), include=keep)

    @torch.no_grad()
    def fit(self, features: torch.Tensor, targets: torch.Tensor, iterations: int = 10) -> None:
        """Fit the sub-centroids of the classes present by balanced k-means (k-means++, then
        ``iterations`` Sinkhorn rounds) and fill the memory with the same features: a warm
        start (:func:`deepnc.warm_start` does a model and its data). Samples with
        ``ignore_index``, out-of-range targets or NaN/Inf features are left out.

        Args:
            features: ``(M, D)`` head inputs (or ``(B, D, H, W)`` feature maps).
            targets: ``(M,)`` (or ``(B, H', W')``) int64 class indices.
            iterations: balanced assignment rounds after seeding (>= 0).
        """
        embedded, labels, keep = self._usable_embedding(features, targets)
        embedded, labels = embedded[keep], labels[keep]
        self.bank.fit(embedded, labels, iterations=iterations)
        if self.memory is not None and features.dim() == 2:
            self.memory.push(embedded, labels)

    def check_inputs(self) -> None:
        """Report the bad inputs that updates left out since the last call, and forget them
        (one sync: call it at logging time, not per step).

        Raises:
            ValueError: targets outside ``[0, C)`` that were not ``ignore_index`` were
                met, or NaN/Inf features with ``nonfinite="raise"``.
        Warns:
            UserWarning: NaN/Inf features were skipped (``nonfinite="skip"``).
        """
        self.input_checks.report(self.num_classes, self.ignore_index, self.nonfinite)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised embedding: projection, LayerNorm, then L2, fp32: ``(N, E)`` or
        ``(B, H, W, E)`` from ``(N, D)`` or ``(B, D, H, W)`` (E: ``embedding_dim``)."""
        device_type = features.device.type
        with torch.autocast(device_type, enabled=False):
            x = features.float()
            if x.dim() == 4:
                x = x.permute(0, 2, 3, 1)
            return F.normalize(self.norm(self.projection(x)), dim=-1)

    def _similarities(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedded (..., E), cosines (..., C, K))`` in fp32."""
        embedded = self.embed(features)
        # Backward needs the sub-centroids as they were here: the update replaces the
        # buffer by a new tensor rather than writing into this one.
        subcentroids = self.bank.subcentroids
        with torch.autocast(features.device.type, enabled=False):
            cosines = embedded @ subcentroids.view(-1, self.embedding_dim).T
        return embedded, cosines.unflatten(-1, (self.num_classes, self.num_subcentroids))

    flatten_targets = staticmethod(flatten_targets)

    def _apply_update(self, *args, **kwargs) -> None:
        """The update (:meth:`_update_from_batch`), eagerly while some class is unseeded.
        torch.compile guards on the flag read here: once every class is seeded the whole
        forward recompiles once, as one graph."""
        if self.bank.all_seeded:
            self._update_from_batch(*args, **kwargs)
        else:
            self._update_while_seeding(*args, **kwargs)

    @torch.compiler.disable
    def _update_while_seeding(self, *args, **kwargs) -> None:
        """The update while some class is unseeded: seeding (k-means++) is a host step."""
        self._update_from_batch(*args, **kwargs)

    @torch.no_grad()
    def _update_from_batch(
        self,
        embedded: torch.Tensor,
        similarities: torch.Tensor,
        class_scores: torch.Tensor,
        labels: torch.Tensor,
        *,
        checked: bool,
    ) -> None:
        """One sub-centroid update from a training batch, on the device: the samples left
        out are masked, never copied out; all processes' rows are gathered; then the bank
        clusters either the batch (dense heads, no memory) or each class's memory.

        Args:
            embedded: ``(N, E)`` or ``(B, H, W, E)`` normalised features.
            similarities: ``(..., C, K)`` their cosines to every sub-centroid.
            class_scores: ``(..., C)`` the best cosine of each class.
            labels: ``(M,)`` int64 flat targets, M = N or B*H*W.
            checked: report NaN/Inf features at once (a sync) instead of counting them
                for :meth:`check_inputs`.
        """
        dense = embedded.dim() == 4
        num_classes, ignore_index = self.num_classes, self.ignore_index
        embedded = embedded.reshape(-1, self.embedding_dim)
        similarities = similarities.reshape(-1, num_classes, self.num_subcentroids)
        class_scores = class_scores.reshape(-1, num_classes)
        if labels.numel() == 0:
            self.bank.num_updates += 1
            return
        finite = torch.isfinite(embedded).all(dim=1)
        if checked:
            skipped = int(nonfinite_rows(finite, labels, ignore_index).sum())
            report_nonfinite(skipped, self.nonfinite, "the sub-centroid update", stacklevel=7)
        correct = self.correctly_classified(class_scores, labels)
        safe = labels.clamp(0, num_classes - 1)
        own = similarities[torch.arange(labels.numel(), device=labels.device), safe]  # (M, K)
        # Every row travels, left-out ones included (masked after), so that all processes
        # send the same number of rows and nothing is read back to the host.
        embedded, own, labels, correct, finite = distributed.all_gather_together(
            embedded, own, labels, correct, finite, check_sizes=checked
        )
        keep = usable_rows(embedded, labels, finite, num_classes, ignore_index)
        if not checked:
            self.input_checks.count_left_out(labels, finite, num_classes, ignore_index)
        labels = labels.masked_fill(~keep, 0)
        correct &= keep
        own = torch.where(keep.unsqueeze(1), own, 0.0)

        self.bank.record_accuracy(labels, correct, include=keep)
        if self.memory is None or dense:
            cap = self.max_pixels_per_class
            self.bank.update(embedded, labels, correct, scores=own, max_per_class=cap, include=keep)
            return
        seeded = self.bank.seed_new(embedded, labels, include=keep)[labels]
        self.memory.push(embedded, labels, include=keep & (correct | ~seeded))  # seeds' too
        slots = class_slots(labels, correct & seeded, num_classes)
        self.bank.step_from_memory(self.memory, slots)

    @staticmethod
    def correctly_classified(class_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(M,)`` bool: the nearest sub-centroid of sample m belongs to its class.

        ``class_scores`` ``(M, C)`` is the best cosine of each class."""
        return class_scores.argmax(dim=-1) == labels

    def _usable_embedding(
        self, features: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checked inputs as ``(embedded (M, E), labels (M,), usable (M,) bool)``."""
        check_features(features, self.in_features)
        check_targets(targets, features)
        labels = self.flatten_targets(targets, features)
        embedded = self.embed(features).reshape(-1, self.embedding_dim)
        finite = torch.isfinite(embedded).all(dim=1)
        keep = usable_rows(embedded, labels, finite, self.num_classes, self.ignore_index)
        return embedded, labels, keep

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"num_subcentroids={self.num_subcentroids}, tau={self.tau_option!r}, "
            f"memory_size={self.memory_size}, embedding_dim={self.embedding_dim}"
        )
