"""Checkpoints: one safetensors file, tensors plus JSON state, written atomically.

:class:`Checkpoint` is what every reader and writer of deepnc uses: the model's state
dict, the run's config, the facts of its dataset (class names included), and, as the
case may be, the state to resume training from (:class:`TrainingState`) and the
exemplar index of a snapped model.

On disk the tensors are the model's state dict (sub-centroids and memories included:
they are buffers) under ``model.``, the optimiser's per-parameter state under
``optimizer.`` and, for a checkpoint taken inside an epoch, the generators' states under
``rng.``. Everything else (config, dataset facts, epoch, scheduler and scaler
state, the optimiser's hyper-parameters, exemplars) is JSON in the file's metadata under
``"deepnc"``, and also in a ``.json`` file beside it for people to read. Loading runs no
code (no pickle), so a checkpoint from anywhere is safe to open.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over the old one: a crash leaves either the old or the new file, never half.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from deepnc._version import __version__

__all__ = [
    "CHECKPOINT_NAME",
    "Checkpoint",
    "TrainingState",
    "load_checkpoint",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT = "deepnc-checkpoint/1"
CHECKPOINT_NAME = "checkpoint.safetensors"  # the checkpoint of a run folder
MODEL_PREFIX, OPTIMIZER_PREFIX = "model.", "optimizer."  # tensor name prefixes in the file
RNG_PREFIX = "rng."  # generator states of a mid-epoch checkpoint


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + name: tensor for name, tensor in tensors.items()}


def _under(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, named without it."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, given the file itself or its run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


@dataclass
class TrainingState:
    """What resuming a run needs beyond the model: the optimiser, scheduler and scaler.

    Attributes:
        optimizer_tensors: the optimiser's per-parameter tensors (``<index>.<name>``).
        optimizer: its JSON part (``param_groups`` and non-tensor per-parameter values).
        scheduler: ``scheduler.state_dict()``.
        scaler: ``GradScaler.state_dict()``, or ``None`` without one.
        progress: where a checkpoint taken inside an epoch stands (the epoch, the steps
            done in it, their running figures: see ``deepnc.engine.run_checkpoints``);
            ``None`` at an epoch's end.
        rng: the random generators' states of every process at that point (uint8
            tensors, ``cpu.<rank>`` and ``cuda.<rank>``), for a mid-epoch resume.
    """

    optimizer_tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def capture(
        cls, optimizer, scheduler, scaler=None, *, progress=None, rng=None
    ) -> TrainingState:
        tensors, json_state = optimizer_state_to_tensors(optimizer)
        return cls(
            optimizer_tensors=_under(OPTIMIZER_PREFIX, tensors),
            optimizer=json_state,
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict() if scaler is not None else None,
            progress=progress,
            rng=dict(rng or {}),
        )

    def restore(self, optimizer, scheduler, scaler=None) -> None:
        """Load this state into a freshly built optimiser, scheduler and scaler."""
        tensors = _prefixed(OPTIMIZER_PREFIX, self.optimizer_tensors)
        optimizer.load_state_dict(optimizer_state_from_tensors(tensors, self.optimizer))
        scheduler.load_state_dict(self.scheduler)
        if scaler is not None and self.scaler:
            scaler.load_state_dict(self.scaler)


@dataclass
class Checkpoint:
    """A trained (or fitted, or snapped) model with everything needed to use it again.

    Attributes:
        model: the model's state dict (``model.state_dict()``, CPU tensors).
        config: the run's config as a dict (``TrainConfig.to_dict()``).
        dataset: the facts of its dataset (``DatasetSplits.describe()``): ``name``,
            ``task``, ``num_classes``, ``class_names``, ``in_channels``, ``image_size``,
            ``mean``, ``std``, ``ignore_index``...
        epoch: training epochs done.
        training: the state to resume training from; ``None`` in a checkpoint made to be
            used, not resumed (snapped, exported, fitted).
        exemplars: a snapped model's exemplar index (``SnapResult.to_json()`` plus where
            the images come from), else ``None``.
        extra: any other JSON state (for example ``snap_top1``), kept as it is.
        torch_version, deepnc_version: what wrote it.
    """

    model: dict[str, torch.Tensor]
    config: dict[str, Any]
    dataset: dict[str, Any]
    epoch: int = 0
    training: TrainingState | None = None
    exemplars: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    torch_version: str = torch.__version__
    deepnc_version: str | None = None

    @property
    def task(self) -> str:
        return self.dataset.get("task", "classification")

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.get("class_names") or map(str, range(self.num_classes)))

    @property
    def num_classes(self) -> int:
        return int(self.dataset["num_classes"])

    @property
    def snapped(self) -> bool:
        """Whether every sub-centroid is the feature of a real training image."""
        return self.exemplars is not None

    def for_use(self, **changes) -> Checkpoint:
        """This checkpoint without its training state (what snapping or export writes)."""
        return dataclasses.replace(self, training=None, **changes)

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (a file, or a run folder) and return the file."""
        path = resolve_checkpoint(path)
        tensors = _prefixed(MODEL_PREFIX, self.model)
        state = {
            "epoch": self.epoch,
            "config": self.config,
            "dataset": self.dataset,
            "torch_version": self.torch_version,
            "deepnc_version": __version__,
            **self.extra,
        }
        if self.training is not None:
            tensors |= _prefixed(OPTIMIZER_PREFIX, self.training.optimizer_tensors)
            tensors |= _prefixed(RNG_PREFIX, self.training.rng)
            state |= {
                "optimizer": self.training.optimizer,
                "scheduler": self.training.scheduler,
                "scaler": self.training.scaler,
                "progress": self.training.progress,
            }
        if self.exemplars is not None:
            state |= {"snapped": True, "exemplars": self.exemplars}
        save_checkpoint(path, tensors, state)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read a checkpoint file or run folder, on CPU; checkpoints of deepnc 0.1 load too,
        and so do folders written by :func:`~deepnc.engine.pretrained.save_pretrained`.

        Raises:
            FileNotFoundError: no checkpoint there.
            ValueError: the file is not a deepnc checkpoint.
        """
        from deepnc.engine import pretrained  # it builds on this module

        path = resolve_checkpoint(path)
        folder = path.parent  # RUN/checkpoint.safetensors of a folder that has none
        if path.name == CHECKPOINT_NAME and not path.exists():
            if pretrained.is_pretrained_folder(folder):
                return pretrained.load_pretrained(folder)
        tensors, state = load_checkpoint(path)
        state = dict(state)
        for key in ("format", "snapped"):
            state.pop(key, None)
        training = None
        if "optimizer" in state:
            training = TrainingState(
                optimizer_tensors=_under(OPTIMIZER_PREFIX, tensors),
                optimizer=state.pop("optimizer"),
                scheduler=state.pop("scheduler"),
                scaler=state.pop("scaler", None),
                progress=state.pop("progress", None),
                rng=_under(RNG_PREFIX, tensors),
            )
        if "config" not in state or "dataset" not in state:
            raise ValueError(f"{path} is a deepnc file without a model's config and dataset")
        return cls(
            model=_under(MODEL_PREFIX, tensors),
            config=state.pop("config"),
            dataset=state.pop("dataset"),
            epoch=state.pop("epoch", 0),
            training=training,
            exemplars=state.pop("exemplars", None),
            torch_version=state.pop("torch_version", "unknown"),
            deepnc_version=state.pop("deepnc_version", None),
            extra=state,
        )


def save_checkpoint(
    path: str | Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]
) -> None:
    """Atomically write ``tensors`` and the JSON-able ``state`` to ``path`` (and ``path.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, **state}
    metadata = {"deepnc": json.dumps(state)}
    # safetensors refuses views that share storage; a contiguous copy is cheap at this size.
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    _atomic_write(
        path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2))
    )


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file renamed over ``path``: a failure (a full disk, a
    read-only folder) leaves the previous file as it was and says so, naming the path."""
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _write_error(path, error) from error
    os.close(handle)
    try:
        write(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(path, error) from error
        raise


def _write_error(path: Path, error: OSError) -> OSError:
    cause = error.strerror or str(error)
    kept = "the previous one is intact" if path.exists() else "there was none before"
    return OSError(error.errno, f"cannot write {path}: {cause} ({kept})")


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, state)`` of a checkpoint written by :func:`save_checkpoint`, on CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a deepnc checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:
        raise ValueError(f"{path} is not a safetensors file: {error}") from error
    if "deepnc" not in metadata:
        raise ValueError(
            f"{path} is a safetensors file but not a deepnc checkpoint (no 'deepnc' metadata)"
        )
    state = json.loads(metadata["deepnc"])
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} has format {state.get('format')!r}; this deepnc reads {FORMAT!r}")
    return load_file(str(path)), state


def optimizer_state_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optimizer.<param>.<name>``) and JSON."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_from_tensors(
    tensors: dict[str, torch.Tensor], json_state: dict[str, Any]
) -> dict:
    """Inverse of :func:`optimizer_state_to_tensors`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            index, name = key[len("optimizer.") :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for key, value in json_state["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": json_state["param_groups"]}
