"""deepnc: Deep Nearest Centroids (Wang et al., ICLR 2023) for PyTorch."""

from deepnc._version import __version__ as __version__
from deepnc.nn import (
    BankDiagnostics,
    ClassMemory,
    DNCHead,
    SubCentroidBank,
    WarmStartReport,
    convert,
    dnc_heads,
    find_classifier,
    seed_heads,
    sinkhorn,
    training_targets,
    warm_start,
)
from deepnc.utils.moved import install_moved_paths

install_moved_paths()

__all__ = [
    "BankDiagnostics",
    "ClassMemory",
    "DNCHead",
    "SubCentroidBank",
    "WarmStartReport",
    "convert",
    "dnc_heads",
    "find_classifier",
    "seed_heads",
    "sinkhorn",
    "training_targets",
    "warm_start",
]
