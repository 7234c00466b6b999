"""What the DNC pixel head costs against the 1x1-conv softmax head, measured in one run.

Prints, and writes as JSON (``--results``, default ``benchmarks/results/full/``):

1. the whole training step (forward, backward, SGD, pixel clustering) of FCN and
   DeepLabV3 over a CIFAR-style ResNet-20 (the models of
   ``configs/fashion-scenes_*.yaml``) at 1x64x64, batch 16, C = 11, K = 10: DNC / 1x1
   conv time. Target: <= 1.10. The DNC head is the worst case: every labelled pixel
   counts as correctly classified, so every class present is clustered at every step;
2. the clustering update alone at ADE20K-like scale: C = 150, K = 10, D = 512 and a
   4x128x128 feature map (65,536 pixel features): the batched update vs a per-class
   Python loop, time and peak memory;
3. with ``--device cuda``, also an ADE20K-like training step: FCN-ResNet-18 at
   3x256x256, batch 8, C = 150.

The training steps are measured eager and, side by side, under ``torch.compile`` in
each mode of ``--compile`` (both models of a pair compiled the same way, the DNC head
seeded first so that it compiles as one graph): ``default`` on the CPU, ``default`` and
``reduce-overhead`` (CUDA graphs) on CUDA.

Both models of a pair share their weights and run interleaved round by round; each
figure is a median.

    python -m benchmarks.segmentation_overhead             # the committed figures (CPU)
    python -m benchmarks.segmentation_overhead --quick     # seconds: checks that it runs
    python -m benchmarks.segmentation_overhead --device cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

import deepnc
from benchmarks.common import FULL_RESULTS, command_line, write_results
from benchmarks.head_overhead import (
    AllCorrectHead,
    add_compile_argument,
    compile_modes,
    dense_clustering,
    describe,
    interleaved_medians,
    mode_label,
    ratio_row,
    training_step,
)
from deepnc.models.seg_models import create_segmentation_model

MODELS = {
    "fcn_resnet20": {"decoder_channels": 64},
    "deeplabv3_resnet20": {"decoder_channels": 64, "atrous_rates": (2, 4, 6)},
}


def _pair(name: str, num_classes: int, in_chans: int, options: dict, device: str):
    """A DNC model (worst-case head) and the 1x1-conv model with the same other weights."""
    torch.manual_seed(0)
    dnc = create_segmentation_model(name, num_classes=num_classes, in_chans=in_chans, **options)
    dnc.classifier.__class__ = AllCorrectHead
    linear = create_segmentation_model(
        name, num_classes=num_classes, in_chans=in_chans, head="linear", **options
    )
    shared = {k: v for k, v in dnc.state_dict().items() if not k.startswith("classifier")}
    linear.load_state_dict(shared, strict=False)
    return dnc.to(device), linear.to(device)


def step_ratio(what, name, options, shape, batch, num_classes, rounds, device, mode=None):
    dnc, linear = _pair(name, num_classes, shape[0], options, device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, *shape, generator=generator).to(device)
    masks = torch.randint(0, num_classes, (batch, *shape[1:]), generator=generator).to(device)
    deepnc.seed_heads(dnc, [(images, masks)])
    steps = {
        "softmax": training_step(linear, images, masks, mode),
        "dnc": training_step(dnc, images, masks, mode),
    }
    medians = interleaved_medians(steps, rounds=rounds, warmup=3)
    model, _, rest = what.partition(", ")
    what = f"{model}{mode_label(mode)}, {rest}"
    return {**ratio_row(what, medians), "device": device, "mode": mode or "eager"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds, no peak memory: a smoke run"
    )
    parser.add_argument("--rounds", type=int, default=21, help="timed rounds per figure")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--results",
        type=Path,
        help="results stem (default benchmarks/results/full/segmentation_overhead[_cuda])",
    )
    add_compile_argument(parser)
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    device = args.device
    cuda = device.startswith("cuda")
    modes = [None, *compile_modes(args, cuda)]  # None: eager
    name_of = torch.cuda.get_device_name if cuda else (lambda: platform.machine())
    results = {
        "command": command_line("segmentation_overhead.py", argv),
        "device": f"{name_of()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "training_step": [
            step_ratio(
                f"{name}, 1x64x64, batch 16, C=11, K=10: training step",
                name,
                options,
                (1, 64, 64),
                16,
                11,
                rounds,
                device,
                mode,
            )
            for mode in modes
            for name, options in MODELS.items()
        ],
        "dense_clustering_update": dense_clustering(
            max(rounds // 3, 2),
            num_pixels=4 * 128 * 128,
            device=device,
            label="a 4x128x128 feature map (65,536 pixels)",
            memory=not args.quick,
        ),
    }
    if cuda:
        results["training_step"] += [
            step_ratio(
                "fcn_resnet18, 3x256x256, batch 8, C=150, K=10: training step",
                "fcn_resnet18",
                {},
                (3, 256, 256),
                8,
                150,
                rounds,
                device,
                mode,
            )
            for mode in modes
        ]
    print(results["device"])
    for row in results["training_step"] + results["dense_clustering_update"]:
        print(describe(row, baseline="1x1 conv"))
    suffix = "_cuda" if cuda else ""
    write_results(args.results or FULL_RESULTS / f"segmentation_overhead{suffix}", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
