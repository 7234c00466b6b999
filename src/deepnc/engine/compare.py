"""DNC against the softmax head of the identical network and recipe, over seeds.

Each (head, seed) run lives in ``out_dir/<head>-seed<seed>``; a finished run (one with a
``summary.json``) is reused and an interrupted one is resumed, so a comparison can be
stopped and started again without losing work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepnc.engine.checkpoint import CHECKPOINT_NAME
from deepnc.engine.config import DNC_ONLY_KEYS, INCIDENTAL_KEYS, TrainConfig
from deepnc.engine.evaluation import primary_metric
from deepnc.engine.trainer import train

__all__ = [
    "compare",
    "comparison_markdown",
    "comparison_rows",
    "find_finished_run",
    "run_folder",
    "run_once",
]


PATH_KEYS = ("data_root", "init_from")  # config values that name files
log = logging.getLogger("deepnc")


def run_folder(out_dir: str | Path, head: str, seed: int) -> Path:
    """Where :func:`compare` keeps the run of ``head`` with ``seed``."""
    return Path(out_dir) / f"{head}-seed{seed}"


def compare(
    config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | Path,
    heads: Sequence[str] = ("dnc", "linear"),
    reuse_from: Sequence[str | Path] = (),
) -> list[dict[str, Any]]:
    """Train every head with every seed under ``config``; return the run summaries.

    The DNC-only keys of ``config`` (head options, warm start, half-life) apply to the
    DNC runs only; everything else (model,
    data, optimiser, schedule, epochs, augmentation) is identical for both heads.
    ``reuse_from``: folders searched for an identical finished run (see :func:`run_once`).
    """
    if not seeds:
        raise ValueError("compare needs at least one seed")
    out_dir = Path(out_dir)
    summaries = []
    for seed in seeds:
        for head in heads:
            run_dir = run_folder(out_dir, head, seed)
            dnc_only = {} if head == "dnc" else {**DNC_ONLY_KEYS, "head_options": {}}
            run = dataclasses.replace(
                config, head=head, seed=seed, out_dir=str(run_dir), **dnc_only
            )
            summaries.append(run_once(run, reuse_from))
    return summaries


def _essence(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe of a saved config; keys added to TrainConfig since it was saved count
    with their defaults, so runs of an earlier version are still recognised, and paths
    count as the files they name (``runs/x`` and its absolute form are one recipe)."""
    full = {**TrainConfig().to_dict(), **config}
    for key in PATH_KEYS:
        if full[key] is not None:
            full[key] = str(Path(full[key]).resolve())
    return {k: v for k, v in full.items() if k not in INCIDENTAL_KEYS}


def find_finished_run(config: TrainConfig, roots: Sequence[str | Path]) -> Path | None:
    """A finished run folder under ``roots`` whose recipe equals ``config``'s, if any.

    Folders, devices and progress bars do not count as the recipe.
    """
    wanted = _essence(config.to_dict())
    for root in roots:
        for summary_path in sorted(Path(root).rglob("summary.json")):
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(summary, dict) and _essence(summary.get("config", {})) == wanted:
                return summary_path.parent
    return None


def run_once(config: TrainConfig, reuse_from: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The summary of ``config``'s run: reused if finished, resumed if interrupted, else trained.

    A finished run with the identical recipe found under ``reuse_from`` is copied into
    ``config.out_dir`` instead of being trained again.
    """
    run_dir = Path(config.out_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists() and not (run_dir / CHECKPOINT_NAME).exists():
        found = find_finished_run(config.validate(), reuse_from)
        if found is not None and found.resolve() != run_dir.resolve():
            log.info("copying the identical finished run %s to %s", found, run_dir)
            shutil.copytree(found, run_dir, dirs_exist_ok=True)
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if _essence(summary["config"]) == _essence(config.validate().to_dict()):
            log.info("reusing the finished run %s", run_dir)
            return summary
        raise ValueError(f"{run_dir} holds a finished run with another configuration")
    log.info("training %s (seed %d) into %s", config.head, config.seed, run_dir)
    return train(config, resume=(run_dir / CHECKPOINT_NAME).exists())


def comparison_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per head: the task's headline metric (top-1 or mIoU, in %) per seed on the
    split the runs scored (``split``: test, or val with ``evaluate_on: val``), its mean and
    std (``<metric>``, ``<metric>_mean``, ``<metric>_std``), parameters, time."""
    rows = []
    by_head: dict[str, list[dict]] = {}
    for summary in summaries:
        by_head.setdefault(summary["head"], []).append(summary)
    for head, runs in by_head.items():
        metric = primary_metric(runs[0].get("task", "classification"))
        split = runs[0].get("evaluated_on", "test")
        values = [100 * run[f"{split}_{metric}"] for run in runs]
        rows.append(
            {
                "head": head,
                "split": split,
                "seeds": [run["seed"] for run in runs],
                "metric": metric,
                metric: values,
                f"{metric}_mean": statistics.mean(values),
                f"{metric}_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "trainable_parameters": runs[0]["parameters"]["trainable"],
                "subcentroid_numbers": runs[0]["parameters"]["subcentroids"],
                "seconds_per_epoch": statistics.mean(run["seconds_per_epoch"] for run in runs),
                "step_seconds": statistics.mean(run["step_seconds"] for run in runs),
            }
        )
    baseline = next((row for row in rows if row["head"] == "linear"), None)
    for row in rows:
        row["step_ratio"] = row["step_seconds"] / baseline["step_seconds"] if baseline else None
    return rows


def comparison_markdown(summaries: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`comparison_rows`, with the recipe underneath."""
    rows = comparison_rows(summaries)
    first = summaries[0]
    metric = rows[0]["metric"]
    label = {"top1": "top-1", "miou": "mIoU"}.get(metric, metric)
    if rows[0]["split"] != "test":
        label = f"{rows[0]['split']} {label}"
    lines = [
        f"{first['model']} on {first['dataset']}, {first['epochs']} epochs, "
        f"{first['train_size']} training / {first['test_size']} test images, seeds "
        f"{rows[0]['seeds']}",
        "",
        f"| head | {label} (%) mean ± std | per seed | trainable params | sub-centroid numbers "
        "| s / epoch | step ms | step / softmax |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"dnc": "DNC", "linear": "softmax"}
    for row in rows:
        ratio = f"{row['step_ratio']:.3f}" if row["step_ratio"] is not None else "-"
        lines.append(
            f"| {names.get(row['head'], row['head'])} "
            f"| {row[metric + '_mean']:.2f} ± {row[metric + '_std']:.2f} "
            f"| {', '.join(f'{v:.2f}' for v in row[metric])} | {row['trainable_parameters']:,} "
            f"| {row['subcentroid_numbers']:,} | {row['seconds_per_epoch']:.1f} "
            f"| {1000 * row['step_seconds']:.1f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"
