"""deepnc: Deep Nearest Centroids (Wang et al., ICLR 2023) for PyTorch."""

from deepnc.convert import convert, find_classifier
from deepnc.head import DNCHead
from deepnc.memory import ClassMemory
from deepnc.sinkhorn import sinkhorn
from deepnc.subcentroids import BankDiagnostics, SubCentroidBank
from deepnc.targets import dnc_heads, seed_heads, training_targets

__all__ = [
    "BankDiagnostics",
    "ClassMemory",
    "DNCHead",
    "SubCentroidBank",
    "convert",
    "dnc_heads",
    "find_classifier",
    "seed_heads",
    "sinkhorn",
    "training_targets",
]

__version__ = "0.1.0"
