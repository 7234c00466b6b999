"""One training configuration: defaults here, a YAML file over them, command-line overrides last.

>>> config = load_config(None, ["--epochs", "3", "--head_options.tau", "0.05"])
>>> config.epochs, config.head_options
(3, {'tau': 0.05})
>>> load_config(None, ["--epoch", "3"])
Traceback (most recent call last):
...
ValueError: unknown config key 'epoch'. Did you mean 'epochs'?
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deepnc.engine.recipes import find_config
from deepnc.utils.suggest import did_you_mean

__all__ = [
    "DNC_ONLY_KEYS",
    "INCIDENTAL_KEYS",
    "REFRESH_POINTS",
    "SEGMENTATION_MODEL_OPTIONS",
    "SPLITS",
    "TASKS",
    "TrainConfig",
    "load_config",
    "parse_overrides",
    "save_config",
]

TASKS = ("classification", "segmentation")
# model_options of a segmentation model (keywords of create_segmentation_model)
SEGMENTATION_MODEL_OPTIONS = ("aux", "decoder_channels", "atrous_rates")

# Keys that say where and how visibly a run executes, not what it computes.
# torch.compile is one of them: like the device, it may change the last bits of float
# sums, not the recipe.
INCIDENTAL_KEYS = frozenset(
    {
        "out_dir",
        "progress",
        "workers",
        "threads",
        "device",
        "data_root",
        "download",
        "compile",
        "compile_mode",
        "checkpoint_every_steps",
        "checkpoint_every_minutes",
        "keep_checkpoints",
        "verify_images",
    }
)
SPLITS = ("test", "val")  # what evaluate_on may name
# Keys that only a DNC head reads, with their defaults (a softmax run must leave them be)
DNC_ONLY_KEYS = {
    "head_options": {},
    "head_init": "first-batch",
    "subcentroid_half_life": None,
    "refresh": "never",
}
REFRESH_POINTS = ("never", "epoch", "eval", "end")  # when the sub-centroids are refitted
# Keys that take a number >= 0 (ints are stored as floats)
NON_NEGATIVE_FLOATS = (
    "lr",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "gamma",
    "label_smoothing",
    "aux_weight",
)


@dataclass
class TrainConfig:
    """Everything that decides a training run. Field names are the YAML and CLI keys."""

    # What to learn
    task: str = "classification"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    download: bool = False
    dataset_options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    validation_size: int | None = None
    evaluate_on: str = "test"
    augment: bool = True
    verify_images: bool = True  # decode every image file once before training
    skip_unreadable: bool = False  # leave undecodable files out (named) instead of refusing
    # The network
    model: str = "resnet20"
    head: str = "dnc"
    pretrained: bool = False
    head_options: dict[str, Any] = field(default_factory=dict)
    head_init: str = "first-batch"
    warm_start_samples: int = 500
    subcentroid_half_life: float | None = None
    refresh: str = "never"  # refit the sub-centroids on eval-mode features (REFRESH_POINTS)
    precise_bn: int | None = 1000  # training images for the BatchNorm statistics, or null
    model_options: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    aux_weight: float = 0.4
    inference: dict[str, Any] = field(default_factory=dict)  # segmentation evaluation
    # Optimisation
    epochs: int = 10
    iterations: int | None = None  # optimisation steps in all, instead of whole epochs
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    amp: bool = False
    amp_dtype: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    eval_every: int = 1
    # The run
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    workers: int = 0
    out_dir: str = "runs/default"
    progress: bool = True
    threads: int | None = None
    # Checkpoints inside epochs (beside every epoch's), the newest few kept
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = 10.0
    keep_checkpoints: int = 3

    def validate(self) -> TrainConfig:
        """Check every value; raise ``ValueError`` naming the key and what is allowed."""
        # The engine's choices, imported here: ``deepnc train --help`` lists the keys
        # without loading torch.
        from deepnc.engine.compile import COMPILE_MODES
        from deepnc.engine.loop import AMP_DTYPES
        from deepnc.engine.optim import OPTIMIZERS, SCHEDULES
        from deepnc.engine.seg_inference import InferenceOptions
        from deepnc.models.registry import HEADS
        from deepnc.nn.warm_start import HEAD_INITS

        _choice("task", self.task, TASKS)
        _choice("head", self.head, HEADS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp_dtype", self.amp_dtype, AMP_DTYPES)
        _choice("compile_mode", self.compile_mode, COMPILE_MODES)
        _choice("evaluate_on", self.evaluate_on, SPLITS)
        _choice("head_init", self.head_init, HEAD_INITS)
        _choice("refresh", self.refresh, REFRESH_POINTS)
        minutes = self.checkpoint_every_minutes
        if minutes is not None and (isinstance(minutes, bool) or not minutes > 0):
            raise ValueError(f"checkpoint_every_minutes must be > 0 or null, got {minutes!r}")
        for key in (
            "validation_size",
            "warm_start_samples",
            "precise_bn",
            "image_size",
            "iterations",
            "checkpoint_every_steps",
            "keep_checkpoints",
        ):
            if getattr(self, key) is not None:
                _positive_int(key, getattr(self, key))
        has_own_val = self.dataset == "fashion-scenes"
        if self.evaluate_on == "val" and self.validation_size is None and not has_own_val:
            raise ValueError(
                "evaluate_on: val needs a validation split: set validation_size (training images "
                "held out, class-balanced)"
            )
        half_life = self.subcentroid_half_life
        if half_life is not None and (
            isinstance(half_life, bool) or not isinstance(half_life, int | float) or half_life <= 0
        ):
            raise ValueError(f"subcentroid_half_life must be > 0 epochs or null, got {half_life!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        for key in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            _positive_int(key, getattr(self, key))
        for key in NON_NEGATIVE_FLOATS:
            value = getattr(self, key)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
        if not 0 < self.lr:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.iterations is None and 0 < self.epochs <= self.warmup_epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be < epochs ({self.epochs})"
            )
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(
                f"milestones are fractions of training in (0, 1), got {self.milestones}"
            )
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.head == "linear":
            for key, default in DNC_ONLY_KEYS.items():
                if getattr(self, key) != default:
                    raise ValueError(f"{key} apply to head: dnc only; remove it for head: linear")
        allowed = [
            p
            for p in inspect.signature(_head_class()).parameters
            if p not in ("in_features", "num_classes")
        ]
        for key in self.head_options:
            if key not in allowed:
                raise ValueError(
                    f"unknown head option {key!r}; allowed: {allowed}."
                    + did_you_mean(key, allowed, cutoff=0.5)
                )
        allowed = list(SEGMENTATION_MODEL_OPTIONS) if self.task == "segmentation" else []
        for key in self.model_options:
            if key not in allowed:
                raise ValueError(
                    f"unknown model option {key!r} for task {self.task}; allowed: {allowed}."
                    + did_you_mean(key, allowed, cutoff=0.5)
                )
        if self.inference and self.task != "segmentation":
            raise ValueError("inference options apply to task: segmentation only")
        InferenceOptions.from_config(self.inference)  # raises on a bad value
        for key in ("dataset_options", "model_options", "head_options", "inference"):
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"{key} must be a mapping, got {getattr(self, key)!r}")
        if self.init_from is not None and self.task != "segmentation":
            raise ValueError(
                "init_from loads a classification backbone into a segmentation model: "
                "use it with task: segmentation"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def total_epochs(self, steps_per_epoch: int) -> int:
        """Epochs the run spans: ``epochs``, or enough for ``iterations`` steps (the last
        one cut short)."""
        if self.iterations is None:
            return self.epochs
        return -(-self.iterations // steps_per_epoch)

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimisation steps of the whole run: ``iterations``, or every step of ``epochs``."""
        return self.iterations or self.epochs * steps_per_epoch


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        given = " (was --" + key + " given without a value?)" if value is True else ""
        raise ValueError(f"{key} must be a positive integer, got {value!r}{given}")


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_OPTION_SECTIONS = ("head_options", "model_options", "dataset_options", "inference")


