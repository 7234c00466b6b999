"""The report's PNG plots (matplotlib, headless). Each takes plain numbers, writes one file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DNC_COLOUR, SOFTMAX_COLOUR = "#1f77b4", "#ff7f0e"


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def paired_bars(
    path: Path,
    labels: Sequence[str],
    dnc: Sequence[tuple[float, float]],
    softmax: Sequence[tuple[float, float]],
    ylabel: str,
    baseline_name: str = "softmax",
) -> None:
    """DNC and the baseline side by side for each label: (mean, std) bars with error bars."""
    figure, axis = plt.subplots(figsize=(max(4.5, 1.6 * len(labels)), 3.4))
    positions = range(len(labels))
    width = 0.38
    for offset, values, name, colour in (
        (-width / 2, dnc, "DNC", DNC_COLOUR),
        (width / 2, softmax, baseline_name, SOFTMAX_COLOUR),
    ):
        axis.bar(
            [p + offset for p in positions],
            [m for m, _ in values],
            width,
            yerr=[s for _, s in values],
            capsize=3,
            label=name,
            color=colour,
        )
    low = min(m - s for m, s in [*dnc, *softmax])
    high = max(m + s for m, s in [*dnc, *softmax])
    margin = max(1.0, 0.15 * (high - low))
    axis.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    axis.set_xticks(list(positions), labels, fontsize=8)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    _save(figure, path)


def ablation_panels(
    path: Path,
    variants: Sequence[str],
    top1: Sequence[tuple[float, float]],
    pairwise: Sequence[float],
    reference: float,
) -> None:
    """Top-1 (mean ± std) and intra-class sub-centroid cosine for each DNC variant."""
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(10, 0.32 * len(variants) + 1.4), sharey=True
    )
    rows = list(range(len(variants)))[::-1]
    left.barh(rows, [m for m, _ in top1], xerr=[s for _, s in top1], color=DNC_COLOUR, capsize=2)
    left.axvline(reference, color="black", lw=0.8, ls="--", label="paper settings")
    low = min(m - s for m, s in top1)
    high = max(m + s for m, s in top1)
    left.set_xlim(max(0.0, low - 2), min(100.0, high + 1))
    left.set_yticks(rows, variants, fontsize=7)
    left.set_xlabel("test top-1 (%)")
    left.legend(fontsize=7)
    values = [0.0 if v != v else v for v in pairwise]  # K = 1: no pairs, drawn as 0
    right.barh(rows, values, color="#2ca02c")
    right.axvline(1.0, color="red", lw=0.8, ls=":", label="collapse (all K equal)")
    right.set_xlim(0, 1.05)
    right.set_xlabel("mean cosine between sub-centroids of a class")
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(axis="x", alpha=0.3)
    _save(figure, path)


def ratio_bars(path: Path, labels: Sequence[str], ratios: Sequence[float], target: float) -> None:
    """DNC / baseline time ratios, with the paper's target as a line."""
    figure, axis = plt.subplots(figsize=(7.5, 0.35 * len(labels) + 1.3))
    rows = list(range(len(labels)))[::-1]
    axis.barh(rows, ratios, color=DNC_COLOUR)
    axis.axvline(1.0, color="black", lw=0.8)
    axis.axvline(target, color="red", lw=0.8, ls="--", label=f"paper: about {target:.2f}")
    axis.set_yticks(rows, labels, fontsize=7)
    axis.set_xlabel("DNC time / softmax (or 1x1 conv) time")
    axis.legend(fontsize=7)
    axis.grid(axis="x", alpha=0.3)
    _save(figure, path)


def lines_by_shots(
    path: Path, shots: Sequence[int], curves: dict[str, Sequence[float]], ylabel: str
) -> None:
    """One line per method: accuracy against the number of examples per new class."""
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    for name, values in curves.items():
        axis.plot(shots, values, marker="o", label=name)
    axis.set_xscale("log")
    axis.set_xticks(list(shots), [str(s) for s in shots])
    axis.set_xlabel("examples per new class")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    _save(figure, path)


def grouped_bars(path: Path, groups: Sequence[str], series: dict[str, Sequence[float]], ylabel):
    """Bars of several series over the same groups (AUROC of each score, near and far)."""
    figure, axis = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / max(1, len(series))
    for number, (name, values) in enumerate(series.items()):
        axis.bar([g + number * width for g in range(len(groups))], values, width, label=name)
    axis.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=7)
    axis.grid(axis="y", alpha=0.3)
    _save(figure, path)
