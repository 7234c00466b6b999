"""A two-process ``torchrun`` group training a tiny digits run on the CPU (gloo), whose
workers can be found and killed: the fault tests and ``benchmarks/elastic_restarts.py``
both drive it.

    with launched(out, restarts=1) as group:   # torchrun ... -m deepnc train ...
        os.kill(group_workers(out, group)[-1], signal.SIGKILL)

Needs the ``train`` extra and ``pgrep`` (procps).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["EVERY", "TINY", "group_command", "group_workers", "launched", "one_round"]

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
