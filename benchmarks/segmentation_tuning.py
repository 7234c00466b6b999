"""The dense head tuned alike: the DNC pixel head and the 1x1-conv softmax head on
fashion-scenes (FCN over ResNet-20), each tuned on the set's own validation split, the
chosen configurations scored once on the test split.

1. **Screen** (seed 0, validation split): both heads over the same learning rates; DNC
   then, from its best learning rate, over its own knobs (the warm start, alone and with
   a momentum half-life of one epoch; tau 0.2).
2. **Halve**: each head's best two configurations get every seed on the validation split;
   the best mean is chosen.
3. **Test, once**: each head's chosen configuration under every seed on the test split.

Every run is an ordinary run folder; finished ones are reused (the test runs of an
unchanged recipe are those of ``segmentation_compare.py`` when its runs lie under
``runs/``).

    python -m benchmarks.segmentation_tuning
    python -m benchmarks.segmentation_tuning --seeds 0 --epochs 1      # a quick look

Writes ``benchmarks/results/full/segmentation_tuning.{json,md}`` (``--results``).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, command_line, training_parser, write_results
from benchmarks.tuning_study import HEADS, label, overrides_of
from deepnc.engine.compare import run_once
from deepnc.engine.config import load_config

RECIPE = ROOT / "configs/fashion-scenes_fcn_resnet20.yaml"
SHARED_GRID = [{"lr": lr} for lr in (0.025, 0.05, 0.1)]
DNC_OWN = [
    {"head_init": "warm"},
    {"head_init": "warm", "subcentroid_half_life": 1.0},
    {"head_options.tau": 0.2},
]


class DenseStudy:
    """Runs configurations of the FCN recipe and remembers their mIoU, reusing finished runs."""

    def __init__(self, out: Path, base_overrides: list[str]):
        self.out, self.base_overrides = out, base_overrides
        self.scores: dict[tuple, float] = {}

    def score(self, split: str, head: str, change: dict, seed: int) -> float:
        """mIoU (%) of one run, scored on ``split`` (``val`` or ``test``)."""
        key = (split, head, label(change), seed)
        if key not in self.scores:
            overrides = [*self.base_overrides, "--progress", "false", "--evaluate_on", split]
            if head == "linear":
                overrides += ["--head", "linear", "--head_options", "{}"]
            overrides += [*overrides_of(change), "--seed", str(seed)]
            config = load_config(RECIPE, overrides)
            slug = f"{split}-{head}-{label(change)}".lower().replace(" ", "")
            config.out_dir = str(self.out / slug.replace(",", "-") / f"seed{seed}")
            summary = run_once(config, reuse_from=[ROOT / "runs"])
            self.scores[key] = 100 * summary[f"{split}_miou"]
        return self.scores[key]

    def mean(self, split: str, head: str, change: dict, seeds: list[int]) -> float:
        return statistics.mean(self.score(split, head, change, seed) for seed in seeds)

    def rows(self) -> list[dict]:
        grouped: dict[tuple, dict[int, float]] = {}
        for (split, head, change, seed), value in self.scores.items():
            grouped.setdefault((split, head, change), {})[seed] = value
        rows = []
        for (split, head, change), by_seed in grouped.items():
            values = [by_seed[seed] for seed in sorted(by_seed)]
            rows.append(
                {
                    "split": split,
                    "head": head,
                    "change": change,
                    "seeds": sorted(by_seed),
                    "miou": values,
                    "miou_mean": statistics.mean(values),
                    "miou_std": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
            )
        return rows


def tune(study: DenseStudy, seeds: list[int]) -> dict[str, dict]:
    """Stages 1 and 2: each head's chosen change of the recipe."""
    first = seeds[:1]
    candidates = {head: list(SHARED_GRID) for head in HEADS}
    best_lr = max(SHARED_GRID, key=lambda change: study.mean("val", "dnc", change, first))
    candidates["dnc"] += [{**best_lr, **own} for own in DNC_OWN]
    chosen = {}
    for head, changes in candidates.items():
        top = sorted(changes, key=lambda change: -study.mean("val", head, change, first))[:2]
        chosen[head] = max(top, key=lambda change: study.mean("val", head, change, seeds))
    return chosen


def markdown(command: str, chosen: dict, tests: dict, rows: list[dict]) -> str:
    lines = [f"`{command}`", "", "| head | chosen change | test mIoU (%) | per seed |"]
    lines.append("| --- | --- | --- | --- |")
    for head, values in tests.items():
        lines.append(
            f"| {HEADS[head]} | {label(chosen[head])} | {statistics.mean(values):.2f} "
            f"| {', '.join(f'{v:.2f}' for v in values)} |"
        )
    lines += ["", "| split | head | change | seeds | mIoU (%) |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(
            f"| {row['split']} | {HEADS[row['head']]} | {row['change']} | {row['seeds']} "
            f"| {row['miou_mean']:.2f} ± {row['miou_std']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(
        __doc__.splitlines()[0], "bench_segmentation_tuning", "segmentation_tuning"
    )
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.time()
    study = DenseStudy(Path(arguments.out), overrides)
    chosen = tune(study, arguments.seeds)
    tests = {
        head: [study.score("test", head, change, seed) for seed in arguments.seeds]
        for head, change in chosen.items()
    }
    command = command_line("segmentation_tuning.py", argv)
    rows = study.rows()
    report = {
        "command": command,
        "recipe": str(RECIPE.relative_to(ROOT)),
        "overrides": overrides,
        "seeds": arguments.seeds,
        "shared_grid": SHARED_GRID,
        "dnc_own": DNC_OWN,
        "chosen": chosen,
        "test": tests,
        "dnc_minus_softmax": statistics.mean(tests["dnc"]) - statistics.mean(tests["linear"]),
        "rows": rows,
        "wall_seconds": time.time() - start,
    }
    table = markdown(command, chosen, tests, rows)
    write_results(arguments.results, report, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
