"""DNC against softmax under an identical recipe, one dataset and backbone per call, 3 seeds.

The classification table of the report: for the config given (a dataset and a backbone),
both heads are trained under seeds 0, 1, 2 through ``deepnc.engine.compare``, exactly as
``deepnc compare`` does; finished runs are reused, so an interrupted benchmark continues
where it stopped. Rows: top-1 mean ± std, trainable parameters, sub-centroid numbers
(buffers, not parameters), seconds per epoch and the training step's time.

    python -m benchmarks.classification --config configs/fashion-mnist_resnet20.yaml
    python -m benchmarks.classification --config configs/digits_efficientnet_lite0.yaml \\
        --seeds 0 --epochs 1                                            # a quick look

Writes ``benchmarks/results/full/classification_<dataset>_<model>.{json,md}``
(``--results`` to change). Extra arguments are config overrides (``--train_subset 2000``).
"""

from __future__ import annotations

import logging
import sys
import time

from benchmarks.common import FULL_RESULTS, ROOT, command_line, training_parser, write_results
from deepnc.engine.compare import compare, comparison_markdown, comparison_rows
from deepnc.engine.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], None, None)  # defaults: see above
    parser.add_argument("--config", default=str(ROOT / "configs/fashion-mnist_resnet20.yaml"))
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(arguments.config, [*overrides, "--progress", "false"])
    name = f"{config.dataset}_{config.model}"
    out = arguments.out or str(ROOT / f"runs/bench_{name}")
    start = time.time()
    summaries = compare(config, arguments.seeds, out, reuse_from=[ROOT / "runs"])
    rows = comparison_rows(summaries)
    dnc = next(row for row in rows if row["head"] == "dnc")
    softmax = next(row for row in rows if row["head"] == "linear")
    command = command_line("classification.py", argv)
    report = {
        "command": command,
        "dataset": config.dataset,
        "model": config.model,
        "config": config.to_dict(),
        "seeds": arguments.seeds,
        "rows": rows,
        "dnc_minus_softmax": dnc["top1_mean"] - softmax["top1_mean"],
        "runs": [{k: v for k, v in s.items() if k != "config"} for s in summaries],
        "wall_seconds": time.time() - start,
    }
    table = comparison_markdown(summaries)
    stem = arguments.results or FULL_RESULTS / f"classification_{name}"
    write_results(stem, report, f"`{command}`\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
