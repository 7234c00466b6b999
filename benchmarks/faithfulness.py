"""Are the similarity maps faithful? Deletion and insertion curves against Grad-CAM and
against a random map, and the model-randomisation sanity check.

For each seed's DNC run of ``configs/fashion-mnist_resnet20.yaml`` (trained if missing,
reused if any identical finished run lies under ``runs/``) and N test images:

- three maps per image, for its predicted class: the similarity map of the deciding
  sub-centroid (``deepnc.explain.similarity_maps``, no gradient), Grad-CAM on the same
  feature map (captum's ``LayerGradCam`` on the global pooling's input, ReLU'd, for the
  predicted logit), and a random map (seeded);
- **deletion**: pixels are replaced by a baseline in the order of the map (upsampled to
  the image, most important first), in ``--steps`` equal parts, and the softmax
  probability of the predicted class is tracked; its area under the curve (mean over the
  steps, 0 to 1) is lower for a faithful map. **Insertion**: from the baseline, pixels
  are revealed in the same order; the area is higher for a faithful map;
- **the baseline** is chosen on a validation split before the test images are scored,
  and without looking at any map: among black (0), the training set's mean colour and a
  Gaussian blur of the image, the one that leaves the least evidence for the predicted
  class once every pixel is replaced (the lowest mean probability), measured on
  ``--images`` training-split images the model was not trained on (the recipe trains
  on a subset). Fashion-MNIST's backgrounds are black, so a black baseline leaves most
  of an image as it was;
- **the report's time**: ``deepnc explain`` of the first seed's run with maps for 16 test
  inputs, run twice; the second, whose training embeddings are cached, is timed;
- **sanity check** (Adebayo et al., 2018): the last stage of the backbone and the
  head's LayerNorm are re-initialised, and the Spearman rank correlation between each
  image's maps before and after is averaged: a map that explains the model changes (low
  correlation), an edge detector does not.

    python -m benchmarks.faithfulness

Writes ``benchmarks/results/full/faithfulness.{json,md}`` (``--results``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from captum.attr import LayerGradCam
from torchvision.transforms.v2.functional import gaussian_blur

from benchmarks.common import ROOT, command_line, training_parser, write_results
from deepnc.commands.explain import explain_checkpoint
from deepnc.data import load_dataset
from deepnc.engine.compare import run_once
from deepnc.engine.config import load_config
from deepnc.engine.restore import load_checkpoint_dataset, load_trained_model
from deepnc.explain.embedding_cache import CACHE_NAME
from deepnc.explain.similarity_maps import contribution_maps, find_global_pools, upsample
from deepnc.nn.hooks import single_dnc_head

METHODS = ("similarity map", "Grad-CAM", "random")
BASELINES = ("black", "mean", "blur")
REPORT_INPUTS = 16


def maps_of(model, images: torch.Tensor, method: str, seed: int) -> torch.Tensor:
    """``(N, h, w)`` map of each image for its predicted class."""
    head = single_dnc_head(model)
    with torch.no_grad():
        logits = model(images)
        predicted = logits.argmax(1)
        embedded = head.embed(_head_inputs(model, images))
        nearest = torch.einsum("nd,nkd->nk", embedded, head.subcentroids[predicted]).argmax(1)
    if method == "similarity map":
        return contribution_maps(model, images, head.subcentroids[predicted, nearest]).maps
    pool = find_global_pools(model)[-1]
    if method == "Grad-CAM":
        cam = LayerGradCam(model, pool).attribute(
            images, target=predicted, relu_attributions=True, attribute_to_layer_input=True
        )
        return cam[:, 0].detach()
    size = _head_feature_size(model, images)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(len(images), *size, generator=generator)


def _head_inputs(model, images):
    from deepnc.nn.hooks import captured_inputs

    with captured_inputs(single_dnc_head(model)) as inputs:
        model(images)
    return inputs[-1]


def _head_feature_size(model, images) -> tuple[int, int]:
    from deepnc.nn.hooks import captured_inputs

    with torch.no_grad(), captured_inputs(find_global_pools(model)[-1]) as inputs:
        model(images)
    return tuple(inputs[-1].shape[-2:])


def baseline_images(images: torch.Tensor, kind: str, mean, std) -> torch.Tensor:
    """``(N, C, H, W)``: what each normalised image's deleted pixels become."""
    if kind == "black":
        black = (0 - torch.tensor(mean)) / torch.tensor(std)
        return black.view(1, -1, 1, 1).expand_as(images)
    if kind == "mean":
        return torch.zeros_like(images)  # the training set's mean colour, once normalised
    if kind == "blur":
        sigma = images.shape[-1] / 8
        kernel = 2 * math.ceil(3 * sigma) + 1
        return gaussian_blur(images, [kernel, kernel], [sigma, sigma])
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


