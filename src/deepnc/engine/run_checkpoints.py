"""Checkpoints of a run in progress: inside epochs too, kept in rotation, saved on
preemption, and found again after a crash.

- :class:`RunCheckpoints`: the run folder's ``checkpoint.safetensors`` is always the
  newest; the ones it replaces move to ``checkpoints/`` (``epoch<E>-step<S>``), of which
  the newest ``keep - 1`` stay. A save that fails (a full disk, a read-only folder)
  leaves the previous checkpoint in place and raises an ``OSError`` naming the path and
  the cause. :meth:`RunCheckpoints.newest` returns the newest checkpoint that loads,
  skipping a corrupt or truncated one with a warning.
- :class:`EpochProgress`: where a mid-epoch checkpoint stands (epoch, steps done, their
  running figures); with the generators' states of every process
  (:func:`capture_rng`), a resumed run takes the epoch up at the next batch and ends
  bit for bit where an uninterrupted one ends on the CPU (with workers, the augmentation
  is seeded per item: :mod:`deepnc.data.samplers`).
- :class:`StepCheckpoints`: the training loop's hook. Every ``checkpoint_every_steps``
  steps (counted over the run), every ``checkpoint_every_minutes`` minutes, and when a
  SIGTERM or SIGUSR1 arrives (:class:`PreemptionWatch`: the scheduler's notice before a
  kill), it saves after the current step; on preemption the run then stops with
  :class:`Preempted` (``deepnc train`` exits with status 75, EX_TEMPFAIL, which a
  scheduler can requeue on). Under DDP every process takes part (rank 0 writes, the
  others wait), and the processes agree on time and signals every few steps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from deepnc.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
from deepnc.nn.distributed import all_gather_objects, is_distributed

__all__ = [
    "EXIT_PREEMPTED",
    "EpochProgress",
    "Preempted",
    "PreemptionWatch",
    "RunCheckpoints",
    "StepCheckpoints",
    "capture_rng",
    "restore_rng",
]

log = logging.getLogger("deepnc")

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a temporary failure, to be retried (requeued)
HISTORY = "checkpoints"  # the folder of the checkpoints the newest one replaced
STAGED = ".checkpoint-next.safetensors"  # a checkpoint being written, before it is newest
AGREE_EVERY = 10  # steps between the processes' agreements on the clock and on signals


class Preempted(RuntimeError):
    """The run was asked to stop (SIGTERM / SIGUSR1); its state is saved."""


@dataclass
class EpochProgress:
    """Where a run stands inside an epoch.

    Attributes:
        epoch: the epoch under way (0-based).
        step: optimisation steps done in it.
        samples: images trained on in it (this process).
        tally: ``[loss x labelled, correct, labelled]`` summed over those steps.
        compute_seconds: their compute time.
    """

    epoch: int
    step: int
    samples: int
    tally: list[float]
    compute_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochProgress:
        return cls(**values)


def capture_rng() -> dict[str, torch.Tensor]:
    """Every process's generator states (``cpu.<rank>``, ``cuda.<rank>``); a collective
    call under DDP."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    gathered = all_gather_objects({kind: state.cpu() for kind, state in states.items()})
    return {
        f"{kind}.{rank}": state for rank, own in enumerate(gathered) for kind, state in own.items()
    }


def restore_rng(states: dict[str, torch.Tensor], rank: int) -> None:
    """Set this process's generators to the states :func:`capture_rng` recorded."""
    torch.set_rng_state(states[f"cpu.{rank}"])
    if f"cuda.{rank}" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states[f"cuda.{rank}"])


