"""Very many classes: the DNC head sharded across processes, against a sharded softmax.

Synthetic head inputs (D = 512, a global batch of 256 split over the processes), K = 4
sub-centroids and a memory of L = 16 per class, on W = 1, 2 and 4 gloo processes of this
machine, each process given ``cpus // W`` threads. For every class count C and W, one
training step of the head alone (forward, backward, sub-centroid update, an SGD step of
its parameters), timed as a median after warm-up, and each process's head state and
peak memory, beside:

- ``linear-ck``: a sharded cosine softmax layer with C x K outputs, trained by SGD with
  momentum (the Partial FC form): the same scoring matmul as K sub-centroids, the floor;
- ``softmax``: the same with C outputs (Partial FC itself);
- ``nn.Linear``: one process, an ``nn.Linear(D, C)`` softmax layer and its SGD step.

Peak memory is the process's resident high-water mark during the method's steps, less
its resident size before the method was built: the state, the steps' activations and
PyTorch's own overhead, not the interpreter nor the transients of building the state.
Then an accuracy check with many classes: a 2,000-class Gaussian mixture learnt by a
linear backbone and the head, once by one process with an unsharded head and once by two
with the sharded head under DDP, from the same start and the same global batches.

    python -m benchmarks.many_classes               # C = 1k, 10k, 100k; about 11 minutes
    python -m benchmarks.many_classes --quick       # seconds: C = 1,000, W = 1 and 2

Writes ``benchmarks/results/full/many_classes.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from benchmarks.common import FULL_RESULTS, command_line, status_bytes, write_results
from deepnc import DNCHead, ShardedClassifier, ShardedDNCHead, exclude_shards_from_ddp
from deepnc.nn import distributed
from deepnc.nn.shard_state import StatePiece
from deepnc.nn.sharded_loss import shard_range, sharded_cross_entropy

D, K, L, BATCH, TAU = 512, 4, 16, 256, 0.1


class ShardedCosineSoftmax(nn.Module):
    """A sharded normalised linear layer with ``outputs_per_class`` outputs per class
    (each process owns its classes' rows), trained by SGD: Partial FC's layer. With
    several outputs per class the class score is their maximum, as K sub-centroids'."""

    def __init__(self, num_classes: int, outputs_per_class: int) -> None:
        super().__init__()
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.start, self.end = shard_range(num_classes, self.rank, self.world)
        self.per_class = outputs_per_class
        rows = (self.end - self.start) * outputs_per_class
        self.weight = nn.Parameter(F.normalize(torch.randn(rows, D), dim=1))

    def training_step(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        gathered = distributed.all_gather_rows_with_grad(F.normalize(features, dim=1))
        labels = distributed.all_gather_rows(targets)
        cosines = gathered @ F.normalize(self.weight, dim=1).T
        scores = cosines.unflatten(1, (self.end - self.start, self.per_class)).amax(dim=-1)
        local = labels - self.start
        owned = (local >= 0) & (local < self.end - self.start)
        columns = torch.where(owned, local, -1)
        return sharded_cross_entropy(
            scores / TAU, columns, scores.detach(), self.start, scale=1 / TAU, num_scored=1
        ).loss


def build(method: str, num_classes: int, sample_rate: float):
    """``(module, step(features, targets) -> loss, optimiser)`` of one method."""
    if method.startswith("dnc"):
        head = ShardedDNCHead(
            D, num_classes, num_subcentroids=K, memory_size=L, tau=TAU, sample_rate=sample_rate
        )
        steady(head)
        return head, lambda x, y: head.training_step(x, y).loss, None
    if method == "nn.Linear":
        layer = nn.Linear(D, num_classes)
        return layer, lambda x, y: F.cross_entropy(layer(x), y), layer
    layer = ShardedCosineSoftmax(num_classes, K if method == "linear-ck" else 1)
    return layer, layer.training_step, layer


@torch.no_grad()
def steady(head: ShardedDNCHead) -> None:
    """Every class seeded and every memory full: the head's steady state."""
    bank, memory = head.bank, head.memory
    bank.subcentroids = F.normalize(torch.randn_like(bank.subcentroids), dim=-1)
    bank.initialised.fill_(True)
    bank.mark_seeded()
    memory.features.copy_(F.normalize(torch.randn_like(memory.features), dim=-1))
    memory.count.fill_(L)
    head._checks_left = 0


def state_bytes(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of the method's state: parameters, their gradients, buffers, optimiser state."""
    tensors = [*module.parameters(), *module.buffers()]
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    if optimizer is not None:
        for state in optimizer.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v) and v.dim()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _worker(rank: int, world: int, init: str, job: dict, out: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        result = measure(rank, world, job)
        gathered = distributed.all_gather_objects(result)
        if rank == 0:
            torch.save(gathered, out)
    finally:
        dist.destroy_process_group()


def measure(rank: int, world: int, job: dict) -> dict:
    torch.manual_seed(rank)
    before = status_bytes("VmRSS")
    module, step, optimizer_of = build(job["method"], job["classes"], job["sample_rate"])
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark of the steps only
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9) if params else None
    per_rank = BATCH // world
    times = []
    for index in range(job["warmup"] + job["rounds"]):
        features = torch.randn(per_rank, D, requires_grad=True)
        targets = torch.randint(0, job["classes"], (per_rank,))
        distributed.barrier()
        start = time.perf_counter()
        loss = step(features, targets)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)
        distributed.barrier()
        if index >= job["warmup"]:
            times.append(time.perf_counter() - start)
    del optimizer_of
    return {
        "step_seconds": statistics.median(times),
        "state_bytes": state_bytes(module, optimizer),
        "peak_bytes": status_bytes("VmHWM") - before,
    }


def run_job(job: dict) -> dict:
    """One method at one class count on ``job["world"]`` processes: the worst process."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.pt")
        arguments = (job["world"], os.path.join(folder, "init"), job, out)
        mp.spawn(_worker, args=arguments, nprocs=job["world"])
        ranks = torch.load(out, weights_only=True)
    return {
        **job,
        "step_seconds": max(r["step_seconds"] for r in ranks),
        "state_bytes": max(r["state_bytes"] for r in ranks),
        "peak_bytes": max(r["peak_bytes"] for r in ranks),
    }


# ------------------------------------------------------------------ accuracy check
MIXTURE_CLASSES, MIXTURE_DIM, ACCURACY_STEPS, TEST_SIZE = 2000, 64, 60, 4000


def mixture(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` samples of a Gaussian mixture, one unit-norm centre per class."""
    fixed = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(MIXTURE_CLASSES, MIXTURE_DIM, generator=fixed), dim=1)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, MIXTURE_CLASSES, (count,), generator=generator)
    noise = torch.randn(count, MIXTURE_DIM, generator=generator) * 0.08
    return centres[labels] + noise, labels


