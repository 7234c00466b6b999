"""Report sections on cost: DNC / softmax time of training steps and inference, and the
clustering update's time and memory, on every device measured (CPU, and a GPU when the
results hold ``*_cuda`` files); and whether segmentation data streamed from files keeps
up with training."""

from __future__ import annotations

from pathlib import Path

from benchmarks import report_figures as figures
from benchmarks.report_format import Results, claim, code, image, opening, pm, table

PAPER_TRAINING_RATIO = 1.05


def _device(data: dict) -> str:
    described = data.get("device", data.get("machine"))
    return described if isinstance(described, str) else "-"


def _ratio_rows(data: dict) -> list[dict]:
    """Every DNC / baseline time row of an overhead file, in file order."""
    rows = []
    for key, value in data.items():
        for row in value if isinstance(value, list) else [value]:
            if isinstance(row, dict) and "ratio" in row:
                kind = "inference" if key.startswith("inference") else "training"
                rows.append({**row, "kind": kind})
    return rows


def _clustering_rows(data: dict) -> list[dict]:
    value = data.get("dense_clustering_update", [])
    return value if isinstance(value, list) else [value]


def _time_and_peak(row: dict, kind: str) -> str:
    peak = row[f"{kind}_peak_mib"]  # None: not measured (a --quick run)
    return f"{1e3 * row[f'{kind}_s']:.1f} ms" + ("" if peak is None else f", +{peak:.0f} MiB")


def cost(results: Results, report_dir: Path, draw: bool, appendix=False) -> list[str]:
    candidates = ("head_overhead", "segmentation_overhead")
    candidates += tuple(f"{name}_cuda" for name in candidates)
    names = [name for name in candidates if results.get(name)]
    lines = opening(
        "5. Cost: DNC against softmax, and the clustering update",
        names,
        "head_overhead",
        results,
        appendix,
    )
    if not names:
        return lines
    lines += [
        "Both heads of a pair run the same network with the same weights, interleaved round "
        "by round (medians). The DNC heads count every sample (pixel) as correctly "
        "classified, so every class present is clustered at every step: the most work the "
        "update can do.",
        "",
    ]
    ratio_rows, clustering_rows, labels, ratios, kinds = [], [], [], [], []
    for name in names:
        data = results.get(name)
        device = _device(data)
        # files written before scripts recorded their command: the full budget's step
        fallback = f"python benchmarks/{name.removesuffix('_cuda')}.py"
        command = data.get("command", fallback + (" --device cuda" if "cuda" in name else ""))
        for row in _ratio_rows(data):
            baseline = "1x1 conv" if name.startswith("segmentation") else "softmax"
            ratio_rows.append(
                [
                    row["what"],
                    device,
                    f"{1e3 * row['softmax_s']:.1f} ms ({baseline})",
                    f"{1e3 * row['dnc_s']:.1f} ms",
                    f"**{row['ratio']:.3f}**",
                    code(command),
                ]
            )
            model, size = [*row["what"].split(":")[0].split(", "), ""][:2]
            action = "inference" if row["kind"] == "inference" else "training step"
            labels.append(f"{model}, {size} {action} [{'GPU' if 'cuda' in name else 'CPU'}]")
            ratios.append(row["ratio"])
            kinds.append(row["kind"])
        for row in _clustering_rows(data):
            clustering_rows.append(
                [
                    row["what"],
                    device,
                    _time_and_peak(row, "loop"),
                    _time_and_peak(row, "batched"),
                    f"{row['speedup']:.1f}x",
                    code(command),
                ]
            )
    lines += table(
        ["measurement", "device", "baseline", "DNC", "DNC / baseline", "command"], ratio_rows
    )
    lines += [
        "The clustering update alone, batched over classes (as the head runs it) against a "
        "per-class Python loop (`deepnc.testing.reference.per_class_update`, which the tests check "
        'it agrees with); "+MiB" is how far one update raises the peak memory:',
        "",
        *table(
            ["update", "device", "per-class loop", "batched", "speedup", "command"],
            clustering_rows,
        ),
    ]
    if draw:
        figures.ratio_bars(results.figure("cost"), labels, ratios, PAPER_TRAINING_RATIO)
    lines += image(results, "cost", report_dir, "DNC / baseline time ratios")
    training = [r for r, kind in zip(ratios, kinds, strict=True) if kind == "training"]
    inference = [r for r, kind in zip(ratios, kinds, strict=True) if kind == "inference"]
    within = sum(r <= PAPER_TRAINING_RATIO for r in training)
    largest = max(
        (r, label)
        for r, label, kind in zip(ratios, labels, kinds, strict=True)
        if kind == "training"
    )
    here = (
        f"{within} of {len(training)} training-step ratios are within the paper's 5%; the "
        f"largest is {largest[0]:.2f}x ({largest[1]})"
        + (
            f", and inference costs {min(inference):.2f}x to {max(inference):.2f}x"
            if inference
            else ""
        )
        + "."
    )
    return lines + claim("cost", here)


