"""The files of a run folder other than the checkpoint: ``metrics.jsonl`` (one JSON row
per epoch), ``curves.png`` (drawn from ``metrics.jsonl``) and ``summary.json``."""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import torch

from deepnc.data import DatasetSplits
from deepnc.engine.build import count_parameters
from deepnc.engine.config import TrainConfig
from deepnc.engine.evaluation import TEST_METRICS, primary_metric

__all__ = [
    "CurvesHook",
    "append_metrics",
    "epoch_row",
    "log_epoch",
    "read_metrics",
    "read_resumes",
    "record_resume",
    "run_summary",
    "write_metrics",
]

log = logging.getLogger("deepnc")

METRICS_NAME, CURVES_NAME, SUMMARY_NAME = "metrics.jsonl", "curves.png", "summary.json"
RESUMES_NAME = "resumes.jsonl"  # a row per resumption on changed data
WARNING = "warning"  # a row's key for what its evaluation found wrong (summary.json lists it)


def epoch_row(scored: str, task: str, epoch: int, stats) -> dict[str, Any]:
    """The epoch's row of ``metrics.jsonl`` (``stats``: the epoch's
    :class:`~deepnc.engine.loop.EpochStats`), the ``scored`` split's figures ``None`` until
    evaluated."""
    train_accuracy = "train_top1" if task == "classification" else "train_pixel_accuracy"
    return {
        "epoch": epoch + 1,
        "train_loss": stats.loss,
        train_accuracy: stats.accuracy,
        **{f"{scored}_{name}": None for name in TEST_METRICS[task]},
        "lr": stats.lr,
        "epoch_seconds": stats.seconds,
        "step_seconds": stats.step_seconds,
    }


def log_epoch(scored: str, task: str, row: dict, stats, epochs: int) -> None:
    """One line in the log for an epoch's row."""
    primary = primary_metric(task)
    headline = row[f"{scored}_{primary}"]
    tested = f"{scored} {primary} {100 * headline:.2f}%" if headline is not None else ""
    log.info(
        "epoch %d/%d  train loss %.4f accuracy %.2f%%  %s  %.1f s",
        row["epoch"],
        epochs,
        stats.loss,
        100 * stats.accuracy,
        tested,
        stats.seconds,
    )


def read_metrics(out: Path) -> list[dict]:
    """The rows of ``out/metrics.jsonl`` (none if it does not exist)."""
    path = Path(out) / METRICS_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_resume(out: Path, row: dict) -> None:
    """Append ``row`` (what changed when the run resumed) to ``out/resumes.jsonl``."""
    with (Path(out) / RESUMES_NAME).open("a") as stream:
        stream.write(json.dumps(row) + "\n")


def read_resumes(out: Path) -> list[dict]:
    """The rows of ``out/resumes.jsonl`` (none if the run never resumed on other data)."""
    path = Path(out) / RESUMES_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def write_metrics(out: Path, rows: list[dict]) -> None:
    (Path(out) / METRICS_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows))


def append_metrics(out: Path, row: dict) -> None:
    with open(Path(out) / METRICS_NAME, "a") as handle:
        handle.write(json.dumps(row) + "\n")


class CurvesHook:
    """After each epoch, redraw ``curves.png`` from ``metrics.jsonl`` (the file, not the
    loop's memory, so the picture always shows what was recorded)."""

    def __init__(self, out: Path, config: TrainConfig, task: str):
        self.out, self.task = Path(out), task
        self.title = f"{config.model} / {config.head} on {config.dataset}"
        self.scored = config.evaluate_on

    def __call__(self) -> None:
        from deepnc.plots.run_plots import plot_curves  # matplotlib, only where a run draws

        train_key = "train_top1" if self.task == "classification" else "train_pixel_accuracy"
        plot_curves(
            read_metrics(self.out),
            self.out / CURVES_NAME,
            title=self.title,
            train_key=train_key,
            test_key=f"{self.scored}_{primary_metric(self.task)}",
        )


def run_summary(
    config: TrainConfig,
    data: DatasetSplits,
    model: torch.nn.Module,
    history: list[dict],
    world_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """What ``summary.json`` holds: the last scores, the best, the time, the sizes, what
    the last evaluation found wrong (``warnings``), the image files left out and the
    resumptions on changed data (``resumes.jsonl``)."""
    last = history[-1] if history else {}
    scored = config.evaluate_on
    primary = f"{scored}_{primary_metric(data.task)}"

    def mean(key: str) -> float | None:
        return statistics.mean(row[key] for row in history) if history else None

    return {
        "task": data.task,
        "model": config.model,
        "head": config.head,
        "dataset": config.dataset,
        "seed": config.seed,
        "epochs": len(history),
        "evaluated_on": scored,
        **{f"{scored}_{name}": last.get(f"{scored}_{name}") for name in TEST_METRICS[data.task]},
        f"best_{primary}": max(
            (row[primary] for row in history if row.get(primary) is not None), default=None
        ),
        "seconds_per_epoch": mean("epoch_seconds"),
        "step_seconds": mean("step_seconds"),
        "parameters": count_parameters(model),
        "train_size": len(data.train),
        "test_size": len(data.test),
        "val_size": len(data.val) if data.val is not None else None,
        "world_size": world_size,
        "device": str(device),
        "warnings": [last[WARNING]] if last.get(WARNING) else [],
        "unreadable_images": data.unreadable,
        "resumed_on_other_data": read_resumes(config.out_dir),
        "config": config.to_dict(),
    }