def start_state() -> tuple[nn.Linear, dict]:
    """The backbone and the warm-started unsharded head state both runs start from."""
    torch.manual_seed(0)
    backbone = nn.Linear(MIXTURE_DIM, MIXTURE_DIM)
    head = DNCHead(MIXTURE_DIM, MIXTURE_CLASSES, num_subcentroids=K, memory_size=L)
    features, labels = mixture(8 * MIXTURE_CLASSES, seed=1)
    with torch.no_grad():
        head.fit(backbone(features), labels)
    return backbone, head.state_dict()


def train_unsharded(steps: int) -> dict:
    backbone, state = start_state()
    head = DNCHead(MIXTURE_DIM, MIXTURE_CLASSES, num_subcentroids=K, memory_size=L)
    head.load_state_dict(state)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.05)
    for step in range(steps):
        features, labels = mixture(BATCH, seed=100 + step)
        F.cross_entropy(head(backbone(features), labels), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    head.eval()
    features, labels = mixture(TEST_SIZE, seed=7)
    with torch.no_grad():
        predicted = head(backbone(features)).argmax(1)
    return {
        "accuracy": float((predicted == labels).float().mean()),
        "subcentroids": head.bank.subcentroids,
    }


def _accuracy_worker(rank: int, world: int, init: str, out: str, steps: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        backbone, state = start_state()
        head = ShardedDNCHead(MIXTURE_DIM, MIXTURE_CLASSES, num_subcentroids=K, memory_size=L)
        head.load_pieces([StatePiece.from_state_dict(state)])
        model = ShardedClassifier(backbone, head)
        exclude_shards_from_ddp(model)
        ddp = nn.parallel.DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
        rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        for step in range(steps):
            features, labels = mixture(BATCH, seed=100 + step)
            ddp(features[rows], labels[rows]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        features, labels = mixture(TEST_SIZE, seed=7)
        rows = slice(rank * TEST_SIZE // world, (rank + 1) * TEST_SIZE // world)
        with torch.no_grad():
            _, top = head.topk(backbone(features[rows]), 1)
        hits = distributed.all_reduce((top[:, 0] == labels[rows]).sum(), "sum")
        shards = distributed.all_gather_objects(head.bank.subcentroids)
        if rank == 0:
            torch.save(
                {"accuracy": float(hits) / TEST_SIZE, "subcentroids": torch.cat(shards)}, out
            )
    finally:
        dist.destroy_process_group()


def accuracy_check(world: int = 2, quick: bool = False) -> dict:
    steps = 5 if quick else ACCURACY_STEPS
    unsharded = train_unsharded(steps)
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.pt")
        arguments = (world, os.path.join(folder, "init"), out, steps)
        mp.spawn(_accuracy_worker, args=arguments, nprocs=world)
        sharded = torch.load(out, weights_only=True)
    difference = (sharded["subcentroids"] - unsharded["subcentroids"]).abs().max()
    return {
        "classes": MIXTURE_CLASSES,
        "steps": steps,
        "processes": world,
        "unsharded_accuracy": unsharded["accuracy"],
        "sharded_accuracy": sharded["accuracy"],
        "max_subcentroid_difference": float(difference),
    }


# ----------------------------------------------------------------------- driver
def jobs(quick: bool, rounds: int) -> list[dict]:
    classes = [1000] if quick else [1000, 10_000, 100_000]
    worlds = [1, 2] if quick else [1, 2, 4]
    common = {"warmup": 1 if quick else 2, "rounds": 2 if quick else rounds, "sample_rate": 1.0}
    methods = ("dnc", "linear-ck") if quick else ("dnc", "linear-ck", "softmax")
    found = []
    for num_classes in classes:
        for world in worlds:
            for method in methods:
                found.append({"method": method, "classes": num_classes, "world": world})
        if num_classes == classes[-1] and not quick:
            for world in worlds:
                found.append(
                    {
                        "method": "dnc-sampled",
                        "classes": num_classes,
                        "world": world,
                        "sample_rate": 0.1,
                    }
                )
    for num_classes in [100, *classes] if not quick else classes:
        found.append({"method": "nn.Linear", "classes": num_classes, "world": 1})
        if num_classes == 100:  # the single-process growth from 100 classes
            found += [{"method": m, "classes": 100, "world": 1} for m in ("dnc", "linear-ck")]
    return [{**common, **job} for job in found]


def summarise(rows: list[dict]) -> dict:
    """The targets: state per process against 1/W, the step against linear-ck, the growth."""

    def find(method, classes, world):
        return next(
            (
                r
                for r in rows
                if (r["method"], r["classes"], r["world"]) == (method, classes, world)
            ),
            None,
        )

    largest = max(r["classes"] for r in rows)
    worlds = sorted({r["world"] for r in rows})
    one = find("dnc", largest, 1)
    memory_ratios = {
        str(w): find("dnc", largest, w)["state_bytes"] * w / one["state_bytes"] for w in worlds
    }
    step_ratios = {
        str(w): find("dnc", largest, w)["step_seconds"]
        / find("linear-ck", largest, w)["step_seconds"]
        for w in worlds
    }
    growth = {}
    small = min(r["classes"] for r in rows if r["world"] == 1)
    big = max(r["classes"] for r in rows if r["world"] == 1 and r["classes"] <= 10_000)
    for method in ("dnc", "linear-ck", "nn.Linear"):
        low, high = find(method, small, 1), find(method, big, 1)
        if low and high:
            growth[method] = high["step_seconds"] / low["step_seconds"]
    return {
        "largest_classes": largest,
        "state_times_w_over_one": memory_ratios,
        "dnc_over_linear_ck": step_ratios,
        "growth": growth,
        "growth_classes": [small, big],
    }


def markdown(report: dict) -> str:
    header = "| method | C | processes | step (ms) | state (MiB) | peak (MiB) |"
    lines = [f"`{report['command']}`", "", header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in report["rows"]:
        lines.append(
            f"| {row['method']} | {row['classes']:,} | {row['world']} | "
            f"{1000 * row['step_seconds']:.1f} | {row['state_bytes'] / 2**20:.1f} | "
            f"{row['peak_bytes'] / 2**20:.1f} |"
        )
    check = report["accuracy"]
    lines += [
        "",
        f"Accuracy check ({check['classes']:,} classes, {check['steps']} steps): "
        f"unsharded {100 * check['unsharded_accuracy']:.2f}%, sharded on "
        f"{check['processes']} processes {100 * check['sharded_accuracy']:.2f}%, largest "
        f"sub-centroid difference {check['max_subcentroid_difference']:.1e}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="C = 1,000 on 1 and 2 processes")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per job")
    parser.add_argument("--results", default=str(FULL_RESULTS / "many_classes"))
    arguments = parser.parse_args(argv)
    rows = []
    for job in jobs(arguments.quick, arguments.rounds):
        rows.append(run_job(job))
        row = rows[-1]
        print(
            f"{row['method']:>11} C={row['classes']:>7,} W={row['world']} "
            f"step {1000 * row['step_seconds']:8.1f} ms  state "
            f"{row['state_bytes'] / 2**20:8.1f} MiB  peak {row['peak_bytes'] / 2**20:8.1f} MiB",
            flush=True,
        )
    report = {
        "command": command_line("many_classes", argv),
        "batch": BATCH,
        "dim": D,
        "subcentroids": K,
        "memory": L,
        "rows": rows,
        "summary": summarise(rows),
        "accuracy": accuracy_check(quick=arguments.quick),
    }
    text = markdown(report)
    write_results(arguments.results, report, text)
    print(text)
    print(report["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
