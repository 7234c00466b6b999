"""``deepnc fit`` against a linear probe, k-NN and fine-tuning, on frozen EfficientNet-Lite0
features (its shipped ImageNet weights), in accuracy and seconds.

For each setting (Fashion-MNIST, 2,000 training images scored on 2,000 test images;
digits, all of it; 32x32, float32, 3 seeds):

- **DNC fit**: ``deepnc fit`` (the engine's ``fit_run``): one embedding pass, balanced
  k-means per class, K = 4; seconds = embedding + fitting.
- **DNC fit, learnt projection**: ``deepnc fit --projection P`` with the temperature
  ``--projection-tau``: a linear map D -> P and the head's LayerNorm trained on the
  cached embeddings (20 epochs, Adam), then the head refitted. P and tau default to the
  choice of ``benchmarks/fit_tuning.py`` (validation splits, never these test splits).
- **linear probe**: scikit-learn's ``LogisticRegression`` on the same normalised
  training embeddings (the run's cache), scored on the test embeddings.
- **k-NN**: ``KNeighborsClassifier(5)`` on the same embeddings (cosine: they are unit).
- **fine-tuning**: the small budget's classification table of the same setting (DNC and
  softmax heads, every weight trained; ``classification_<setting>.json``), read, not
  rerun; seconds = seconds per epoch x epochs.

    python -m benchmarks.fit_compare

Writes ``benchmarks/results/full/fit_compare.{json,md}`` (``--results``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, command_line, training_parser, write_results
from deepnc.commands.fit import fit_run
from deepnc.engine.build import build_data
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_trained_model
from deepnc.explain.embedding_cache import load_embeddings
from deepnc.explain.embeddings import embed_dataset

SETTINGS = {  # name: (recipe, overrides, the small budget's fine-tuning table)
    "fashion-mnist": (
        "fashion-mnist_efficientnet_lite0",
        ["--train_subset", "2000", "--test_subset", "2000"],
        "classification_fashion-mnist_efficientnet_lite0",
    ),
    "digits": ("digits_efficientnet_lite0", [], "classification_digits_efficientnet_lite0"),
}
LITE0_CPU = ["--image_size", "32", "--amp", "false", "--pretrained", "true"]
PLAIN_FIT: dict = {}  # head_options of the plain fit: the library's head (K = 4, tau 0.1)


def probes(run: Path) -> dict[str, tuple[float, float]]:
    """``{name: (test top-1 %, seconds)}`` of the linear probe and k-NN on the run's
    training embeddings and its test split's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    model, checkpoint = load_trained_model(run)
    train_features, train_labels = load_embeddings(run, model)
    config = load_config(None, {**checkpoint.config, "pretrained": False})
    test = embed_dataset(model, build_data(config).test)
    found = {}
    for name, estimator in (
        ("linear probe", LogisticRegression(max_iter=2000)),
        ("k-NN (k=5)", KNeighborsClassifier(5)),
    ):
        start = time.perf_counter()
        estimator.fit(train_features.numpy(), train_labels.numpy())
        seconds = time.perf_counter() - start
        top1 = 100 * estimator.score(test.features.numpy(), test.labels.numpy())
        found[name] = (top1, seconds)
    return found


def fit_projected(config, run: Path, head_options: dict) -> tuple[float, float]:
    """``(test top-1 %, seconds)`` of ``deepnc fit`` with a learnt projection, in a run
    folder beside ``run``."""
    out = run.with_name(f"{run.name}-projection")
    config = dataclasses.replace(config, out_dir=str(out), head_options=head_options)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else fit_run(config)
    return 100 * summary["test_top1"], summary["fit_seconds"]


def fine_tuned(results: Path, table: str) -> dict[str, tuple[list[float], float]]:
    """``{head: (top-1 per seed, seconds)}`` of the small budget's fine-tuning table."""
    path = results / f"{table}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    epochs = data["config"]["epochs"]
    names = {"dnc": "fine-tuning, DNC head", "linear": "fine-tuning, softmax head"}
    return {
        names[row["head"]]: (row["top1"], row["seconds_per_epoch"] * epochs) for row in data["rows"]
    }


def _row(setting: str, method: str, top1: list[float], seconds: float) -> dict:
    return {
        "setting": setting,
        "method": method,
        "top1": top1,
        "top1_mean": statistics.mean(top1),
        "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "bench_fit_compare", "fit_compare")
    parser.add_argument(
        "--fine-tuned",
        default=str(ROOT / "benchmarks/results/small"),
        help="the results folder whose classification tables are read",
    )
    parser.add_argument("--projection", type=int, default=256, help="P (0: leave the row out)")
    parser.add_argument("--projection-tau", default="0.1")
    arguments, overrides = parser.parse_known_args(argv)
    tau = arguments.projection_tau
    projected = {"projection": arguments.projection, "tau": tau if tau == "auto" else float(tau)}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for setting, (recipe, extra, table) in SETTINGS.items():
        found: dict[str, list[tuple[float, float]]] = {}
        for seed in arguments.seeds:
            run = Path(arguments.out) / f"{setting}-seed{seed}"
            config = load_config(recipe, [*LITE0_CPU, *extra, *overrides, "--progress", "false"])
            config = dataclasses.replace(
                config, seed=seed, out_dir=str(run), head_options=dict(PLAIN_FIT)
            )
            summary = (
                json.loads((run / "summary.json").read_text())
                if (run / "summary.json").is_file()
                else fit_run(config)
            )
            found.setdefault("DNC fit (k-means, K=4)", []).append(
                (100 * summary["test_top1"], summary["fit_seconds"])
            )
            if arguments.projection:
                name = f"DNC fit, learnt projection (P={arguments.projection}, tau {tau})"
                found.setdefault(name, []).append(fit_projected(config, run, projected))
            for name, result in probes(run).items():
                found.setdefault(name, []).append(result)
        for name, results in found.items():
            seconds = statistics.mean(seconds for _, seconds in results)
            rows.append(_row(setting, name, [value for value, _ in results], seconds))
        for name, (top1, seconds) in fine_tuned(Path(arguments.fine_tuned), table).items():
            rows.append(_row(setting, name, top1, seconds))
    command = command_line("fit_compare", argv)
    lines = [f"`{command}`", "", "| setting | method | top-1 (%) | per seed | seconds |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for row in rows:
        top1 = f"{row['top1_mean']:.2f} ± {row['top1_std']:.2f}"
        per_seed = ", ".join(f"{v:.2f}" for v in row["top1"])
        lines.append(
            f"| {row['setting']} | {row['method']} | {top1} | {per_seed} | {row['seconds']:.1f} |"
        )
    table_md = "\n".join(lines) + "\n"
    write_results(arguments.results, {"command": command, "rows": rows}, table_md)
    print(table_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