class RunCheckpoints:
    """The checkpoints of one run folder (see the module docstring).

    Args:
        folder: the run folder.
        keep: checkpoints kept in all, the newest included (>= 1).
    """

    def __init__(self, folder: str | Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        self.folder, self.keep = Path(folder), keep
        self.history = self.folder / HISTORY

    @property
    def current(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    def save(self, checkpoint: Checkpoint) -> Path:
        """Write ``checkpoint`` as the newest; the one it replaces goes to the history.

        Raises:
            OSError: the write failed; the previous newest checkpoint is untouched.
        """
        staged = checkpoint.save(self.folder / STAGED)  # a failure stops here
        if self.current.exists():
            self.history.mkdir(exist_ok=True)
            name = _name_of(self.current)
            for suffix in (".safetensors", ".json"):
                source = self.current.with_suffix(suffix)
                if source.exists():
                    os.replace(source, self.history / f"{name}{suffix}")
        os.replace(staged.with_suffix(".json"), self.current.with_suffix(".json"))
        os.replace(staged, self.current)
        self._prune()
        return self.current

    def candidates(self) -> list[Path]:
        """The checkpoint files, newest first."""
        older = sorted(self.history.glob("*.safetensors"), reverse=True)
        return ([self.current] if self.current.exists() else []) + older

    def newest(self) -> Checkpoint | None:
        """The newest checkpoint that loads; a corrupt one is skipped with a warning."""
        for path in self.candidates():
            try:
                return Checkpoint.load(path)
            except (ValueError, OSError) as error:
                warnings.warn(
                    f"skipping the checkpoint {path}, which cannot be read ({error}); "
                    "trying the one before it",
                    stacklevel=2,
                )
        return None

    def _prune(self) -> None:
        for path in sorted(self.history.glob("*.safetensors"), reverse=True)[self.keep - 1 :]:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)


def _name_of(path: Path) -> str:
    """``epoch<E>-step<S>`` of a checkpoint, from its readable JSON beside it."""
    try:
        state = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return f"unknown-{time.time_ns()}"
    step = (state.get("progress") or {}).get("step", 0)
    return f"epoch{int(state.get('epoch', 0)):05d}-step{int(step):08d}"


class PreemptionWatch:
    """Within the block, SIGTERM and SIGUSR1 set :attr:`requested` instead of killing the
    process (the run saves and stops after the current step). Only the main thread can
    install handlers; elsewhere the watch stays off."""

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
    )

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, number, frame) -> None:
        self.requested = True
        log.warning(
            "received %s: saving after this step, then stopping", signal.Signals(number).name
        )

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


class StepCheckpoints:
    """The training loop's hook: when to save inside an epoch, and whether to stop.

    Args:
        save: writes a checkpoint of the given progress (every process calls it).
        steps_per_epoch: to count steps over the run.
        every_steps: save every this many steps of the run (``None``: never).
        every_minutes: save when this many minutes have passed since the last save.
        preemption: the run's :class:`PreemptionWatch`.
        device: where the processes' agreement is reduced (NCCL reduces CUDA tensors
            only: the run's device).
    """

    def __init__(
        self,
        save: Callable[[EpochProgress], None],
        steps_per_epoch: int,
        *,
        every_steps: int | None = None,
        every_minutes: float | None = None,
        preemption: PreemptionWatch | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self._save, self.steps_per_epoch = save, steps_per_epoch
        self.every_steps, self.every_minutes = every_steps, every_minutes
        self.preemption = preemption or PreemptionWatch()
        self.epoch, self.stop = 0, False
        self._last_save = time.monotonic()
        self._distributed, self.device = is_distributed(), torch.device(device)

    def wants_checkpoint(self, step: int) -> bool:
        """After ``step`` steps of the current epoch: save now? (Host-side; under DDP a
        small collective every ``AGREE_EVERY`` steps of the run and at each epoch's last
        step, so that a short epoch cannot hide a signal.)"""
        run_step = self.epoch * self.steps_per_epoch + step
        due = bool(self.every_steps) and run_step % self.every_steps == 0
        late = self.every_minutes is not None and (
            time.monotonic() - self._last_save >= 60 * self.every_minutes
        )
        asked = self.preemption.requested
        last_of_epoch = step >= self.steps_per_epoch  # the epoch's own checkpoint follows
        if self._distributed:  # every process takes the same steps: they agree together
            if run_step % AGREE_EVERY and not last_of_epoch:
                late = asked = False
            else:
                late, asked = self._anywhere(late, asked)
        self.stop = asked
        return asked or ((due or late) and not last_of_epoch)

    def stop_requested(self) -> bool:
        """Was any process asked to stop? Between epochs (a collective under DDP, so also
        a barrier: a signal that came during the evaluation reached one process only)."""
        (asked,) = self._anywhere(self.preemption.requested)
        return asked

    def _anywhere(self, *flags: bool) -> list[bool]:
        """Each flag, true if it is true on any process."""
        if not self._distributed:
            return list(flags)
        values = torch.tensor([float(flag) for flag in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(value) for value in values.tolist()]

    def save(self, progress: EpochProgress) -> None:
        progress.epoch = self.epoch
        self._save(progress)
        self._last_save = time.monotonic()