def segmentation_data(results: Results, report_dir: Path, draw: bool, appendix=False) -> list[str]:
    """Section 4b: segmentation streamed from files (benchmarks/segmentation_data.py)."""
    data = results.get("segmentation_data")
    lines = opening(
        "4b. Segmentation from files: streaming data, a non-square set",
        data,
        "segmentation_data",
        results,
        appendix,
    )
    if not data:
        return lines
    loading = data["throughput"]
    rows = [
        [
            str(loading["images"]),
            str(loading["workers"]),
            str(loading["batch_size"]),
            f"{loading['loader_images_per_second']:.1f}",
            f"{loading['loader_seconds_per_batch']:.3f}",
            f"{loading['train_step_seconds']:.3f}",
        ]
    ]
    heads = {row["head"]: row for row in data["non_square"]["rows"]}
    scored = [
        [
            "DNC" if head == "dnc" else "1x1 conv",
            pm(row["miou_mean"], row["miou_std"]),
            ", ".join(f"{v:.2f}" for v in row["miou"]),
        ]
        for head, row in heads.items()
    ]
    side = loading["crop"]
    lines += [
        f"Synthetic image/mask pairs as PNG files, read by the training loaders themselves "
        f"(seeded per item, persistent workers) with the full pipeline ({side}x{side} crops "
        "around a random rescale, the class cap, flip, photometric distortion), against one "
        "FCN-ResNet-20 training step of the same batch on this machine:",
        "",
        *table(
            [
                "images in the epoch",
                "workers",
                "batch",
                "loader (images/s)",
                "loader (s / batch)",
                "training step (s)",
            ],
            rows,
        ),
        "fashion-scenes canvases (real Fashion-MNIST items) cropped to 64x96 and 80x96, "
        "written to one `images/` + `masks/` folder and trained from it with no manual split "
        "(20% held out by the seed); FCN-ResNet-20, 64x64 crops, scored at each image's own "
        "size:",
        "",
        *table(["head", "mIoU (%)", "per seed"], scored),
        f"Command: {code(data['command'])}",
        "",
    ]
    keeps_up = loading["loader_seconds_per_batch"] <= loading["train_step_seconds"]
    verdict = (
        f"a batch of {loading['batch_size']} loads in {loading['loader_seconds_per_batch']:.2f} s "
        f"with {loading['workers']} workers against a {loading['train_step_seconds']:.2f} s "
        "training step, so the data "
        + ("keeps up" if keeps_up else "does not keep up")
        + "; on the non-square folder DNC minus 1x1 conv is "
        + (
            f"{heads['dnc']['miou_mean'] - heads['linear']['miou_mean']:+.2f} mIoU"
            if {"dnc", "linear"} <= set(heads)
            else "not measured"
        )
        + "."
    )
    return lines + claim("no_claim", verdict)


def checkpoint_cost(results: Results, report_dir: Path, draw: bool, appendix=False) -> list[str]:
    """Section 5b: what a checkpoint save costs (benchmarks/checkpoint_cost.py)."""
    data = results.get("checkpoint_cost")
    lines = opening(
        "5b. Checkpoints: what a save costs", data, "checkpoint_cost", results, appendix
    )
    if not data:
        return lines
    minutes = data["default_interval_seconds"] / 60
    rows = [
        [
            f"every {minutes:.0f} minutes (the default)",
            f"{100 * data['share_at_default_interval']:.3f}%",
        ],
        ["every epoch", f"{100 * data['share_at_every_epoch']:.3f}%"],
        ["every 100 steps", f"{100 * data['share_every_100_steps']:.3f}%"],
    ]
    lines += [
        f"The Fashion-MNIST ResNet-20 recipe: a checkpoint of the run's whole state "
        f"({data['checkpoint_bytes'] / 1e6:.2f} MB: model, optimiser, scheduler, every "
        f"process's generators) saves in {1000 * data['save_seconds']:.1f} ms through the "
        f"rotation of the run folder; a training step takes {1000 * data['step_seconds']:.0f} "
        f"ms ({data['steps_per_epoch']} steps an epoch). Share of training time:",
        "",
        *table(["checkpoint", "share of training time"], rows),
        f"Command: {code(data['command'])}",
        "",
    ]
    share = data["share_at_default_interval"]
    verdict = f"a save costs {100 * share:.3f}% of training time at the default interval " + (
        "(this library's target: at most 2%)." if share <= 0.02 else "(over the 2% target)."
    )
    return lines + claim("no_claim", verdict)


