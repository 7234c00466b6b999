"""``deepnc compare --config FILE --seeds 0 1 2 [--out DIR] [--key value ...]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="train the DNC and the softmax head with the identical recipe over seeds",
        description=(
            "Train head=dnc and head=linear with the same config and seeds, then write "
            "compare.md (mean and std of top-1 per head) and compare.json (all runs). "
            "Config keys can be overridden as --key value."
        ),
    )
    parser.add_argument("--config", help="YAML file of config keys, or a shipped recipe's name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="default: 0 1 2")
    parser.add_argument("--out", help="folder of the comparison (default: out_dir of the config)")


def run(arguments: argparse.Namespace, overrides: list[str]) -> int:
    from deepnc.engine.compare import compare, comparison_markdown, comparison_rows
    from deepnc.engine.config import load_config

    config = load_config(arguments.config, overrides)
    out = Path(arguments.out or config.out_dir)
    summaries = compare(config, arguments.seeds, out)
    table = comparison_markdown(summaries)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table)
    report = {"rows": comparison_rows(summaries), "runs": summaries}
    (out / "compare.json").write_text(json.dumps(report, indent=2))
    print(table)
    return 0
