"""What the DNC head costs against the softmax head it replaces, measured in one run.

Prints, and writes as JSON (``--results``, default ``benchmarks/results/full/``):

1. the whole training step (forward, backward, SGD, sub-centroid update) of a
   CIFAR-style ResNet-20 on 1x28x28 inputs, batch 128, C = 10: DNC / softmax time;
2. the same at ImageNet-like head scale: torchvision ResNet-50 at 64x64, batch 64,
   C = 1000, K = 4, a memory of 64 features per class;
3. the clustering update alone at dense scale (C = 150, K = 10, D = 512, 32k pixel
   features): the batched update vs a per-class Python loop, time and peak memory;
4. inference latency of the whole ResNet-20 (batch 128): DNC / softmax.

The training steps (1, 2) and inference (4) are measured eager and, side by side, under
``torch.compile`` in each mode of ``--compile`` (both models of a pair compiled the same
way; the DNC heads are seeded first, so each compiles as one graph): ``default`` on the
CPU, ``default`` and ``reduce-overhead`` (CUDA graphs) on CUDA.

Both heads of a pair run the same network with the same weights, interleaved round by
round so that drifts of the machine hit both alike; each figure is a median.

    python -m benchmarks.head_overhead            # the figures in the README
    python -m benchmarks.head_overhead --quick    # seconds: checks that it runs (eager only)
    python -m benchmarks.head_overhead --device cuda
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

import deepnc
from benchmarks.common import FULL_RESULTS, command_line, status_bytes, write_results
from deepnc import DNCHead
from deepnc.engine.compile import COMPILE_MODES, compile_model
from deepnc.models import resnet20
from deepnc.models.outputs import main_and_aux
from deepnc.nn.convert import find_classifier, set_submodule
from deepnc.nn.update import own_class_scores
from deepnc.testing.reference import per_class_update


class AllCorrectHead(DNCHead):
    """Counts every sample as correctly classified, so every class present in a batch
    is clustered at every step: the most work the update can do (the worst case)."""

    @staticmethod
    def correctly_classified(class_scores, labels):
        return torch.ones_like(labels, dtype=torch.bool)


def compiled(model, mode: str | None):
    """``model`` itself (``mode`` None: eager) or the trainer's ``compile_model(model, mode)``."""
    return model if mode is None else compile_model(model, mode)


def add_compile_argument(parser: argparse.ArgumentParser) -> None:
    """``--compile MODE...``: the torch.compile modes measured beside eager."""
    parser.add_argument(
        "--compile",
        nargs="+",
        choices=("none", *COMPILE_MODES),
        help="torch.compile modes measured beside eager (default: 'default' on the CPU, "
        "'default reduce-overhead' on CUDA; 'none' with --quick)",
    )


def compile_modes(args: argparse.Namespace, cuda: bool) -> list[str]:
    """The modes of ``--compile``, or the defaults for the device and ``--quick``."""
    if args.compile:
        modes = args.compile
    elif args.quick:
        modes = []
    else:
        modes = ["default", "reduce-overhead"] if cuda else ["default"]
    return [mode for mode in modes if mode != "none"]


def mode_label(mode: str | None) -> str:
    """What a row's model is called: ``ResNet-20`` eager, ``ResNet-20 compiled`` and so on."""
    return "" if mode is None else f" compiled ({mode})" if mode != "default" else " compiled"


def interleaved_medians(steps: dict[str, Callable[[], object]], rounds: int, warmup: int):
    """Median seconds of each callable, run in turn ``rounds`` times after ``warmup``."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def training_step(model, images, labels, mode: str | None = None) -> Callable[[], None]:
    """One SGD step of ``model``, eager (``mode`` None) or compiled in ``mode``."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    has_head = bool(deepnc.dnc_heads(model))
    forward = compiled(model, mode)

    cuda = images.device.type == "cuda"

    def step() -> None:  # labels: (N,) classes, or (B, H, W) masks of a segmentation model
        if has_head:
            with deepnc.training_targets(model, labels):
                logits, _ = main_and_aux(forward(images))
        else:
            logits, _ = main_and_aux(forward(images))
        loss = F.cross_entropy(logits, labels)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if cuda:
            torch.cuda.synchronize()

    return step


def dnc_twin(model, **options):
    """A copy of ``model`` with the same weights whose classifier is a worst-case DNC head."""
    twin = copy.deepcopy(model)
    name, layer = find_classifier(twin)
    head = AllCorrectHead(layer.in_features, layer.out_features, **options)
    set_submodule(twin, name, head)
    return twin, head


def prefill(head: DNCHead) -> None:
    """Seed every class and fill every memory, as after the first epoch."""
    per_class = head.memory_size or 8
    labels = torch.arange(head.num_classes).repeat_interleave(per_class)
    head.update(torch.randn(len(labels), head.in_features), labels)
    head.update(torch.randn(len(labels), head.in_features), labels)