def parse_overrides(arguments: list[str]) -> dict[str, Any]:
    """``["--lr", "0.05", "--amp", "--head_options.tau=0.2"]`` -> ``{"lr": 0.05, "amp": True, ..}``.

    Values are read as YAML scalars (``null``, ``true``, ``3``, ``[0.5, 0.75]``); a flag
    with no value means ``true``; dashes in keys become underscores.
    """
    overrides: dict[str, Any] = {}
    index = 0
    while index < len(arguments):
        token = arguments[index]
        if not token.startswith("--"):
            raise ValueError(f"expected --key value, got {token!r}")
        key, _, value = token[2:].partition("=")
        if not _:
            following = arguments[index + 1] if index + 1 < len(arguments) else None
            if following is None or following.startswith("--"):
                value = "true"
            else:
                value, index = following, index + 1
        overrides[key.replace("-", "_")] = yaml.safe_load(value)
        index += 1
    return overrides


def load_config(
    path: str | Path | None, overrides: list[str] | dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any: a file, or the name of a shipped
    recipe, see :func:`find_config`), then ``overrides``; validated.

    Raises:
        ValueError: a key that does not exist (naming the nearest valid key) or a bad value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = find_config(path)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(
                f"{path} must hold a mapping of config keys, got {type(loaded).__name__}"
            )
        values.update(loaded)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    for key, value in (overrides or {}).items():
        if "." in key:
            section, _, option = key.partition(".")
            if section not in _OPTION_SECTIONS:
                raise ValueError(f"only {list(_OPTION_SECTIONS)} take dotted keys, got {key!r}")
            values[section] = {**values.get(section, {}), option: value}
        else:
            values[key] = value
    unknown = [key for key in values if key not in _FIELDS]
    if unknown:
        key = unknown[0]
        if key in inspect.signature(_head_class()).parameters:
            raise ValueError(
                f"{key!r} is an option of the DNC head, not a config key: "
                f"--head_options.{key} VALUE (head_options: {{{key}: VALUE}} in YAML)"
            )
        raise ValueError(f"unknown config key {key!r}." + did_you_mean(key, _FIELDS, cutoff=0.5))
    config = TrainConfig(**values)
    for name in (*NON_NEGATIVE_FLOATS, "subcentroid_half_life"):  # YAML's 1 means 1.0 here
        if isinstance(getattr(config, name), int) and not isinstance(getattr(config, name), bool):
            setattr(config, name, float(getattr(config, name)))
    return config.validate()


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (what the run really used)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _head_class():
    """:class:`~deepnc.DNCHead`, whose keywords are the valid ``head_options`` (imported
    on use: it loads torch)."""
    from deepnc.nn.head import DNCHead

    return DNCHead
