"""Checkpoints: one safetensors file, tensors plus JSON state, written atomically.

The tensors are the model's state dict (sub-centroids and memories included: they are
buffers) under ``model.``, and the optimiser's per-parameter state under ``optimizer.``.
Everything else (config, dataset facts, epoch, scheduler and scaler state, the
optimiser's hyper-parameters) is JSON in the file's metadata under ``"deepnc"``, and
also in a ``.json`` file beside it for people to read. Loading runs no code (no
pickle), so a checkpoint from anywhere is safe to open.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over the old one: a crash leaves either the old or the new file, never half.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

__all__ = [
    "load_checkpoint",
    "optimizer_state_from_tensors",
    "optimizer_state_to_tensors",
    "save_checkpoint",
]

FORMAT = "deepnc-checkpoint/1"


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
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
