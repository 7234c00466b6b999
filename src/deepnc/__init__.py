"""deepnc: Deep Nearest Centroids (Wang et al., ICLR 2023) for PyTorch."""

from deepnc._version import __version__ as __version__
from deepnc.convert import convert, find_classifier
from deepnc.head import DNCHead
from deepnc.memory import ClassMemory
from deepnc.sinkhorn import sinkhorn
from deepnc.subcentroids import BankDiagnostics, SubCentroidBank
from deepnc.targets import dnc_heads, seed_heads, training_targets
from deepnc.warm_start import WarmStartReport, warm_start

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
