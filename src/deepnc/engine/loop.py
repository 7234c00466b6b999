"""The training loop and the evaluation pass, plain enough to call from your own script.

Both work for a DNC model and a softmax model alike: a DNC model is run inside
:func:`deepnc.training_targets` so its heads see the labels and update their
sub-centroids during the forward pass. Under DDP, the figures returned are over all
processes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix

from deepnc.engine.run_checkpoints import EpochProgress, StepCheckpoints
from deepnc.models.outputs import main_and_aux
from deepnc.nn.distributed import is_distributed
from deepnc.nn.hooks import dnc_heads, training_targets
from deepnc.utils.progress import progress_bar

__all__ = [
    "AMP_DTYPES",
    "CONFUSION_MAX_CLASSES",
    "EpochControl",
    "EpochStats",
    "EvalResult",
    "StepOptions",
    "autocast",
    "evaluate",
    "train_one_epoch",
]

AMP_DTYPES = ("auto", "bfloat16", "float16")  # "auto": float16 on CUDA, bfloat16 on CPU
CONFUSION_MAX_CLASSES = 1000
"""Above this class count evaluation keeps O(C) counts and no C x C confusion matrix."""


@dataclass
class EpochStats:
    """What one training epoch did. ``compute_seconds`` excludes data loading.

    ``accuracy`` is over labelled targets: images for classification, pixels other than
    the ignore index for segmentation; ``samples`` counts images.
    """

    loss: float
    accuracy: float
    samples: int
    seconds: float
    compute_seconds: float
    steps: int
    lr: float
    stopped: bool = False  # cut short by a preemption (its state was saved first)

    @property
    def step_seconds(self) -> float:
        return self.compute_seconds / max(1, self.steps)


@dataclass
class EvalResult:
    """Metrics over a whole split.

    Attributes:
        top1, top5: accuracies in ``[0, 1]`` (top-5 is top-C when C < 5).
        loss: mean cross-entropy.
        per_class: ``(C,)`` accuracy of each class (recall; NaN for a class with no sample).
        confusion: ``(C, C)`` counts, rows are true classes, columns predictions; ``None``
            above ``CONFUSION_MAX_CLASSES`` classes (the per-class counts stay O(C)).
        samples: number of images evaluated.
        predicted, true: ``(C,)`` int64 predictions and images of each class.
    """

    top1: float
    top5: float
    loss: float
    per_class: torch.Tensor
    confusion: torch.Tensor | None
    samples: int
    predicted: torch.Tensor
    true: torch.Tensor

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss, "samples": self.samples}

    def class_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(predicted (C,), true (C,))``: the predictions and the truth per class."""
        return self.predicted, self.true


def autocast(device: torch.device, enabled: bool, dtype: str = "auto"):
    """Mixed precision context: bf16 on CPU, fp16 (or the given dtype) on CUDA."""
    if not enabled:
        return contextlib.nullcontext()
    if dtype == "auto":
        dtype = "float16" if device.type == "cuda" else "bfloat16"
    return torch.autocast(device.type, dtype=getattr(torch, dtype))


def sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    if not is_distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class StepOptions:
    """How every training step computes its loss and moves the weights.

    Attributes:
        scheduler: stepped after every optimisation step.
        scaler: a ``GradScaler`` for fp16; ``None`` otherwise.
        amp, amp_dtype: mixed precision (see :func:`autocast`).
        grad_clip: clip the global gradient norm to this value.
        label_smoothing: of the cross-entropy.
        ignore_index: target value left out of the loss and the accuracy.
        aux_weight: weight of the auxiliary loss, when the model returns ``"aux"`` logits.
    """

    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    amp: bool = False
    amp_dtype: str = "auto"
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    ignore_index: int = -100
    aux_weight: float = 0.4


