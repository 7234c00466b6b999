"""``deepnc predict`` against ``deepnc eval`` on the same images: images per second.

A Fashion-MNIST ResNet-20 DNC model (the small budget's recipe, seed 0; reused if any
identical finished run lies under ``runs/``) labels N test images twice: ``eval``'s pass
over the in-memory test tensors (``deepnc.engine.evaluation``), and ``predict`` over the
same images written as PNG files (decoding included, what a user's folder costs, with 0, 1
and 2 decoding worker processes: ``deepnc predict --workers``), each timed as the median of
7 rounds after a warm-up; the rounds interleave eval and every predict setting, so a
slower moment of a shared machine weighs on all of them alike, and each ratio is the
median of its rounds' ratios.

    python -m benchmarks.predict_throughput

Writes ``benchmarks/results/full/predict_throughput.{json,md}`` (``--results``).
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path

from PIL import Image
from torch.utils.data import DataLoader, Subset

from benchmarks.common import ROOT, command_line, training_parser, write_results
from deepnc.commands.predict import Predictor
from deepnc.data.normalise import to_pixels
from deepnc.engine.compare import run_once
from deepnc.engine.config import load_config
from deepnc.engine.evaluation import evaluate_split
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model

ROUNDS = 7


def seconds(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(
        __doc__.splitlines()[0], "bench_predict_throughput", "predict_throughput"
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config("fashion-mnist_resnet20", [*overrides, "--progress", "false"])
    run = Path(arguments.out) / "dnc-seed0"
    run_once(dataclasses.replace(config, seed=0, out_dir=str(run)), [ROOT / "runs"])
    model, checkpoint = load_trained_model(run)
    data = load_checkpoint_dataset(checkpoint)
    count = min(arguments.images, len(data.test))
    images = Subset(data.test, range(count))
    folder = Path(arguments.out) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = to_pixels(images[index][0], data.mean, data.std)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png")
    loader = DataLoader(images, arguments.batch_size, shuffle=False)
    run_eval = lambda: evaluate_split(model, loader, data, "cpu")  # noqa: E731
    predictors = {
        workers: Predictor(run, batch_size=arguments.batch_size, num_workers=workers)
        for workers in arguments.workers
    }
    steps = {"eval": run_eval} | {
        workers: (lambda p=predictor: list(p.predict([folder])))
        for workers, predictor in predictors.items()
    }
    for step in steps.values():
        step()  # warm-up
    times = {name: [] for name in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            times[name].append(seconds(step))
    eval_seconds = statistics.median(times["eval"])
    rows = []
    for workers in arguments.workers:
        ratios = [p / e for p, e in zip(times[workers], times["eval"], strict=True)]
        rows.append(
            {
                "workers": workers,
                "predict_images_per_second": count / statistics.median(times[workers]),
                "predict_over_eval_seconds": statistics.median(ratios),
            }
        )
    best = min(rows, key=lambda row: row["predict_over_eval_seconds"])
    row = {
        "images": count,
        "eval_images_per_second": count / eval_seconds,
        "predict": rows,
        "best_workers": best["workers"],
        "predict_over_eval_seconds": best["predict_over_eval_seconds"],
    }
    command = command_line("predict_throughput", argv)
    lines = [
        f"| {r['workers']} | {row['eval_images_per_second']:.0f} | "
        f"{r['predict_images_per_second']:.0f} | {r['predict_over_eval_seconds']:.3f} |"
        for r in rows
    ]
    table = (
        f"`{command}`\n\n{count} images.\n\n| decoding workers | eval (images/s) | predict from "
        "PNG files (images/s) | predict / eval time |\n| --- | --- | --- | --- |\n"
        + "\n".join(lines)
        + "\n"
    )
    write_results(arguments.results, {"command": command, "recipe": config.to_dict(), **row}, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
