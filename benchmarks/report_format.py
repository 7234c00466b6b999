"""Small formatting helpers of the report: mean ± std, verdicts, Markdown tables, links."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Results:
    """The JSON files of one results folder, by name (``classification_digits_resnet20``...)."""

    directory: Path
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        return self.data.get(name)

    @property
    def budget(self) -> str:
        """The budget the driver ran (``small``...), else the folder's name."""
        driver = self.data.get("driver") or {}
        return driver.get("budget", self.directory.name)

    def figure(self, name: str) -> Path:
        return self.directory / "figures" / f"{name}.png"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value) of ``values``."""
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(mean: float, std: float, digits: int = 2) -> str:
    """``"91.80 ± 0.12"``; ``"-"`` for NaN."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def number(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals; ``"-"`` for a missing value or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def code(command: str) -> str:
    return f"`{command}`"


def link(target: Path, report_dir: Path) -> str:
    """``target`` relative to the report's folder, with forward slashes."""
    return Path(os.path.relpath(target, report_dir)).as_posix()


def image(results: Results, name: str, report_dir: Path, alt: str) -> list[str]:
    """A Markdown image line for ``results``' figure ``name`` (drawn or not)."""
    return [f"![{alt}]({link(results.figure(name), report_dir)})", ""]


CLAIMS = yaml.safe_load((Path(__file__).with_name("claims.yaml")).read_text())


def claim(name: str, here: str) -> list[str]:
    """The claim ``name`` of ``claims.yaml`` and this reproduction's one-sentence verdict
    (capitalised here)."""
    paper = CLAIMS[name]
    return [f"> **Paper:** {paper}", ">", f"> **Here:** {here[:1].upper()}{here[1:]}", ""]


def opening(title: str, found: Any, step: str, results: Results, appendix: bool) -> list[str]:
    """A section's first lines: its heading, or, when its JSON (``found``) is absent,
    the command that would write it (nothing at all in the appendix)."""
    heading = f"### {title}" if appendix else f"## {title}"
    if found:
        return [heading, ""]
    if appendix:
        return []
    command = f"python -m benchmarks.run --budget {results.budget} --only {step}"
    return [heading, "", f"Not run at this budget: `{command}`.", ""]