def step_ratio(
    what: str,
    softmax,
    images,
    labels,
    rounds: int,
    warmup: int,
    device: str = "cpu",
    mode: str | None = None,
) -> dict:
    """DNC / softmax time of a whole training step of ``softmax`` and its DNC twin."""
    dnc, head = dnc_twin(softmax, num_subcentroids=4, memory_size=64)
    prefill(head)
    softmax, dnc = softmax.to(device), dnc.to(device)
    images, labels = images.to(device), labels.to(device)
    steps = {
        "softmax": training_step(softmax, images, labels, mode),
        "dnc": training_step(dnc, images, labels, mode),
    }
    # compiled: the warm-up rounds also compile (and, for CUDA graphs, record)
    warmup = warmup if mode is None else max(warmup, 3)
    medians = interleaved_medians(steps, rounds=rounds, warmup=warmup)
    return {**ratio_row(what, medians), "mode": mode or "eager"}


def small_step_ratio(rounds: int, device: str = "cpu", mode: str | None = None) -> dict:
    torch.manual_seed(0)
    model = resnet20(num_classes=10, in_chans=1)
    images, labels = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    what = f"ResNet-20{mode_label(mode)}, 1x28x28, batch 128, C=10, K=4, memory 64: training step"
    return step_ratio(what, model, images, labels, rounds, warmup=2, device=device, mode=mode)


def imagenet_step_ratio(
    rounds: int, device: str = "cpu", size: int = 64, mode: str | None = None
) -> dict:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=1000)
    images, labels = torch.randn(64, 3, size, size), torch.randint(0, 1000, (64,))
    what = (
        f"ResNet-50{mode_label(mode)}, 3x{size}x{size}, batch 64, C=1000, K=4, memory 64: "
        "training step"
    )
    return step_ratio(what, model, images, labels, rounds, warmup=1, device=device, mode=mode)


def inference_ratio(rounds: int, device: str = "cpu", mode: str | None = None) -> dict:
    torch.manual_seed(0)
    softmax = resnet20(num_classes=10, in_chans=1).eval()
    dnc, head = dnc_twin(softmax, num_subcentroids=4, memory_size=64)
    prefill(head)
    softmax, dnc = softmax.to(device), dnc.to(device).eval()
    images = torch.randn(128, 1, 28, 28).to(device)

    def infer(model):
        forward = compiled(model, mode)

        def run():
            with torch.inference_mode():
                forward(images)
            if images.device.type == "cuda":
                torch.cuda.synchronize()

        return run

    medians = interleaved_medians(
        {"softmax": infer(softmax), "dnc": infer(dnc)}, rounds=rounds, warmup=3
    )
    what = f"ResNet-20{mode_label(mode)}, 1x28x28, batch 128: inference latency"
    return {**ratio_row(what, medians), "mode": mode or "eager"}


# ---------------------------------------------------------------- dense clustering
DENSE = dict(num_classes=150, num_subcentroids=10, dim=512, num_pixels=32_768)


def _dense_problem(num_pixels: int, device: str = "cpu"):
    generator = torch.Generator().manual_seed(0)
    c, k, d = (DENSE[key] for key in ("num_classes", "num_subcentroids", "dim"))
    bank = deepnc.SubCentroidBank(c, k, d, momentum=0.999).to(device)
    bank.subcentroids.copy_(F.normalize(torch.randn(c, k, d, generator=generator), dim=-1))
    bank.initialised.fill_(True)
    features = F.normalize(torch.randn(num_pixels, d, generator=generator), dim=-1).to(device)
    labels = torch.randint(0, c, (num_pixels,), generator=generator).to(device)
    return bank, features, labels


def _dense_step(
    kind: str, with_scores: bool, num_pixels: int, device: str = "cpu"
) -> Callable[[], object]:
    bank, features, labels = _dense_problem(num_pixels, device)
    scores = own_class_scores(features, labels, bank.subcentroids) if with_scores else None
    if kind == "batched":
        step = lambda: bank.update(features, labels, scores=scores)  # noqa: E731
    else:
        step = lambda: per_class_update(  # noqa: E731
            bank.subcentroids, features, labels, momentum=bank.momentum, scores=scores
        )
    if device.startswith("cuda"):
        return lambda: (step(), torch.cuda.synchronize())
    return step


def _peak_memory_child(kind: str, with_scores: bool, num_pixels: int, queue) -> None:
    step = _dense_step(kind, with_scores, num_pixels)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # Linux: reset the peak resident size (VmHWM) to now
    before = status_bytes("VmRSS")
    step()  # a first call: every byte it needs comes fresh from the system
    queue.put(status_bytes("VmHWM") - before)


