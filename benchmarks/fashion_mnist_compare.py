"""DNC against softmax on Fashion-MNIST with a CIFAR-style ResNet-20, identical recipe, 3 seeds.

The target of the training issue: DNC top-1 >= softmax top-1 (mean over seeds), both
>= 90%, and a training step at most 5% slower than softmax's. The runs go through
``deepnc.compare`` exactly as ``deepnc compare`` does; finished runs are reused, so an
interrupted benchmark continues where it stopped.

    python benchmarks/fashion_mnist_compare.py                     # the committed figures
    python benchmarks/fashion_mnist_compare.py --seeds 0 --epochs 1 --train_subset 2000

Writes ``benchmarks/results/fashion_mnist_compare.{json,md}`` (``--results`` to change).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from deepnc.compare import compare, comparison_markdown, comparison_rows
from deepnc.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/fashion-mnist_resnet20.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "runs/bench_fashion_mnist_compare"))
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/fashion_mnist_compare"))
    arguments, overrides = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(arguments.config, [*overrides, "--progress", "false"])
    start = time.time()
    summaries = compare(config, arguments.seeds, arguments.out)
    rows = comparison_rows(summaries)
    table = comparison_markdown(summaries)
    dnc = next(row for row in rows if row["head"] == "dnc")
    softmax = next(row for row in rows if row["head"] == "linear")
    targets = {
        "dnc_at_least_softmax": dnc["top1_mean"] >= softmax["top1_mean"],
        "both_at_least_90": min(dnc["top1_mean"], softmax["top1_mean"]) >= 90.0,
        "step_overhead_at_most_5_percent": dnc["step_ratio"] <= 1.05,
    }
    command = " ".join(["python", "benchmarks/fashion_mnist_compare.py", *sys.argv[1:]])
    report = {
        "command": command,
        "config": config.to_dict(),
        "seeds": arguments.seeds,
        "rows": rows,
        "targets": targets,
        "runs": [{k: v for k, v in s.items() if k != "config"} for s in summaries],
        "wall_seconds": time.time() - start,
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    results = Path(arguments.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(report, indent=2))
    checks = "\n".join(f"- {name}: {'yes' if met else 'NO'}" for name, met in targets.items())
    results.with_suffix(".md").write_text(f"`{command}`\n\n{table}\nTargets:\n{checks}\n")
    print(table)
    print(checks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