def many_classes(results: Results, report_dir: Path, draw: bool, appendix=False) -> list[str]:
    """Section 5c: the head sharded across processes (benchmarks/many_classes.py) and its
    memory in half precision (benchmarks/memory_dtype.py)."""
    data = results.get("many_classes")
    lines = opening(
        "5c. Very many classes: the head sharded across processes",
        data,
        "many_classes",
        results,
        appendix,
    )
    if not data:
        return lines
    rows = [
        [
            row["method"],
            f"{row['classes']:,}",
            row["world"],
            f"{1000 * row['step_seconds']:.0f}",
            f"{row['state_bytes'] / 2**20:,.0f}",
            f"{row['peak_bytes'] / 2**20:,.0f}",
        ]
        for row in data["rows"]
    ]
    summary, check = data["summary"], data["accuracy"]
    lines += [
        f"Synthetic head inputs (D = {data['dim']}, a global batch of {data['batch']} split over "
        f"the processes), K = {data['subcentroids']}, a memory of {data['memory']} per class, "
        "on gloo processes of this machine (2 cores shared: a step on 4 processes is not "
        "faster). `dnc`: `ShardedDNCHead`; `linear-ck`: a sharded cosine softmax layer with "
        "C x K outputs (the same matmul, the floor for K sub-centroids); `softmax`: the "
        "Partial FC layer (C outputs); `dnc-sampled`: `sample_rate=0.1`. State: the method's "
        "tensors per process (parameters, gradients, buffers, optimiser state); peak: the "
        "process's resident high-water mark during its steps.",
        "",
        *table(
            [
                "method",
                "C",
                "processes",
                "step (ms)",
                "state per process (MiB)",
                "peak per process (MiB)",
            ],
            rows,
        ),
        f"Accuracy with many classes ({check['classes']:,}-class Gaussian mixture, a linear "
        f"backbone, {check['steps']} steps, the same start and batches): one unsharded head "
        f"{100 * check['unsharded_accuracy']:.2f}%, sharded on {check['processes']} processes "
        f"under DDP {100 * check['sharded_accuracy']:.2f}% (largest sub-centroid difference "
        f"{check['max_subcentroid_difference']:.1e}: float rounding of the DDP average).",
        "",
        f"Command: {code(data['command'])}",
        "",
    ]
    dtype = results.get("memory_dtype")
    if dtype:
        cells = ", ".join(
            f"{r['memory_dtype']} {r['mean']:.2f} ± {r['std']:.2f}" for r in dtype["rows"]
        )
        lines += [
            f"Memory in half precision (Fashion-MNIST ResNet-20, small budget, test "
            f"top-1, {len(dtype['seeds'])} seeds): {cells}. Command: "
            f"{code(dtype['command'])}",
            "",
        ]
    largest, ratios = summary["largest_classes"], summary["state_times_w_over_one"]
    spread = max(abs(value - 1.0) for value in ratios.values())
    step = summary["dnc_over_linear_ck"]
    slowest = max(step.values())
    verdict = (
        f"at C = {largest:,} the head's state per process is 1/W of one process's within "
        f"{100 * spread:.3f}%; the sharded DNC step takes {min(step.values()):.2f}-{slowest:.2f}x "
        f"the sharded C x K softmax layer's ({'within' if slowest <= 1.3 else 'over'} this "
        "library's 1.3x target)"
    )
    growth = summary.get("growth", {})
    if "dnc" in growth and "linear-ck" in growth:
        low, high = summary["growth_classes"]
        verdict += (
            f"; from C = {low:,} to {high:,} one process's step grows {growth['dnc']:.1f}x "
            f"(the C x K layer's {growth['linear-ck']:.1f}x)"
        )
    return lines + claim("no_claim", verdict + ".")
