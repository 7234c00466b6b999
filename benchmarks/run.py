"""Run every benchmark of a budget, then render RESULTS.md: the one command of the report.

    python -m benchmarks.run --budget small        # every table, well under an hour on 2 CPUs
    python -m benchmarks.run --budget full         # the GPU recipes (hours on a CPU)
    python -m benchmarks.run --budget smoke --results-dir /tmp/r --runs-dir /tmp/runs  # CI
    python -m benchmarks.run --budget small --only openset new_classes

Each step is a script of ``benchmarks/`` called in this process (``main(argv)``); its
JSON records the standalone command that regenerates it. Finished training runs are
reused (an identical recipe anywhere under ``runs/``), so an interrupted driver
continues where it stopped. ``<results dir>/driver.json`` lists each step's command,
status and time. The steps of ``full`` are the scripts' bare defaults, so their results
and runs go where the scripts put them by default (``benchmarks/results/full/``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

import deepnc
from benchmarks.common import ROOT, command_line, relative
from benchmarks.plan import BUDGETS, Step, plan

log = logging.getLogger("benchmarks")


def step_arguments(step: Step, budget: str, results_dir: Path, runs_dir: Path) -> list[str]:
    """The argv of ``step``'s ``main``: its own arguments plus where its outputs go."""
    if budget == "full" and results_dir == ROOT / "benchmarks/results/full":
        return list(step.args)  # the bare defaults: the recipe and folders of the script
    where = ["--results", relative(results_dir / step.name)]
    if step.trains:
        where += ["--out", relative(runs_dir / step.name)]
    return [*step.args, *where]


def run_step(step: Step, argv: list[str]) -> tuple[str, float]:
    """Run one script in-process; return its status and its wall-clock seconds."""
    start = time.time()
    try:
        status = importlib.import_module(f"benchmarks.{step.script}").main(argv)
    except Exception:  # one failing script is reported; the driver decides whether to go on
        log.error("%s failed:\n%s", step.name, traceback.format_exc())
        return "failed", time.time() - start
    return ("done" if not status else f"exit {status}"), time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=BUDGETS, default="small")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps")
    parser.add_argument("--results-dir", type=Path, help="default benchmarks/results/<budget>")
    parser.add_argument("--runs-dir", type=Path, help="default runs/bench/<budget>")
    parser.add_argument("--report", type=Path, help="default RESULTS.md (smoke: in results)")
    parser.add_argument("--keep-going", action="store_true", help="go on after a failed step")
    parser.add_argument("--no-render", action="store_true")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.chdir(ROOT)  # the scripts' defaults and the recorded commands are relative to the root
    budget = arguments.budget
    results_dir = (arguments.results_dir or ROOT / "benchmarks/results" / budget).resolve()
    runs_dir = (arguments.runs_dir or ROOT / "runs/bench" / budget).resolve()
    steps = plan(budget)
    unknown = sorted(set(arguments.only or ()) - {step.name for step in steps})
    if unknown:
        parser.error(f"unknown steps {unknown}; {budget} has {[step.name for step in steps]}")
    import torch  # after argument checks: a typo should not wait for torch

    record_path = results_dir / "driver.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    driver_command = ["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)]
    record.update({"budget": budget, "command": shlex.join(driver_command)})
    record.setdefault("steps", {})
    failed = []
    for step in steps:
        if arguments.only and step.name not in arguments.only:
            continue
        if step.needs_cuda and not torch.cuda.is_available():
            log.info("== %s: skipped (needs CUDA)", step.name)
            continue
        step_argv = step_arguments(step, budget, results_dir, runs_dir)
        command = command_line(step.script, step_argv)
        log.info("== %s: %s", step.name, command)
        status, seconds = run_step(step, step_argv)
        log.info("== %s: %s in %.0f s", step.name, status, seconds)
        record["steps"][step.name] = {
            "command": command,
            "status": status,
            "seconds": seconds,
            "deepnc": deepnc.__version__,
        }
        results_dir.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        if status != "done":
            failed.append(step.name)
            if not arguments.keep_going:
                break
    if not arguments.no_render:
        from benchmarks.render import render_report

        if budget == "smoke":
            report = render_report(results_dir, arguments.report or results_dir / "RESULTS.md")
        else:  # RESULTS.md (and the README's block): the small budget, then the full's
            report = render_report(
                ROOT / "benchmarks/results/small",
                arguments.report or ROOT / "RESULTS.md",
                full_dir=ROOT / "benchmarks/results/full",
                readme=ROOT / "README.md",
            )
        log.info("wrote %s", report)
    if failed:
        log.error("failed steps: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
