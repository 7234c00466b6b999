"""``DNCHead``: the nearest-sub-centroid classifier that replaces a softmax layer.

Vectors ``(N, D) -> (N, C)`` and feature maps ``(B, D, H, W) -> (B, C, H, W)``, like
the ``nn.Linear`` or 1x1 ``nn.Conv2d`` it replaces. The logits are
``max_k cos(x, p_ck) / tau``, so their argmax is the class of the single nearest
sub-centroid. The sub-centroids are buffers moved by clustering during training
(when targets are given), never by the optimiser.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from deepnc import distributed
from deepnc._validate import (
    check_choice,
    check_features,
    check_positive_float,
    check_positive_int,
    check_targets,
)
from deepnc.memory import ClassMemory
from deepnc.subcentroids import SubCentroidBank

__all__ = ["DNCHead"]


class DNCHead(nn.Module):
    """Deep Nearest Centroids classifier head.

    Args:
        in_features: D, the width of the incoming features.
        num_classes: C.
        num_subcentroids: K sub-centroids per class (4 for classification, 10 is the
            usual choice for dense prediction).
        tau: temperature; logits are ``max-cosine / tau`` (> 0).
        momentum: mu of the sub-centroid moving average, in [0, 1).
        momentum_warmup: W >= 0: the n-th update of a class uses
            ``min(mu, (1 + n) / (W + n))``; 0 uses mu from the start (see
            :class:`~deepnc.subcentroids.SubCentroidBank`).
        sinkhorn_eps: entropy weight of the balanced assignment (> 0).
        sinkhorn_iterations: Sinkhorn-Knopp iterations per update (>= 1).
        memory_size: features kept per class in a FIFO memory for ``(N, D)`` inputs
            (>= K), or 0 to cluster only the current batch. Feature maps never use
            the memory: a batch has pixels enough. The memory costs C x L x D floats.
        assignment: ``"sinkhorn"`` (the method), ``"nearest"`` or ``"random"``
            (ablations; see :class:`~deepnc.subcentroids.SubCentroidBank`).
        dead_after: updates without a sample after which a sub-centroid is re-seeded.
        max_pixels_per_class: cap on the correct pixels of one class clustered per
            step (a seeded random subset), bounding memory; ``None`` for no cap.
        ignore_index: target value that marks pixels or samples to leave out.
        layer_norm: apply a learnable LayerNorm over D before L2 normalisation (the
            method's embedding normalisation; its parameters belong to the embedding).
        nonfinite: what to do with NaN/Inf features during an update: ``"skip"`` them
            with a warning, or ``"raise"`` a ValueError. They never reach the bank.
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
        num_subcentroids: int = 4,
        tau: float = 0.1,
        momentum: float = 0.999,
        momentum_warmup: int = 0,
        sinkhorn_eps: float = 0.05,
        sinkhorn_iterations: int = 3,
        memory_size: int = 64,
        assignment: str = "sinkhorn",
        dead_after: int = 20,
        max_pixels_per_class: int | None = None,
        ignore_index: int = -100,
        layer_norm: bool = True,
        nonfinite: str = "skip",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        if layer_norm and in_features < 2:
            raise ValueError(
                "in_features must be >= 2 with layer_norm=True (a LayerNorm over one channel "
                f"outputs a constant), got {in_features}"
            )
        self.tau = check_positive_float("tau", tau)
        self.memory_size = check_positive_int("memory_size", memory_size, minimum=0)
        check_positive_int("num_subcentroids", num_subcentroids)
        if 0 < memory_size < num_subcentroids:
            raise ValueError(
                f"memory_size must be 0 or >= num_subcentroids = {num_subcentroids} so that "
                f"every sub-centroid can receive a sample, got {memory_size}"
            )
        if max_pixels_per_class is not None:
            check_positive_int("max_pixels_per_class", max_pixels_per_class)
        self.max_pixels_per_class = max_pixels_per_class
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")
        self.ignore_index = ignore_index
        self.nonfinite = check_choice("nonfinite", nonfinite, ("skip", "raise"))
        self._bank_options = dict(
            momentum=momentum,
            momentum_warmup=momentum_warmup,
            sinkhorn_eps=sinkhorn_eps,
            sinkhorn_iterations=sinkhorn_iterations,
            assignment=assignment,
            dead_after=dead_after,
            seed=seed,
        )
        self.norm = nn.LayerNorm(in_features) if layer_norm else nn.Identity()
        self._pending_targets: torch.Tensor | None = None  # set by deepnc.training_targets
        self.bank: SubCentroidBank
        self.memory: ClassMemory | None
        self._build(num_classes, num_subcentroids)

    def _build(self, num_classes: int, num_subcentroids: int) -> None:
        self.bank = SubCentroidBank(
            num_classes, num_subcentroids, self.in_features, **self._bank_options
        )
        self.memory = (
            ClassMemory(num_classes, self.in_features, self.memory_size)
            if self.memory_size
            else None
        )

    @property
    def num_classes(self) -> int:
        return self.bank.num_classes

    @property
    def num_subcentroids(self) -> int:
        return self.bank.num_subcentroids

    @property
    def subcentroids(self) -> torch.Tensor:
        """``(C, K, D)`` fp32 unit sub-centroids (a buffer; zeros for unseeded classes)."""
        return self.bank.subcentroids

    def reset(self, num_classes: int, num_subcentroids: int | None = None) -> None:
        """Start over with ``num_classes`` unseeded classes (keeps the LayerNorm), like
        timm's ``reset_classifier``."""
        device = self.bank.subcentroids.device
        self._build(num_classes, num_subcentroids or self.num_subcentroids)
        self.to(device)

    # ---------------------------------------------------------------- forward
    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, and in training mode with targets, one sub-centroid update.

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
            check_targets(targets, features, self.num_classes, self.ignore_index)
        embedded, similarities = self._similarities(features, keep_graph=torch.is_grad_enabled())
        logits = similarities.amax(dim=-1) / self.tau  # (..., C)
        if update:
            self._update(
                embedded.detach(), similarities.detach(), self._flat_targets(targets, features)
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
        check_targets(targets, features, self.num_classes, self.ignore_index)
        embedded, similarities = self._similarities(features, keep_graph=False)
        self._update(embedded, similarities, self._flat_targets(targets, features))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised embedding: LayerNorm then L2, fp32, ``(N, D)`` or ``(B, H, W, D)``."""
        device_type = features.device.type
        with torch.autocast(device_type, enabled=False):
            x = features.float()
            if x.dim() == 4:
                x = x.permute(0, 2, 3, 1)
            return F.normalize(self.norm(x), dim=-1)

    def _similarities(
        self, features: torch.Tensor, *, keep_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedded (..., D), cosines (..., C, K))`` in fp32."""
        embedded = self.embed(features)
        subcentroids = self.bank.subcentroids
        if keep_graph:
            # Backward needs the sub-centroids as they were here, after the update has
            # moved the buffer in place: keep a snapshot (C*K*D floats).
            subcentroids = subcentroids.clone()
        with torch.autocast(features.device.type, enabled=False):
            cosines = embedded @ subcentroids.view(-1, self.in_features).T
        return embedded, cosines.unflatten(-1, (self.num_classes, self.num_subcentroids))

    def _flat_targets(self, targets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 4 and targets.shape[-2:] != features.shape[-2:]:
            resized = F.interpolate(targets.unsqueeze(1).float(), size=features.shape[-2:])
            targets = resized.squeeze(1).round().long()
        return targets.reshape(-1).long()

    # ----------------------------------------------------------------- update
    @torch.no_grad()
    def _update(
        self, embedded: torch.Tensor, similarities: torch.Tensor, labels: torch.Tensor
    ) -> None:
        dense = embedded.dim() == 4
        embedded = embedded.reshape(-1, self.in_features)
        similarities = similarities.reshape(-1, self.num_classes, self.num_subcentroids)
        keep = labels != self.ignore_index
        finite = torch.isfinite(embedded).all(dim=1)
        if not bool(finite.all()):
            skipped = int((~finite & keep).sum())
            message = f"{skipped} sample(s) with NaN or Inf features"
            if self.nonfinite == "raise":
                raise ValueError(f"features must be finite: {message}")
            warnings.warn(f"{message} left out of the sub-centroid update", stacklevel=3)
            keep &= finite
        # A constant feature vector normalises to zero: it has no direction to cluster.
        keep &= embedded.abs().amax(dim=1) > 0
        embedded, similarities, labels = embedded[keep], similarities[keep], labels[keep]
        correct = self._correctly_classified(similarities, labels)
        own = similarities[torch.arange(labels.numel(), device=labels.device), labels]
        embedded, own, labels, correct = _gather(embedded, own, labels, correct)

        self.bank.record_accuracy(labels, correct)
        if self.memory is None or dense:
            self.bank.update(
                embedded, labels, correct, scores=own, max_per_class=self.max_pixels_per_class
            )
            return
        was_initialised = self.bank.initialised.clone()
        self.bank.initialise(embedded, labels)
        fresh = correct | ~was_initialised[labels]  # first features of a class seed it
        self.memory.push(embedded[fresh], labels[fresh])
        usable = correct & was_initialised[labels]
        classes = torch.nonzero(torch.bincount(labels[usable], minlength=self.num_classes))
        self._step_from_memory(classes.squeeze(1))

    @staticmethod
    def _correctly_classified(similarities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(M,)`` bool: the nearest sub-centroid of sample m belongs to its class."""
        return similarities.amax(dim=-1).argmax(dim=-1) == labels

    def _step_from_memory(self, classes: torch.Tensor) -> None:
        """Cluster the memory of ``classes`` (``(C',)``) and move their sub-centroids."""
        memory = self.memory
        assert memory is not None
        filled = memory.filled()[classes]  # (C', L)
        stored = memory.features[classes]  # (C', L, D)
        scores = torch.einsum("cld,ckd->clk", stored, self.bank.subcentroids[classes])
        labels = classes.repeat_interleave(memory.length)
        self.bank.step(
            stored.view(-1, self.in_features),
            labels,
            scores.reshape(-1, self.num_subcentroids),
            include=filled.view(-1),  # empty slots are left out without a copy
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"num_subcentroids={self.num_subcentroids}, tau={self.tau}, "
            f"memory_size={self.memory_size}"
        )


def _gather(
    embedded: torch.Tensor, own: torch.Tensor, labels: torch.Tensor, correct: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All-gather the update's samples from every process in one collective."""
    if not distributed.is_distributed():
        return embedded, own, labels, correct
    dim, num_k = embedded.shape[1], own.shape[1]
    packed = torch.cat(
        [embedded, own, labels.unsqueeze(1).float(), correct.unsqueeze(1).float()], 1
    )
    packed = distributed.all_gather_rows(packed)
    embedded, own = packed[:, :dim], packed[:, dim : dim + num_k]
    labels, correct = packed[:, dim + num_k].long(), packed[:, dim + num_k + 1].bool()
    return embedded, own, labels, correct
