"""``deepnc fit``'s learnt projection, tuned on validation splits: its width and the
temperature it is trained with, against the plain fit, on frozen EfficientNet-Lite0
features (the settings of ``benchmarks/fit_compare.py``, each holding out part of its
training images as the validation split; 3 seeds). The test splits are not read.

    python -m benchmarks.fit_tuning

Writes ``benchmarks/results/full/fit_tuning.{json,md}`` (``--results``); the choice
(the best mean over both settings) is what ``fit_compare`` scores on the test splits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path

from benchmarks.common import command_line, training_parser, write_results
from benchmarks.fit_compare import LITE0_CPU, PLAIN_FIT, SETTINGS
from deepnc.commands.fit import ProjectionOptions, fit_run
from deepnc.engine.config import load_config

VALIDATION = {"fashion-mnist": "500", "digits": "300"}  # images held out of the training split
CANDIDATES = {  # name: head_options
    "plain fit, K=4": PLAIN_FIT,
    "projection 64, tau 0.1": {"projection": 64, "tau": 0.1},
    "projection 64, tau auto": {"projection": 64, "tau": "auto"},
    "projection 256, tau 0.1": {"projection": 256, "tau": 0.1},
    "projection 256, tau auto": {"projection": 256, "tau": "auto"},
}


def slug(name: str) -> str:
    """``"projection 64, tau auto"`` -> ``"projection-64-tau-auto"``: a folder name."""
    return "-".join(name.replace(",", " ").replace("=", " ").split())


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "bench_fit_tuning", "fit_tuning")
    parser.add_argument("--epochs", type=int, default=ProjectionOptions.epochs)
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    options = ProjectionOptions(epochs=arguments.epochs)
    rows = []
    for setting, (recipe, extra, _) in SETTINGS.items():
        held_out = ["--validation_size", VALIDATION[setting], "--evaluate_on", "val"]
        for name, head_options in CANDIDATES.items():
            top1, seconds = [], []
            for seed in arguments.seeds:
                run = Path(arguments.out) / f"{setting}-{slug(name)}-seed{seed}"
                config = load_config(
                    recipe, [*LITE0_CPU, *extra, *held_out, *overrides, "--progress", "false"]
                )
                config = dataclasses.replace(
                    config, seed=seed, out_dir=str(run), head_options=dict(head_options)
                )
                summary = (
                    json.loads((run / "summary.json").read_text())
                    if (run / "summary.json").is_file()
                    else fit_run(config, projection=options)
                )
                top1.append(100 * summary["val_top1"])
                seconds.append(summary["fit_seconds"])
            rows.append(
                {
                    "setting": setting,
                    "candidate": name,
                    "head_options": head_options,
                    "val_top1": top1,
                    "val_top1_mean": statistics.mean(top1),
                    "val_top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                    "seconds": statistics.mean(seconds),
                }
            )
            print(f"{setting:14} {name:26} {rows[-1]['val_top1_mean']:.2f}", flush=True)
    means = {
        name: statistics.mean(row["val_top1_mean"] for row in rows if row["candidate"] == name)
        for name in CANDIDATES
    }
    chosen = max(means, key=means.get)
    command = command_line("fit_tuning", argv)
    lines = [f"`{command}`", "", "| setting | candidate | val top-1 (%) | per seed | seconds |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for row in rows:
        per_seed = ", ".join(f"{v:.2f}" for v in row["val_top1"])
        lines.append(
            f"| {row['setting']} | {row['candidate']} | {row['val_top1_mean']:.2f} ± "
            f"{row['val_top1_std']:.2f} | {per_seed} | {row['seconds']:.1f} |"
        )
    lines += ["", f"Chosen (best mean over the settings): **{chosen}** ({means[chosen]:.2f})."]
    table_md = "\n".join(lines) + "\n"
    report = {"command": command, "rows": rows, "means": means, "chosen": chosen}
    write_results(arguments.results, {**report, "epochs": options.epochs}, table_md)
    print(table_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
