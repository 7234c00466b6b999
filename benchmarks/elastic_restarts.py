"""How reliably does a torchrun group restart after one of its workers is killed?

Each round trains the fault suite's tiny digits run on two CPU processes (gloo) under
``torchrun --standalone --max-restarts R``, waits for the checkpoint written 4 steps into
the first epoch, SIGKILLs one worker, and records how the group ends: finished (and
after how many restarts of the group), failed, or hung past ``--timeout`` seconds; and
how many times a restarted process was refused a connection by a dead peer. A group that
needs more than one restart would have failed under ``--max-restarts 1``.

    python -m benchmarks.elastic_restarts --rounds 10

The deepnc it measures is the one Python imports: to measure another source tree (an
earlier commit), put its ``src`` first on ``PYTHONPATH``. Writes
``benchmarks/results/full/elastic_restarts.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import deepnc
from benchmarks.common import FULL_RESULTS, command_line, write_results

TINY = ["--dataset", "digits", "--train_subset", "320", "--batch_size", "32", "--epochs", "3"]
TINY += ["--lr", "0.05", "--progress", "false", "--workers", "0", "--threads", "1"]
EVERY = ["--checkpoint_every_steps", "4", "--checkpoint_every_minutes", "null"]


def group_command(out: Path, restarts: int, *extra: str) -> list[str]:
    """Two CPU processes (gloo) under torchrun training TINY (``extra``: more options)."""
    launcher = [str(Path(sys.executable).with_name("torchrun")), "--standalone"]
    launcher += ["--nproc_per_node", "2", "--max-restarts", str(restarts), "-m", "deepnc"]
    return [*launcher, "train", *TINY, "--out_dir", str(out), *extra]


def group_workers(out: Path, launcher: subprocess.Popen) -> list[int]:
    """The process ids of the group's workers, oldest first."""
    found = subprocess.run(["pgrep", "-f", "--", f"--out_dir {out}"], capture_output=True)
    return sorted(int(pid) for pid in found.stdout.split() if int(pid) != launcher.pid)


@contextlib.contextmanager
def launched(out: Path, restarts: int, *extra: str, stderr=None) -> Iterator[subprocess.Popen]:
    """The group of :func:`group_command` running (one thread a process); whatever is left
    of it is killed on leaving (torchrun starts its workers in sessions of their own)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "LOGLEVEL": "INFO"}
    process = subprocess.Popen(
        group_command(out, restarts, *extra),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env=environment,
    )
    try:
        yield process
    finally:
        for pid in [process.pid, *group_workers(out, process)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _step_saved(out: Path) -> int:
    try:
        progress = json.loads((out / "checkpoint.json").read_text()).get("progress")
    except (OSError, ValueError):
        return -1
    return progress["step"] if progress else -1


def one_round(folder: Path, restarts: int, timeout: float, *extra: str) -> dict:
    """Train ``folder/run``, kill a worker after the step-4 checkpoint, report how the
    group ended (its stderr is left in ``folder/stderr.txt``)."""
    out, log = folder / "run", folder / "stderr.txt"
    with log.open("w") as stderr, launched(out, restarts, *EVERY, *extra, stderr=stderr) as group:
        deadline = time.time() + 120
        while _step_saved(out) < 4 and group.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        victims = group_workers(out, group)
        if _step_saved(out) < 4 or not victims:
            outcome = "failed before the kill"
        else:
            os.kill(victims[-1], signal.SIGKILL)
            try:
                group.wait(timeout=timeout)
                outcome = "finished" if group.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                outcome = "hung"
    text = log.read_text(errors="replace")
    return {
        "outcome": outcome,
        "group_restarts": text.count("will restart worker group"),
        "connections_refused": text.count("Connection refused"),
        "resumed": "resuming" in text,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before 'hung'")
    parser.add_argument("--results", default=str(FULL_RESULTS / "elastic_restarts"))
    arguments = parser.parse_args(argv)
    rounds = []
    for number in range(arguments.rounds):
        folder = Path(tempfile.mkdtemp(prefix="deepnc-elastic-"))
        try:
            rounds.append(one_round(folder, arguments.max_restarts, arguments.timeout))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"round {number + 1}: {rounds[-1]}", flush=True)
    finished = [r for r in rounds if r["outcome"] == "finished"]
    result = {
        "command": command_line("elastic_restarts", argv),
        "deepnc_source": str(Path(deepnc.__file__).parent),
        "max_restarts": arguments.max_restarts,
        "rounds": rounds,
        "finished": len(finished),
        "hung": sum(r["outcome"] == "hung" for r in rounds),
        "finished_after_one_restart": sum(r["group_restarts"] == 1 for r in finished),
    }
    table = (
        f"`{result['command']}` ({result['deepnc_source']})\n\n"
        f"{len(rounds)} rounds: {result['finished']} finished "
        f"({result['finished_after_one_restart']} after one restart of the group), "
        f"{result['hung']} hung past {arguments.timeout:.0f} s; "
        f"{sum(r['connections_refused'] for r in rounds)} connections refused in all.\n"
    )
    write_results(arguments.results, result, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
