"""A model as a folder in the Hugging Face layout: ``config.json`` (everything deepnc
needs to rebuild it: the run's config, the dataset facts with class names and
preprocessing, exemplars, calibration, versions), ``model.safetensors`` (the state dict,
plain names) and ``README.md`` (a model card generated from the checkpoint). Local
folders only: nothing is uploaded or downloaded. Every command that takes a checkpoint
takes such a folder too.

>>> # save_pretrained("runs/digits", "digits-dnc")
>>> # model, checkpoint = from_pretrained("digits-dnc")
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from deepnc._version import __version__
from deepnc.engine.checkpoint import Checkpoint, resolve_checkpoint
from deepnc.engine.restore import load_trained_model

__all__ = ["from_pretrained", "is_pretrained_folder", "load_pretrained", "save_pretrained"]

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
LAYOUT = "deepnc-pretrained/1"


def is_pretrained_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`save_pretrained`."""
    path = Path(path)
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def save_pretrained(source: str | Path | Checkpoint, folder: str | Path) -> Path:
    """Write a checkpoint (a file, run folder or :class:`Checkpoint`) as a pretrained folder.

    The training state (optimiser, scheduler) is left out. Returns the folder.

    Raises:
        FileExistsError: ``folder`` exists and is not empty.
    """
    checkpoint = source if isinstance(source, Checkpoint) else Checkpoint.load(source)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not empty; choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "layout": LAYOUT,
        "deepnc_version": __version__,
        "torch_version": checkpoint.torch_version,
        "task": checkpoint.task,
        "class_names": checkpoint.class_names,
        "config": checkpoint.config,
        "dataset": checkpoint.dataset,
        "epoch": checkpoint.epoch,
        "exemplars": checkpoint.exemplars,
        "extra": checkpoint.extra,
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in checkpoint.model.items()}
    save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    summary = _run_summary(source)
    (folder / CARD_NAME).write_text(model_card(checkpoint, summary))
    return folder


def load_pretrained(folder: str | Path) -> Checkpoint:
    """The :class:`Checkpoint` a pretrained folder holds (no training state).

    Raises:
        FileNotFoundError: not a pretrained folder.
        ValueError: a ``config.json`` that deepnc did not write.
    """
    folder = Path(folder)
    if not is_pretrained_folder(folder):
        raise FileNotFoundError(f"{folder} holds no {CONFIG_NAME} and {WEIGHTS_NAME}")
    config = json.loads((folder / CONFIG_NAME).read_text())
    if config.get("layout") != LAYOUT:
        raise ValueError(f"{folder / CONFIG_NAME} was not written by deepnc's save_pretrained")
    return Checkpoint(
        model=load_file(str(folder / WEIGHTS_NAME)),
        config=config["config"],
        dataset=config["dataset"],
        epoch=config.get("epoch", 0),
        exemplars=config.get("exemplars"),
        torch_version=config.get("torch_version", "unknown"),
        deepnc_version=config.get("deepnc_version"),
        extra=config.get("extra", {}),
    )


def from_pretrained(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, Checkpoint]:
    """``(model in eval mode, its checkpoint)`` from a pretrained folder."""
    return load_trained_model(load_pretrained(folder), device)


def model_card(checkpoint: Checkpoint, summary: dict | None = None) -> str:
    """A ``README.md`` for the folder: what the model is, its classes, its input, how to
    use it, and its scores where the run recorded them."""
    config, facts = checkpoint.config, checkpoint.dataset
    head = "a DNC head (nearest sub-centroid)" if config.get("head") == "dnc" else "softmax"
    options = config.get("head_options") or {}
    lines = [
        "---",
        "library_name: deepnc",
        f"tags: [deepnc, deep-nearest-centroids, image-{checkpoint.task}]",
        "---",
        "",
        f"# {config.get('model')} with {head}, {config.get('dataset')}",
        "",
        f"A {checkpoint.task} model made with deepnc {__version__} (Deep Nearest Centroids, "
        "ICLR 2023): every class is represented by sub-centroids, means of real training "
        "features, and an image takes the class of its nearest one.",
        "",
        "## Input",
        "",
        f"- images `(B, {facts.get('in_channels')}, {facts.get('image_size')}, "
        f"{facts.get('image_size')})`, float32, normalised as `(pixel / 255 - mean) / std`",
        f"- mean {list(facts.get('mean', ()))}, std {list(facts.get('std', ()))}",
        "",
        f"## Classes ({checkpoint.num_classes})",
        "",
        ", ".join(f"`{name}`" for name in checkpoint.class_names),
        "",
        "## Training",
        "",
        f"- dataset `{config.get('dataset')}`, {checkpoint.epoch} epochs, "
        f"seed {config.get('seed')}",
        f"- head options {json.dumps(options)}" if options else "- head options: defaults",
    ]
    if summary:
        scored = summary.get("evaluated_on", "test")
        scores = {k: v for k, v in summary.items() if k.startswith(f"{scored}_") and v}
        lines += [f"- {key}: {value:.4f}" for key, value in scores.items() if _number(value)]
    if checkpoint.snapped:
        lines.append("- every sub-centroid is a real training image (snapped)")
    if checkpoint.extra.get("calibration"):
        record = checkpoint.extra["calibration"]
        lines.append(f"- calibrated for rejection on {record['images']} {record['split']} images")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "deepnc predict THIS_FOLDER my_images/ --top-k 3",
        "deepnc export THIS_FOLDER --format onnx --check 0",
        "```",
        "",
        "```python",
        "from deepnc.engine.pretrained import from_pretrained",
        "",
        'model, checkpoint = from_pretrained("THIS_FOLDER")',
        "```",
        "",
    ]
    return "\n".join(lines)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _run_summary(source) -> dict | None:
    """The ``summary.json`` beside a checkpoint file of a run folder, if any."""
    if isinstance(source, Checkpoint):
        return None
    path = resolve_checkpoint(source).parent / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None
