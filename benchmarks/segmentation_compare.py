"""Segmentation on fashion-scenes: the DNC pixel head against the 1x1-conv softmax head, and
the transfer of a DNC-trained classification backbone. Identical recipes, 3 seeds.

1. ``compare``: FCN and DeepLabV3 over a CIFAR-style ResNet-20
   (``configs/fashion-scenes_{fcn,deeplabv3}_resnet20.yaml``), DNC vs 1x1 conv.
   Target: DNC mIoU >= softmax mIoU (mean over seeds) for both decoders.
2. ``transfer``: the FCN DNC model started from scratch, from the DNC Fashion-MNIST
   classifier, and from the softmax classifier of the same recipe
   (``configs/fashion-mnist_resnet20.yaml``, seed 0; finished runs under ``runs/`` are
   reused, so the classifiers of ``classification.py`` are not trained again). With
   ``--classifier-epochs 1 2 3`` the classifiers are trained for each number of epochs,
   and the two pretraining heads are compared at equal classifier top-1 (the DNC
   backbones' mIoU interpolated at each softmax classifier's top-1). With
   ``--classifier-projection P`` a third pretraining head joins them: the DNC head with a
   learnt linear projection to P dimensions (``head_options.projection``), which stays
   with the classifier when the backbone transfers (as ProtoSeg's projection head does).

Runs go through ``deepnc.engine.compare`` / ``run_once`` exactly as the CLI does; finished runs
are reused, so an interrupted benchmark continues where it stopped.

    python -m benchmarks.segmentation_compare                  # the committed figures
    python -m benchmarks.segmentation_compare --seeds 0 --epochs 1 \\
        --classifier-overrides="--epochs 1 --train_subset 2000"        # a quick look

Writes ``benchmarks/results/full/segmentation_compare.{json,md}`` (``--results`` to change).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shlex
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, command_line, training_parser, write_results
from deepnc.engine.compare import compare, comparison_markdown, comparison_rows, run_once
from deepnc.engine.config import DNC_ONLY_KEYS, load_config

DECODERS = ("fcn", "deeplabv3")


def _config(decoder: str, overrides: list[str]):
    path = ROOT / f"configs/fashion-scenes_{decoder}_resnet20.yaml"
    return load_config(path, [*overrides, "--progress", "false"])


def head_comparison(seeds, out: Path, overrides: list[str]) -> tuple[dict, str]:
    """DNC vs softmax for every decoder: rows, targets and a Markdown section."""
    tables, rows, targets = [], {}, {}
    for decoder in DECODERS:
        summaries = compare(_config(decoder, overrides), seeds, out / decoder)
        rows[decoder] = comparison_rows(summaries)
        dnc, softmax = (next(r for r in rows[decoder] if r["head"] == h) for h in ("dnc", "linear"))
        targets[f"{decoder}: DNC mIoU >= softmax mIoU"] = dnc["miou_mean"] >= softmax["miou_mean"]
        tables.append(f"### {decoder}\n\n{comparison_markdown(summaries)}")
    return {"rows": rows, "targets": targets}, "\n".join(tables)


def _classifier(
    head: str, out: Path, overrides: list[str], epochs: int | None, projection: int | None = None
):
    """The Fashion-MNIST classifier of ``head`` trained for ``epochs`` (``None``: the
    recipe's own), with a DNC projection to ``projection`` dimensions if given; reused if
    it exists anywhere under runs/."""
    if projection is not None:
        overrides = [*overrides, "--head_options.projection", str(projection)]
    if epochs is not None:
        overrides = [*overrides, "--epochs", str(epochs), "--eval_every", str(epochs)]
    config = load_config(
        ROOT / "configs/fashion-mnist_resnet20.yaml",
        ["--seed", "0", "--progress", "false", *overrides],
    )
    if head == "linear":  # the softmax twin of the recipe, as deepnc compare trains it
        config = dataclasses.replace(config, head="linear", **DNC_ONLY_KEYS)
    suffix = ("" if projection is None else f"-projection{projection}") + (
        "" if epochs is None else f"-{epochs}epochs"
    )
    run_dir = out / f"classifier-{head}{suffix}"
    summary = run_once(dataclasses.replace(config, out_dir=str(run_dir)), [ROOT / "runs"])
    return run_dir / "checkpoint.safetensors", summary


def projection_name(projection: int) -> str:
    """The transfer rows' name of the DNC classifier with a projection head."""
    return f"DNC classifier, projection {projection}"


def matched_differences(rows: list[dict], dnc_name: str = "DNC classifier") -> list[dict]:
    """DNC-backbone minus softmax-backbone mIoU at equal classifier top-1 (%): for every
    softmax classifier whose top-1 lies within the range of the ``dnc_name`` classifiers',
    their backbones' mIoU linearly interpolated at that top-1, minus the softmax backbone's."""
    points = {
        head: sorted(
            (100 * row["classifier_top1"], row["miou_mean"]) for row in rows if row["init"] == head
        )
        for head in (dnc_name, "softmax classifier")
    }
    dnc = points[dnc_name]
    matched = []
    for top1, miou in points["softmax classifier"]:
        for (low, low_miou), (high, high_miou) in itertools.pairwise(dnc):
            if low <= top1 <= high and high > low:
                share = (top1 - low) / (high - low)
                dnc_miou = low_miou + share * (high_miou - low_miou)
                matched.append(
                    {
                        "classifier_top1": top1,
                        "softmax_miou": miou,
                        "dnc_miou": dnc_miou,
                        "dnc_minus_softmax": dnc_miou - miou,
                    }
                )
                break
    return matched


def transfer(
    seeds,
    out: Path,
    overrides: list[str],
    classifier_overrides: list[str],
    epochs_sweep=(None,),
    projection: int | None = None,
):
    """mIoU of the FCN DNC model from scratch and from each classifier, one classifier per
    head and per number of classifier epochs in ``epochs_sweep`` (``None``: the recipe's);
    with ``projection``, also from DNC classifiers with a projection head of that width."""
    sources = [("scratch", None, None, None)]
    heads = [("dnc", "DNC classifier", None), ("linear", "softmax classifier", None)]
    if projection is not None:
        heads.append(("dnc", projection_name(projection), projection))
    for head, name, width in heads:
        for epochs in epochs_sweep:
            checkpoint, summary = _classifier(head, out, classifier_overrides, epochs, width)
            sources.append((name, epochs, str(checkpoint), summary))
    base = _config("fcn", overrides)
    rows = []
    for name, epochs, checkpoint, classifier in sources:
        runs = []
        for seed in seeds:
            slug = name.split()[0].lower() + ("" if "projection" not in name else "-projection")
            slug += "" if epochs is None else f"-{epochs}epochs"
            run_dir = out / f"fcn-dnc-from-{slug}-seed{seed}"
            config = dataclasses.replace(
                base, seed=seed, init_from=checkpoint, out_dir=str(run_dir)
            )
            runs.append(run_once(config, reuse_from=[out.parent]))  # scratch = the compare runs
        miou = [100 * run["test_miou"] for run in runs]
        rows.append(
            {
                "init": name,
                "classifier_epochs": classifier["epochs"] if classifier else None,
                "classifier_top1": classifier["test_top1"] if classifier else None,  # a fraction
                "miou": miou,
                "miou_mean": statistics.mean(miou),
                "miou_std": statistics.stdev(miou) if len(miou) > 1 else 0.0,
                "pixel_accuracy_mean": statistics.mean(
                    100 * r["test_pixel_accuracy"] for r in runs
                ),
            }
        )
    matched = matched_differences(rows)
    matched_projection = (
        None if projection is None else matched_differences(rows, projection_name(projection))
    )
    lines = [
        "| FCN-ResNet-20, DNC head, initialised from | classifier epochs | classifier top-1 (%) "
        "| mIoU (%) mean ± std | per seed | pixel accuracy (%) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        top1 = "-" if row["classifier_top1"] is None else f"{100 * row['classifier_top1']:.2f}"
        lines.append(
            f"| {row['init']} | {row['classifier_epochs'] or '-'} | {top1} "
            f"| {row['miou_mean']:.2f} ± {row['miou_std']:.2f} "
            f"| {', '.join(f'{v:.2f}' for v in row['miou'])} | {row['pixel_accuracy_mean']:.2f} |"
        )
    for name, points in (("DNC", matched), ("DNC with a projection", matched_projection)):
        if points:
            lines += ["", f"At equal classifier top-1 ({name} backbones interpolated):", ""]
            lines += [
                f"- {m['classifier_top1']:.2f}%: {name} {m['dnc_miou']:.2f}, softmax "
                f"{m['softmax_miou']:.2f} mIoU ({m['dnc_minus_softmax']:+.2f})"
                for m in points
            ]
    report = {"rows": rows, "matched": matched}
    if projection is not None:
        report["projection"] = {
            "dim": projection,
            "init": projection_name(projection),
            "matched": matched_projection,
        }
    return report, "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "bench_segmentation", "segmentation_compare")
    parser.add_argument(
        "--parts", nargs="+", choices=("compare", "transfer"), default=["compare", "transfer"]
    )
    parser.add_argument(
        "--classifier-overrides",
        default="",
        help='config overrides of the classifiers, quoted: --classifier-overrides="--epochs 1"',
    )
    parser.add_argument(
        "--classifier-epochs",
        type=int,
        nargs="+",
        default=None,
        help="transfer: train the classifiers for each of these epochs (a sweep, to compare "
        "the backbones at equal classifier top-1); default the recipe's own",
    )
    parser.add_argument(
        "--classifier-projection",
        type=int,
        default=None,
        metavar="P",
        help="transfer: also pretrain DNC classifiers with a projection head of P dimensions "
        "(dropped at transfer)",
    )
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(arguments.out)
    start = time.time()
    command = command_line("segmentation_compare.py", argv)
    report = {"command": command, "seeds": arguments.seeds, "overrides": overrides}
    sections = [f"`{command}`\n"]
    if "compare" in arguments.parts:
        report["compare"], text = head_comparison(arguments.seeds, out, overrides)
        checks = "\n".join(
            f"- {name}: {'yes' if met else 'NO'}"
            for name, met in report["compare"]["targets"].items()
        )
        sections += ["## DNC pixel head vs 1x1-conv softmax head\n", text, f"Targets:\n{checks}\n"]
    if "transfer" in arguments.parts:
        report["transfer"], text = transfer(
            arguments.seeds,
            out / "transfer",
            overrides,
            shlex.split(arguments.classifier_overrides),
            arguments.classifier_epochs or (None,),
            arguments.classifier_projection,
        )
        sections += ["## Transfer of a classification backbone\n", text]
    report["wall_seconds"] = time.time() - start
    write_results(arguments.results, report, "\n".join(sections))
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
