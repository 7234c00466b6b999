"""A tiny run with defaults, as a new user's first try: does the model predict every class?

ResNet-20 on 1,000 digit images for 2 epochs (the recipe's defaults otherwise), DNC and
softmax heads, each with and without the knobs that make evaluation agree with training:
``head_options.tau: auto`` (the temperature from the class count), ``precise_bn`` (the
BatchNorm statistics over 1,000 training images before evaluating; on by default, so the
rows without it turn it off) and ``refresh: end``
(the sub-centroids refitted on eval-mode features after the last epoch). Reports the
validation top-1 (300 training images held out; choices are made on it), the test top-1
(scored once per variant) and the share of test images put in the single most-predicted
class (1.0: every image in one class).

    python -m benchmarks.tiny_run                # 2 seeds, about 8 minutes on 2 CPU cores

Writes ``benchmarks/results/full/tiny_run.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import FULL_RESULTS, command_line, write_results
from deepnc.engine import evaluate, train
from deepnc.engine.build import build_data
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_trained_model

RECIPE = {
    "dataset": "digits",
    "train_subset": 1300,
    "validation_size": 300,
    "epochs": 2,
    "progress": False,
    "threads": 2,
}
OFF = {"precise_bn": None}  # precise BN is on by default: the rows without it say so
VARIANTS = {  # name: (head, overrides)
    "softmax, no precise BN": ("linear", OFF),
    "softmax (defaults: precise BN)": ("linear", {}),
    "DNC, no precise BN": ("dnc", OFF),
    "DNC, tau auto, no precise BN": ("dnc", {**OFF, "head_options": {"tau": "auto"}}),
    "DNC (defaults: precise BN)": ("dnc", {}),
    "DNC + refresh, no precise BN": ("dnc", {**OFF, "refresh": "end"}),
    "DNC + precise BN + refresh": ("dnc", {"refresh": "end"}),
    "DNC, tau auto + precise BN + refresh": (
        "dnc",
        {"head_options": {"tau": "auto"}, "refresh": "end"},
    ),
}


def scores(run: Path) -> dict[str, float]:
    """Validation and test top-1 (%) of a finished run, and the test images' share in
    the most-predicted class."""
    model, checkpoint = load_trained_model(run)
    data = build_data(load_config(None, checkpoint.config))
    found = {}
    for split in ("val", "test"):
        dataset = data.val if split == "val" else data.test
        loader = DataLoader(dataset, batch_size=512)
        result = evaluate(model, loader, num_classes=data.num_classes, device=torch.device("cpu"))
        found[f"{split}_top1"] = 100 * result.top1
        if split == "test":
            found["largest_class_share"] = float(result.predicted.max() / result.samples)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--runs", default="runs/bench/tiny_run")
    parser.add_argument("--results", default=str(FULL_RESULTS / "tiny_run"))
    arguments = parser.parse_args(argv)
    rows = []
    for name, (head, overrides) in VARIANTS.items():
        per_seed = []
        for seed in arguments.seeds:
            slug = name.replace(" ", "_").replace(",", "").replace("+", "and")
            out = Path(arguments.runs) / f"{slug}-seed{seed}"
            if not (out / "summary.json").exists():
                values = {**RECIPE, "head": head, "seed": seed, "out_dir": str(out), **overrides}
                train(load_config(None, values))
            per_seed.append(scores(out))
        row = {"variant": name, "per_seed": per_seed}
        for key in ("val_top1", "test_top1", "largest_class_share"):
            row[key] = statistics.mean(s[key] for s in per_seed)
        rows.append(row)
        print(
            f"{name:40s} val {row['val_top1']:5.1f}  test {row['test_top1']:5.1f}  "
            f"largest class {row['largest_class_share']:.2f}",
            flush=True,
        )
    result = {"command": command_line("tiny_run", argv), "recipe": RECIPE, "rows": rows}
    lines = [
        f"`{result['command']}`",
        "",
        "| variant | val top-1 (%) | test top-1 (%) | largest predicted class (share of test) |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['variant']} | {r['val_top1']:.1f} | {r['test_top1']:.1f} | "
        f"{r['largest_class_share']:.2f} |"
        for r in rows
    ]
    write_results(arguments.results, result, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
