"""deepnc: Deep Nearest Centroids (Wang et al., ICLR 2023) for PyTorch.

The method's public names (``deepnc.DNCHead``, ``deepnc.convert``, ...) are those of
:mod:`deepnc.nn`, loaded on first use so that ``deepnc --help`` does not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from deepnc._version import __version__ as __version__
from deepnc.utils.moved import install_moved_paths

if TYPE_CHECKING:
    from deepnc.nn import (
        BankDiagnostics,
        ClassMemory,
        DNCHead,
        ShardedClassifier,
        ShardedDNCHead,
        SubCentroidBank,
        WarmStartReport,
        convert,
        dnc_heads,
        exclude_shards_from_ddp,
        find_classifier,
        learn_projection,
        seed_heads,
        sinkhorn,
        training_targets,
        warm_start,
    )

__all__ = [
    "BankDiagnostics",
    "ClassMemory",
    "DNCHead",
    "ShardedClassifier",
    "ShardedDNCHead",
    "SubCentroidBank",
    "WarmStartReport",
    "convert",
    "dnc_heads",
    "exclude_shards_from_ddp",
    "find_classifier",
    "learn_projection",
    "seed_heads",
    "sinkhorn",
    "training_targets",
    "warm_start",
]

install_moved_paths()


def __getattr__(name: str):
    """The public names, and the subpackages (``deepnc.engine``...), loaded on first use."""
    if name in __all__:
        value = getattr(importlib.import_module("deepnc.nn"), name)
        globals()[name] = value  # later reads skip this function
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"deepnc.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"deepnc.{name}":  # the module exists but needs an extra
                raise
    raise AttributeError(f"module 'deepnc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
