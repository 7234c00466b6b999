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
import shutil
import sys
import tempfile
from pathlib import Path

import deepnc
from benchmarks.common import FULL_RESULTS, command_line, write_results
from deepnc.testing.torchrun import one_round


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
