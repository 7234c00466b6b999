"""The method, importing torch and nothing else: the DNC head, its bank of sub-centroids
and their update, Sinkhorn, k-means++, the class memory, momentum schedules, the defaults,
the hooks that feed targets to heads inside a model, ``convert``, the warm start, the
learnt projection of a frozen backbone's features, and the head sharded across processes
for very many classes.

The sub-centroid update reads top to bottom in three files: :mod:`deepnc.nn.head`
(``DNCHead.forward`` -> ``_update_from_batch``), :mod:`deepnc.nn.bank`
(``SubCentroidBank.update`` -> ``step``) and :mod:`deepnc.nn.update` (its tensor kernels).
"""

from deepnc.nn.bank import BankDiagnostics, SubCentroidBank
from deepnc.nn.convert import convert, find_classifier
from deepnc.nn.head import DNCHead
from deepnc.nn.hooks import dnc_heads, seed_heads, training_targets
from deepnc.nn.memory import ClassMemory
from deepnc.nn.projection import learn_projection
from deepnc.nn.sharded_head import ShardedClassifier, ShardedDNCHead, exclude_shards_from_ddp
from deepnc.nn.sinkhorn import sinkhorn
from deepnc.nn.warm_start import WarmStartReport, warm_start

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
