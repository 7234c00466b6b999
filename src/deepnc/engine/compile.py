"""``compile: true``: the training forward under ``torch.compile``, one graph once seeded.

A DNC head seeds each class from its first real features, a host-side step
(k-means++ on a data-dependent set of samples) that ``torch.compile`` runs eagerly,
outside the graph. While some class is unseeded the compiled forward is therefore
split at the head; once every head is seeded, :class:`SeedingWatch` drops the graphs
traced so far and the next step traces the steady state as one graph (backbone, head
and sub-centroid update), with no host sync inside. To compile the steady state from
the first step, seed the heads first (:func:`deepnc.seed_heads`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from deepnc.nn.hooks import dnc_heads

__all__ = ["COMPILE_MODES", "SeedingWatch", "compile_model"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

log = logging.getLogger("deepnc")


def compile_model(model: nn.Module, mode: str = "default") -> nn.Module:
    """``torch.compile(model)`` with ``mode`` one of :data:`COMPILE_MODES`
    (``"reduce-overhead"`` replays CUDA graphs on a GPU)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile_mode must be one of {list(COMPILE_MODES)}, got {mode!r}")
    return torch.compile(model, mode=None if mode == "default" else mode)


class SeedingWatch:
    """Called after every training step; recompiles once when the last class is seeded.

    Reading :attr:`~deepnc.SubCentroidBank.all_seeded` is a host-side flag: the watch
    never waits on the device.
    """

    def __init__(self, model: nn.Module) -> None:
        self.heads = dnc_heads(model)
        self.pending = not self._seeded()

    def _seeded(self) -> bool:
        return all(head.bank.all_seeded for head in self.heads)

    def __call__(self) -> None:
        if self.pending and self._seeded():
            self.pending = False
            log.info("every class is seeded: recompiling the training step as one graph")
            torch._dynamo.reset()