@torch.no_grad()
def evidence_left(model, images: torch.Tensor, baseline: torch.Tensor) -> float:
    """Mean probability of each image's predicted class once every pixel is replaced."""
    predicted = model(images).argmax(1)
    return float(model(baseline).softmax(1).gather(1, predicted[:, None]).mean())


def validation_images(checkpoint, trained, count: int) -> torch.Tensor:
    """``count`` training-split images the model was not trained on, unaugmented
    (``trained``: the checkpoint's dataset, :func:`load_checkpoint_dataset`)."""
    config = checkpoint.config
    whole = load_dataset(
        config["dataset"],
        root=config["data_root"],
        image_size=checkpoint.dataset["image_size"],
        augment=False,
        seed=config["seed"],
    ).train
    seen = set(getattr(trained.train, "indices", range(len(whole))))
    unseen = [index for index in range(len(whole)) if index not in seen][:count]
    if not unseen:
        raise ValueError("the model trained on the whole training split: no validation images")
    return torch.stack([whole[index][0] for index in unseen])


@torch.no_grad()
def curves(model, images, maps, baseline: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    """``{"deletion": (N, steps + 1), "insertion": ...}`` probability of the predicted
    class; ``baseline``: ``(N, C, H, W)``, what deleted pixels become."""
    predicted = model(images).argmax(1)
    order = upsample(maps, images.shape[-2:]).flatten(1).argsort(dim=1, descending=True)
    pixels = order.shape[1]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels).expand_as(order))  # each pixel's place
    rank = rank.view(len(images), 1, *images.shape[-2:])
    found = {"deletion": [], "insertion": []}
    for step in range(steps + 1):
        shown = rank < round(pixels * step / steps)  # the most important pixels so far
        for kind, keep in (("deletion", ~shown), ("insertion", shown)):
            changed = torch.where(keep, images, baseline)
            probabilities = model(changed).softmax(dim=1)
            found[kind].append(probabilities.gather(1, predicted[:, None])[:, 0])
    return {kind: torch.stack(values, dim=1) for kind, values in found.items()}