@dataclass
class EpochControl:
    """Where an epoch starts and stops, and what runs beside it: a whole run's concerns
    (:func:`deepnc.engine.trainer.train` fills them in; a script rarely needs them).

    Attributes:
        max_steps: stop after this many steps (an iteration-based run's last epoch).
        start: the progress of a run resumed inside this epoch: its figures so far (the
            loader must already leave out the batches done, see
            :class:`~deepnc.data.samplers.ResumableSampler`).
        on_start: called once the loader's iterator exists, before the first batch (a
            resumed run restores its generators there).
        after_step: called after every optimisation step (for example
            :class:`deepnc.engine.compile.SeedingWatch`).
        checkpoints: saves inside the epoch and stops it on preemption
            (:class:`~deepnc.engine.run_checkpoints.StepCheckpoints`).
    """

    max_steps: int | None = None
    start: EpochProgress | None = None
    on_start: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None
    checkpoints: StepCheckpoints | None = None


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    options: StepOptions = StepOptions(),
    control: EpochControl | None = None,
    progress: bool = False,
    description: str = "train",
) -> EpochStats:
    """One pass over ``loader`` (or its first ``control.max_steps`` batches): forward
    (clustering the DNC heads), backward, step.

    Args:
        model: the model (possibly DDP-wrapped), already on ``device``.
        loader: yields ``(images (B, C, H, W), labels (B,))``, or ``(B, H, W)`` masks for
            a segmentation model (one returning ``{"out": ..., "aux": ...}``).
        options: the loss, precision and optimiser step (:class:`StepOptions`).
        control: where the epoch starts and stops (:class:`EpochControl`).
        progress: show a progress bar (only on a terminal: logs stay readable).

    Raises:
        RuntimeError: the loss became NaN or infinite (the message gives the step).
        ValueError: a DNC head left bad targets or NaN features out of its updates
            (:meth:`deepnc.DNCHead.check_inputs`, read once, at the end of the epoch).
    """
    control = control or EpochControl()
    model.train()
    uses_dnc = bool(dnc_heads(model))
    # (loss x labelled, correct, labelled) summed on the device: no extra wait per step
    tally = torch.zeros(3, dtype=torch.float64, device=device)
    samples = steps = 0
    compute = 0.0
    stopped = False
    if control.start is not None:
        start = control.start
        tally += torch.tensor(start.tally, dtype=torch.float64, device=device)
        samples, steps, compute = start.samples, start.step, start.compute_seconds
    began = time.perf_counter()
    bar = progress_bar(loader, description, progress, dynamic_ncols=True)  # its iterator
    if control.on_start is not None:
        control.on_start()
    for images, labels in bar:
        if control.max_steps is not None and steps >= control.max_steps:
            break
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        _synchronise(device)
        step_start = time.perf_counter()
        logits, loss = _forward_loss(model, images, labels, options, uses_dnc, device)
        loss_value = loss.item()  # the step's one wait for the device
        if not math.isfinite(loss_value):
            raise RuntimeError(
                f"the training loss is {loss_value} at step {steps} of {description}"
            )
        _optimise(model, loss, optimizer, options)
        if control.after_step is not None:
            control.after_step()
        _synchronise(device)
        compute += time.perf_counter() - step_start
        valid = labels != options.ignore_index
        labelled = valid.sum()
        hits = ((logits.argmax(1) == labels) & valid).sum()
        tally += torch.stack([loss.detach().double() * labelled, hits, labelled]).double()
        samples += images.shape[0]
        steps += 1
        checkpoints = control.checkpoints
        if checkpoints is not None and checkpoints.wants_checkpoint(steps):
            checkpoints.save(EpochProgress(0, steps, samples, tally.tolist(), compute))
            if checkpoints.stop:
                stopped = True
                break
        if not bar.disable:  # a progress bar on a terminal: worth one more wait
            loss_sum, correct, counted = tally.tolist()
            rate = samples / (time.perf_counter() - began)
            bar.set_postfix(
                loss=f"{loss_sum / max(1, counted):.3f}",
                acc=f"{correct / max(1, counted):.3f}",
                img_s=f"{rate:.0f}",
            )
    for head in dnc_heads(model):
        head.check_inputs()
    totals = sum_over_processes([*tally.tolist(), samples], device)
    loss_sum, correct, counted, samples = totals
    return EpochStats(
        loss=loss_sum / max(1, counted),
        accuracy=correct / max(1, counted),
        samples=int(samples),
        seconds=time.perf_counter() - began,
        compute_seconds=compute,
        steps=steps,
        lr=optimizer.param_groups[0]["lr"],
        stopped=stopped,
    )


def _forward_loss(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    options: StepOptions,
    uses_dnc: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, loss)`` of a training forward (the DNC heads updated on the way)."""
    criterion = dict(ignore_index=options.ignore_index, label_smoothing=options.label_smoothing)
    context = training_targets(model, labels) if uses_dnc else contextlib.nullcontext()
    with context, autocast(device, options.amp, options.amp_dtype):
        logits, aux = main_and_aux(model(images))
    loss = F.cross_entropy(logits.float(), labels, **criterion)
    if aux is not None and options.aux_weight:
        loss = loss + options.aux_weight * F.cross_entropy(aux.float(), labels, **criterion)
    return logits, loss


def _optimise(
    model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, options: StepOptions
) -> None:
    """Backward and one optimiser (and scheduler) step."""
    optimizer.zero_grad(set_to_none=True)
    scaler = options.scaler
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if options.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if options.scheduler is not None:
        options.scheduler.step()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    num_classes: int,
    device: torch.device,
    amp: bool = False,
    amp_dtype: str = "auto",
    progress: bool = False,
    description: str = "eval",
) -> EvalResult:
    """Top-1, top-5, loss, per-class accuracy and (up to ``CONFUSION_MAX_CLASSES``
    classes) the confusion matrix over ``loader``.

    Under DDP, give every process a disjoint shard of the split: the metrics are summed
    over processes.
    """
    model.eval()
    small = num_classes <= CONFUSION_MAX_CLASSES
    confusion = MulticlassConfusionMatrix(num_classes).to(device) if small else None
    # per class: images, correct, predicted; then top-k hits and the loss
    counts = torch.zeros(3, num_classes, dtype=torch.long, device=device)
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    top_k = min(5, num_classes)
    for images, labels in progress_bar(loader, description, progress):
        images, labels = images.to(device), labels.to(device)
        with autocast(device, amp, amp_dtype):
            logits = model(images)
        logits = logits.float()
        predicted = logits.argmax(1)
        counts[0].index_add_(0, labels, torch.ones_like(labels))
        counts[1].index_add_(0, labels, (predicted == labels).long())
        counts[2].index_add_(0, predicted, torch.ones_like(predicted))
        in_top = (logits.topk(top_k, dim=1).indices == labels.unsqueeze(1)).any(dim=1)
        totals[0] += in_top.sum()
        totals[1] += F.cross_entropy(logits, labels, reduction="sum").double()
        if confusion is not None:
            confusion.update(predicted, labels)
    if is_distributed():
        torch.distributed.all_reduce(counts)
        torch.distributed.all_reduce(totals)
    counts, (top_hits, loss_sum) = counts.cpu(), totals.tolist()
    samples = int(counts[0].sum())
    return EvalResult(
        top1=float(counts[1].sum()) / max(1, samples),
        top5=top_hits / samples if samples else float("nan"),
        loss=loss_sum / max(1, samples),
        per_class=(counts[1].double() / counts[0].double()).float(),
        confusion=None if confusion is None else confusion.compute().cpu(),
        samples=samples,
        predicted=counts[2],
        true=counts[0],
    )
