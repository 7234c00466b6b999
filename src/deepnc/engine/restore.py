"""Rebuild a trained model from a checkpoint, and check data against it.

>>> # model, checkpoint = load_trained_model("runs/fmnist/checkpoint.safetensors")
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from deepnc.data import DatasetSplits, load_dataset
from deepnc.data.classes import match_class_names
from deepnc.engine.build import build_model
from deepnc.engine.checkpoint import Checkpoint
from deepnc.engine.config import load_config

__all__ = ["check_dataset_matches", "load_checkpoint_dataset", "load_trained_model"]


def load_trained_model(
    path: str | Path | Checkpoint, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Checkpoint]:
    """``(model in eval mode, its checkpoint)`` from a checkpoint, its file or run folder."""
    checkpoint = path if isinstance(path, Checkpoint) else Checkpoint.load(path)
    # The checkpoint holds every weight: building with pretrained=True would only fetch
    # (or download) weights to overwrite them.
    config = load_config(None, {**checkpoint.config, "pretrained": False})
    model = build_model(config, checkpoint.dataset)
    model.load_state_dict(checkpoint.model)
    return model.to(device).eval(), checkpoint


def load_checkpoint_dataset(
    checkpoint: Checkpoint, *, dataset: str | None = None, data_root: str | None = None
) -> DatasetSplits:
    """The dataset a checkpoint was trained on (or ``dataset``), checked against it.

    Both splits use the evaluation transforms; the train split is the very subset the
    model was trained on (same ``train_subset`` and seed), so its indices are stable. For
    a model whose classes were edited since (``deepnc add-classes``, ``remove-classes``),
    the data is relabelled to the model's classes by name, and items of classes the model
    no longer has are left out (a warning names them).
    """
    config = checkpoint.config
    same = dataset is None or dataset == config["dataset"]
    saved_root = config["data_root"]
    if data_root is None and same and saved_root is not None and not Path(saved_root).exists():
        raise FileNotFoundError(
            f"this needs the data the checkpoint was trained on ({config['dataset']}), saved "
            f"at {saved_root!r}, which does not exist here (from {Path.cwd()}): give "
            "--data-root WHERE_IT_IS_NOW"
        )
    data = load_dataset(
        dataset or config["dataset"],
        root=data_root if data_root is not None else config["data_root"],
        image_size=checkpoint.dataset["image_size"],
        augment=False,
        train_subset=config["train_subset"] if same else None,
        test_subset=config.get("test_subset") if same else None,
        seed=config["seed"],
        **(config.get("dataset_options", {}) if same else {}),
    )
    names = checkpoint.class_names
    edited = data.task == "classification" and data.class_names != names
    if edited and set(data.class_names) & set(names):  # else: another set of the same shape
        data, left_out = match_class_names(data, names)
        if left_out:
            warnings.warn(
                f"the model no longer has the classes {left_out} of {data.name}: their "
                "images are left out",
                stacklevel=2,
            )
    check_dataset_matches(checkpoint, data)
    return data


def check_dataset_matches(checkpoint: Checkpoint, data: DatasetSplits) -> None:
    """Raise ``ValueError`` when ``data`` cannot be what the checkpoint's model was trained on."""
    trained = checkpoint.dataset
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
