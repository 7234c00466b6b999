"""Does a class memory stored in bfloat16 or float16 cost accuracy? Against float32, on
the small budget's Fashion-MNIST ResNet-20 recipe.

The DNC head's class memory (``head_options.memory_dtype``) stores its features in half
the bytes; the clustering computes in fp32 either way. Each dtype trains the recipe of
``classification_fashion-mnist_resnet20`` at the small budget (2,000 training images, 3
epochs, the test split scored on 2,000 images once per run), seeds 0, 1, 2.

    python -m benchmarks.memory_dtype                # about 4 minutes on 2 CPU cores

Writes ``benchmarks/results/full/memory_dtype.{json,md}`` (``--results``). Extra
arguments are config overrides.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.common import ROOT, command_line, training_parser, write_results
from deepnc.engine import train
from deepnc.engine.config import load_config

RECIPE = [
    "--train_subset",
    "2000",
    "--test_subset",
    "2000",
    "--epochs",
    "3",
    "--eval_every",
    "3",
    "--progress",
    "false",
]
DTYPES = ("float32", "bfloat16", "float16")


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "memory_dtype", "memory_dtype")
    arguments, overrides = parser.parse_known_args(argv)
    rows = []
    for dtype in DTYPES:
        scores = []
        for seed in arguments.seeds:
            out = Path(arguments.out) / f"{dtype}-seed{seed}"
            if not (out / "summary.json").exists():
                config = load_config(
                    ROOT / "configs/fashion-mnist_resnet20.yaml",
                    [
                        *RECIPE,
                        *overrides,
                        "--seed",
                        str(seed),
                        "--out_dir",
                        str(out),
                        "--head_options.memory_dtype",
                        dtype,
                    ],
                )
                train(config)
            scores.append(100 * json.loads((out / "summary.json").read_text())["test_top1"])
        rows.append(
            {
                "memory_dtype": dtype,
                "test_top1": scores,
                "mean": statistics.mean(scores),
                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            }
        )
        print(f"{dtype:9s} {rows[-1]['mean']:.2f} ± {rows[-1]['std']:.2f}", flush=True)
    command = command_line("memory_dtype", argv)
    lines = [
        f"`{command}`",
        "",
        "| memory dtype | test top-1 (%) | per seed |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {r['memory_dtype']} | {r['mean']:.2f} ± {r['std']:.2f} | "
        + ", ".join(f"{v:.2f}" for v in r["test_top1"])
        + " |"
        for r in rows
    ]
    report = {"command": command, "seeds": arguments.seeds, "rows": rows}
    write_results(arguments.results, report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
