"""Rebuild a trained model from a checkpoint, and check data against it.

>>> # model, state = load_trained_model("runs/fmnist/checkpoint.safetensors")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepnc.config import load_config
from deepnc.data import DatasetSplits, load_dataset
from deepnc.engine.checkpoint import load_checkpoint
from deepnc.engine.trainer import CHECKPOINT_NAME, build_model

__all__ = [
    "check_dataset_matches",
    "load_checkpoint_dataset",
    "load_trained_model",
    "resolve_checkpoint",
]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, given the file itself or its run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def load_trained_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode, checkpoint state)`` from a checkpoint file or run folder."""
    tensors, state = load_checkpoint(resolve_checkpoint(path))
    # The checkpoint holds every weight: building with pretrained=True would only fetch
    # (or download) weights to overwrite them.
    config = load_config(None, {**state["config"], "pretrained": False})
    model = build_model(config, state["dataset"])
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights)
    return model.to(device).eval(), state


def load_checkpoint_dataset(
    state: dict[str, Any], *, dataset: str | None = None, data_root: str | None = None
) -> DatasetSplits:
    """The dataset a checkpoint was trained on (or ``dataset``), checked against it.

    Both splits use the evaluation transforms; the train split is the very subset the
    model was trained on (same ``train_subset`` and seed), so its indices are stable.
    """
    config = state["config"]
    same = dataset is None or dataset == config["dataset"]
    data = load_dataset(
        dataset or config["dataset"],
        root=data_root if data_root is not None else config["data_root"],
        image_size=state["dataset"]["image_size"],
        augment=False,
        train_subset=config["train_subset"] if same else None,
        test_subset=config.get("test_subset") if same else None,
        seed=config["seed"],
        **(config.get("dataset_options", {}) if same else {}),
    )
    check_dataset_matches(state, data)
    return data


def check_dataset_matches(state: dict[str, Any], data: DatasetSplits) -> None:
    """Raise ``ValueError`` when ``data`` cannot be what the checkpoint's model was trained on."""
    trained = state["dataset"]
    problems = [
        f"{key}: checkpoint {trained[key]!r}, dataset {value!r}"
        for key, value in (
            ("task", data.task),
            ("num_classes", data.num_classes),
            ("in_channels", data.in_channels),
            ("image_size", data.image_size),
        )
        if trained.get(key, "classification" if key == "task" else None) != value
    ]
    if problems:
        raise ValueError(
            f"the dataset {data.name!r} does not match the checkpoint (trained on "
            f"{trained['name']!r}): " + "; ".join(problems)
        )
