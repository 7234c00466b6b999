"""What every benchmark script shares: where results go, the command that made them, the machine.

Each script runs standalone (``python -m benchmarks.<name>`` from the repository root, its
defaults being the
``full`` budget's recipe) or from the driver (``python -m benchmarks.run --budget
small``), which calls its ``main(argv)`` in-process. Either way the JSON it writes
records the exact standalone command that regenerates it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from deepnc.nn import defaults

ROOT = Path(__file__).resolve().parents[1]
# The paper's classification head, which the library's defaults hold (deepnc.nn.defaults):
# the reference of the ablation and the tuning study, whatever head the recipes hold.
PAPER_HEAD = {
    "num_subcentroids": defaults.NUM_SUBCENTROIDS,
    "tau": defaults.TAU,
    "momentum": defaults.MOMENTUM,
    "memory_size": defaults.MEMORY_SIZE,
}
RESULTS = ROOT / "benchmarks" / "results"
FULL_RESULTS = RESULTS / "full"  # where a script run with its defaults writes


def relative(path: str | Path) -> str:
    """``path`` relative to the repository root where it lies inside it, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def training_parser(description: str, runs: str | None, results: str | None):
    """The arguments every training benchmark takes: ``--seeds``, ``--out`` (where its
    runs go, default ``runs/<runs>``) and ``--results`` (the JSON stem, default
    ``benchmarks/results/full/<results>``). Extra arguments are config overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "runs" / runs) if runs else None)
    parser.add_argument("--results", default=str(FULL_RESULTS / results) if results else None)
    return parser


def fashion_classes_config(classes: list[int], train_subset: int, overrides: list[str]):
    """``configs/fashion-mnist_resnet20.yaml`` trained on ``classes`` only (relabelled in
    that order), on ``train_subset`` class-balanced images unless ``overrides`` say
    otherwise: the recipe of the open-set and new-class benchmarks."""
    from deepnc.engine.config import load_config

    config = load_config(
        ROOT / "configs/fashion-mnist_resnet20.yaml",
        ["--train_subset", str(train_subset), "--progress", "false", *overrides],
    )
    return dataclasses.replace(config, dataset_options={"classes": list(classes)})


def command_line(script: str, argv: list[str] | None) -> str:
    """The standalone shell command equivalent to ``main(argv)`` of ``benchmarks/<script>``
    (``script`` with or without ``.py``): ``python -m benchmarks.<name> ...``."""
    arguments = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", f"benchmarks.{script.removesuffix('.py')}", *arguments])


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    import torch  # here, so that the driver and the renderer start without torch

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def write_results(stem: str | Path, report: dict[str, Any], markdown: str | None = None) -> Path:
    """Write ``<stem>.json`` (and ``<stem>.md`` when given); return the JSON path.

    The JSON is written to a temporary name and renamed, so an interrupted benchmark
    never leaves half a file for the renderer.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_name(stem.name + ".json")  # not with_suffix: a stem may hold a dot
    partial = stem.with_name(stem.name + ".json.partial")
    partial.write_text(json.dumps({**report, "machine": machine()}, indent=2) + "\n")
    os.replace(partial, path)
    if markdown is not None:
        stem.with_name(stem.name + ".md").write_text(markdown)
    return path


def status_bytes(field: str) -> int:
    """A size field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)