def spearman(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``(N,)`` Spearman rank correlation of two ``(N, h, w)`` maps, image by image."""
    ranks = [m.flatten(1).argsort(1).argsort(1).double() for m in (first, second)]
    centred = [r - r.mean(1, keepdim=True) for r in ranks]
    return (centred[0] * centred[1]).sum(1) / (
        centred[0].norm(dim=1) * centred[1].norm(dim=1)
    ).clamp_min(1e-12)


def randomised(model):
    """A copy with the backbone's last stage and the head's LayerNorm re-initialised."""
    copied = copy.deepcopy(model)
    stage = copied.layers[-(len(copied.layers) // 3) :]  # CIFAR ResNet: its third stage
    torch.manual_seed(1234)
    for module in [*stage.modules(), single_dnc_head(copied).norm]:
        if hasattr(module, "reset_parameters") and module is not copied:
            module.reset_parameters()
    return copied.eval()


def baseline_evidence(run: Path, count: int) -> dict[str, float]:
    """Per baseline, :func:`evidence_left` on the run's validation images."""
    model, checkpoint = load_trained_model(run)
    data = load_checkpoint_dataset(checkpoint)
    images = validation_images(checkpoint, data, count)
    return {
        kind: evidence_left(model, images, baseline_images(images, kind, data.mean, data.std))
        for kind in BASELINES
    }


def evaluate_seed(run: Path, count: int, steps: int, seed: int, baseline: str) -> dict:
    model, checkpoint = load_trained_model(run)
    data = load_checkpoint_dataset(checkpoint)
    images = torch.stack([data.test[i][0] for i in range(min(count, len(data.test)))])
    replaced = baseline_images(images, baseline, data.mean, data.std)
    result = {"images": len(images)}
    shuffled = randomised(model)
    for method in METHODS:
        maps = maps_of(model, images, method, seed)
        found = curves(model, images, maps, replaced, steps)
        result[method] = {
            "deletion_auc": float(found["deletion"].mean()),
            "insertion_auc": float(found["insertion"].mean()),
        }
        if method != "random":
            after = maps_of(shuffled, images, method, seed)
            result[method]["randomisation_spearman"] = float(spearman(maps, after).mean())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = training_parser(__doc__.splitlines()[0], "bench_faithfulness", "faithfulness")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=16)
    arguments, overrides = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = load_config(
        ROOT / "configs/fashion-mnist_resnet20.yaml", [*overrides, "--progress", "false"]
    )
    runs = {seed: Path(arguments.out) / f"dnc-seed{seed}" for seed in arguments.seeds}
    for seed, run in runs.items():
        run_once(dataclasses.replace(base, seed=seed, out_dir=str(run)), [ROOT / "runs"])
    # the baseline, chosen on validation images before any test image is scored
    evidence = {seed: baseline_evidence(run, arguments.images) for seed, run in runs.items()}
    selection = {kind: statistics.mean(evidence[seed][kind] for seed in runs) for kind in BASELINES}
    baseline = min(selection, key=selection.get)
    per_seed = {
        seed: evaluate_seed(run, arguments.images, arguments.steps, seed, baseline)
        for seed, run in runs.items()
    }
    first = Path(arguments.out) / f"dnc-seed{arguments.seeds[0]}"
    report_seconds = []
    (first / CACHE_NAME).unlink(missing_ok=True)  # left by an earlier run of this script
    for _ in range(2):  # the first embeds the training set and caches it
        start = time.perf_counter()
        explain_checkpoint(first, first / "report", test_samples=REPORT_INPUTS)
        report_seconds.append(time.perf_counter() - start)
    rows = []
    for method in METHODS:
        row = {"method": method}
        for key in ("deletion_auc", "insertion_auc", "randomisation_spearman"):
            values = [per_seed[s][method][key] for s in per_seed if key in per_seed[s][method]]
            if values:
                row[key] = values
                row[f"{key}_mean"] = statistics.mean(values)
                row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    command = command_line("faithfulness", argv)
    result = {
        "command": command,
        "recipe": base.to_dict(),
        "images": arguments.images,
        "steps": arguments.steps,
        "baseline": baseline,
        "baseline_evidence_left": selection,
        "seeds": list(per_seed),
        "rows": rows,
        "report_inputs": REPORT_INPUTS,
        "report_seconds_cached": report_seconds[1],
        "report_seconds_first": report_seconds[0],
    }
    table = markdown(result)
    write_results(arguments.results, result, table)
    print(table)
    return 0


def markdown(result: dict) -> str:
    choice = ", ".join(
        f"{kind} {value:.3f}" for kind, value in result["baseline_evidence_left"].items()
    )
    lines = [
        f"`{result['command']}`",
        "",
        f"Baseline: {result['baseline']} (evidence left on validation images: {choice}).",
        "",
        "| map | deletion AUC (lower is better) | insertion AUC (higher is better) | "
        "Spearman after randomisation |",
        "| --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        cells = [
            f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}" if f"{key}_mean" in row else "-"
            for key in ("deletion_auc", "insertion_auc", "randomisation_spearman")
        ]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"`deepnc explain` with maps for {result['report_inputs']} inputs: "
        f"{result['report_seconds_cached']:.1f} s with the training embeddings cached "
        f"({result['report_seconds_first']:.1f} s the first time).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