def peak_memory_mib(kind: str, with_scores: bool, num_pixels: int, device: str = "cpu") -> float:
    """How far one update raises the memory above its data: the resident size of a fresh
    process on CPU, ``torch.cuda.max_memory_allocated`` on CUDA."""
    if device.startswith("cuda"):
        step = _dense_step(kind, with_scores, num_pixels, device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_peak_memory_child, args=(kind, with_scores, num_pixels, queue)
    )
    process.start()
    result = queue.get()
    process.join()
    return result / 2**20


def dense_clustering(
    rounds: int,
    num_pixels: int = DENSE["num_pixels"],
    device: str = "cpu",
    label: str = "",
    memory: bool = True,
) -> list[dict]:
    """The batched update against a per-class loop at C=150, K=10, D=512: time and, with
    ``memory``, peak memory (a fresh process per figure on CPU: seconds each)."""
    rows = []
    pixels = label or f"{num_pixels} pixels"
    for with_scores, source in [
        (True, "own-class scores from the forward, as in the head"),
        (False, "from features alone (explicit update())"),
    ]:
        steps = {
            kind: _dense_step(kind, with_scores, num_pixels, device) for kind in ("loop", "batched")
        }
        medians = interleaved_medians(steps, rounds=rounds, warmup=1)
        rows.append(
            {
                "what": f"clustering update, C=150, K=10, D=512, {pixels}, {source}",
                "device": device,
                "batched_s": medians["batched"],
                "loop_s": medians["loop"],
                "speedup": medians["loop"] / medians["batched"],
                **{
                    f"{kind}_peak_mib": peak_memory_mib(kind, with_scores, num_pixels, device)
                    if memory
                    else None
                    for kind in ("batched", "loop")
                },
            }
        )
    return rows


def describe(row: dict, baseline: str = "softmax") -> str:
    """One printed line for a ratio row or a clustering row."""
    if "ratio" in row:
        return (
            f"{row['what']}: {baseline} {row['softmax_s'] * 1e3:.1f} ms, "
            f"DNC {row['dnc_s'] * 1e3:.1f} ms, DNC / {baseline} = {row['ratio']:.3f}"
        )

    def peak(kind: str) -> str:
        value = row[f"{kind}_peak_mib"]
        return "" if value is None else f" (peak +{value:.0f} MiB)"

    return (
        f"{row['what']}: batched {row['batched_s'] * 1e3:.1f} ms{peak('batched')}, per-class "
        f"loop {row['loop_s'] * 1e3:.1f} ms{peak('loop')}, speedup {row['speedup']:.1f}x"
    )


def ratio_row(what: str, medians: dict[str, float]) -> dict:
    return {
        "what": what,
        "softmax_s": medians["softmax"],
        "dnc_s": medians["dnc"],
        "ratio": medians["dnc"] / medians["softmax"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds, no peak memory: a smoke run"
    )
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per figure")
    parser.add_argument(
        "--results",
        type=Path,
        help="results stem (default benchmarks/results/full/head_overhead[_cuda])",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_compile_argument(parser)
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    device = args.device
    cuda = device.startswith("cuda")
    modes = compile_modes(args, cuda)
    name = torch.cuda.get_device_name() if cuda else platform.machine()
    results = {
        "command": command_line("head_overhead.py", argv),
        "device": f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "small_training_step": small_step_ratio(rounds, device),
        "imagenet_head_training_step": imagenet_step_ratio(max(rounds // 2, 2), device),
        "dense_clustering_update": dense_clustering(
            max(rounds // 3, 2), device=device, memory=not args.quick
        ),
        "inference": inference_ratio(rounds * 2, device),
    }
    if cuda:  # an ImageNet-sized input only a GPU trains in reasonable time
        results["imagenet_224_training_step"] = imagenet_step_ratio(rounds, device, size=224)
    for mode in modes:
        key = mode.replace("-", "_")
        results[f"small_training_step_{key}"] = small_step_ratio(rounds, device, mode)
        results[f"imagenet_head_training_step_{key}"] = imagenet_step_ratio(
            max(rounds // 2, 2), device, mode=mode
        )
        if cuda:
            results[f"imagenet_224_training_step_{key}"] = imagenet_step_ratio(
                rounds, device, size=224, mode=mode
            )
        results[f"inference_{key}"] = inference_ratio(rounds * 2, device, mode)
    print(results["device"])
    rows = [
        row
        for key, value in results.items()
        if key not in ("command", "device")
        for row in (value if isinstance(value, list) else [value])
    ]
    for row in rows:
        print(describe(row))
    suffix = "_cuda" if cuda else ""
    write_results(args.results or FULL_RESULTS / f"head_overhead{suffix}", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
