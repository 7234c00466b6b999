"""The DNC head alone at ImageNet scale: eager against compiled, class slots against a block.

C = 1000, K = 4, a memory of 64 features per class, D = 2048, batch 64. Prints, and
writes as JSON (``--results``, default ``benchmarks/results/full/head_step``):

1. a train-mode forward and backward of the head alone (its sub-centroid update
   included), eager and under ``torch.compile``, against an ``nn.Linear`` softmax
   layer timed the same way in the same run;
2. the memory clustering of one step laid out in ``min(N, C)`` class slots (what the
   head does) against one row per class (an all-classes block), with the same result.

    python -m benchmarks.head_step
    python -m benchmarks.head_step --quick    # seconds: eager only, 2 rounds
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from benchmarks.common import FULL_RESULTS, command_line, write_results
from benchmarks.head_overhead import compiled, interleaved_medians
from deepnc import DNCHead
from deepnc.nn.grouping import ClassSlots, class_slots

C, K, L, D, N = 1000, 4, 64, 2048, 64


def seeded_head() -> DNCHead:
    """A head past seeding and its first, synchronously checked, updates."""
    torch.manual_seed(0)
    head = DNCHead(D, C, num_subcentroids=K, memory_size=L)
    head.seed(torch.randn(K * C, D), torch.arange(C).repeat(K))
    for _ in range(11):
        head(torch.randn(N, D), torch.randint(0, C, (N,)))
    return head


def layer_step(layer, inputs, labels=None):
    """One forward and backward of ``layer`` on fixed inputs (and targets, for DNC)."""
    arguments = (inputs,) if labels is None else (inputs, labels)

    def step() -> None:
        layer(*arguments).sum().backward()

    return step


def head_rows(rounds: int, modes: list[str | None]) -> list[dict]:
    inputs = torch.randn(N, D, requires_grad=True)
    labels = torch.randint(0, C, (N,))
    rows = []
    for mode in modes:
        linear, head = torch.nn.Linear(D, C), seeded_head()
        steps = {
            "softmax": layer_step(compiled(linear, mode), inputs),
            "dnc": layer_step(compiled(head, mode), inputs, labels),
        }
        medians = interleaved_medians(steps, rounds=rounds, warmup=3)
        rows.append(
            {
                "what": f"head alone, {mode or 'eager'}: forward + backward (+ update)",
                "mode": mode or "eager",
                "softmax_s": medians["softmax"],
                "dnc_s": medians["dnc"],
                "ratio": medians["dnc"] / medians["softmax"],
            }
        )
    return rows


def layout_row(rounds: int) -> dict:
    """The memory clustering of one step: ``min(N, C)`` slots against all C classes."""
    labels = torch.randint(0, C, (N,))
    slots = class_slots(labels, None, C)
    present = torch.zeros(C, dtype=torch.bool)
    present[labels] = True
    block = ClassSlots(classes=torch.arange(C), valid=present, ids=torch.empty(0))
    heads = {"slots": seeded_head(), "block": seeded_head()}
    for head, layout in ((heads["slots"], slots), (heads["block"], block)):
        head.bank.step_from_memory(head.memory, layout)
    torch.testing.assert_close(heads["slots"].subcentroids, heads["block"].subcentroids)
    steps = {
        "slots": lambda: heads["slots"].bank.step_from_memory(heads["slots"].memory, slots),
        "block": lambda: heads["block"].bank.step_from_memory(heads["block"].memory, block),
    }
    medians = interleaved_medians(steps, rounds=rounds, warmup=1)
    return {
        "what": f"memory clustering of one step, {slots.classes.numel()} class slots "
        f"against a block of all {C} classes (same result)",
        "slots_s": medians["slots"],
        "block_s": medians["block"],
        "speedup": medians["block"] / medians["slots"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, eager only")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per figure")
    parser.add_argument(
        "--results", type=Path, help="results stem (default benchmarks/results/full/head_step)"
    )
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    results = {
        "command": command_line("head_step.py", argv),
        "device": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "head": head_rows(rounds, [None] if args.quick else [None, "default"]),
        "layout": layout_row(rounds),
    }
    print(results["device"])
    for row in results["head"]:
        print(
            f"{row['what']}: softmax {row['softmax_s'] * 1e3:.1f} ms, DNC "
            f"{row['dnc_s'] * 1e3:.1f} ms, DNC / softmax = {row['ratio']:.2f}"
        )
    layout = results["layout"]
    print(
        f"{layout['what']}: slots {layout['slots_s'] * 1e3:.1f} ms, block "
        f"{layout['block_s'] * 1e3:.1f} ms, {layout['speedup']:.1f}x"
    )
    write_results(args.results or FULL_RESULTS / "head_step", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
