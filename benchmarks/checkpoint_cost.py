"""What a checkpoint costs: the time of one save against the training it protects.

On the Fashion-MNIST ResNet-20 recipe (``configs/fashion-mnist_resnet20.yaml``: batch
128, DNC head with its memory, SGD with momentum), a few training steps are timed, then
``--saves`` checkpoints of the very run state (model, optimiser, scheduler, the
generators' states: what a checkpoint inside an epoch holds) are written through the
run's rotation (``deepnc.engine.run_checkpoints.RunCheckpoints``) and timed. The share of
training time a save costs is its median time over the time between two saves: at the
default interval (``checkpoint_every_minutes``), at every epoch's end, and at every 100
steps. Target: at most 2% at the default interval.

    python -m benchmarks.checkpoint_cost

Writes ``benchmarks/results/full/checkpoint_cost.{json,md}`` (``--results``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from benchmarks.common import FULL_RESULTS, ROOT, command_line, write_results
from deepnc.engine.build import build_data, build_model, build_optimisation
from deepnc.engine.checkpoint import Checkpoint, TrainingState
from deepnc.engine.config import TrainConfig, load_config
from deepnc.engine.loop import train_one_epoch
from deepnc.engine.run_checkpoints import RunCheckpoints, capture_rng

STEPS_BETWEEN = 100  # the third interval reported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--results", default=str(FULL_RESULTS / "checkpoint_cost"))
    arguments, overrides = parser.parse_known_args(argv)
    config = load_config(ROOT / "configs/fashion-mnist_resnet20.yaml", overrides)
    data = build_data(config)
    model = build_model(config, data.describe())
    steps_per_epoch = len(data.train) // config.batch_size
    optimizer, scheduler, scaler = build_optimisation(model, config, steps_per_epoch, "cpu")
    shown = Subset(data.train, range(config.batch_size * (arguments.steps + 1)))
    loader = DataLoader(shown, config.batch_size, shuffle=True, drop_last=True)
    stats = train_one_epoch(model, loader, optimizer, device=torch.device("cpu"))
    step_seconds = stats.step_seconds  # data loading left out, as the step's own cost
    epoch_seconds = step_seconds * steps_per_epoch
    saves = []
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = RunCheckpoints(folder, config.keep_checkpoints)
        for _ in range(arguments.saves):
            start = time.perf_counter()
            training = TrainingState.capture(
                optimizer, scheduler, scaler, progress={"step": 1}, rng=capture_rng()
            )
            snapshot = Checkpoint(
                model=dict(model.state_dict()),
                config=config.to_dict(),
                dataset=data.describe(),
                training=training,
            )
            checkpoints.save(snapshot)
            saves.append(time.perf_counter() - start)
        size = (Path(folder) / "checkpoint.safetensors").stat().st_size
    save_seconds = statistics.median(saves)
    interval = 60 * TrainConfig().checkpoint_every_minutes
    result = {
        "command": command_line("checkpoint_cost", argv),
        "recipe": config.to_dict(),
        "checkpoint_bytes": size,
        "save_seconds": save_seconds,
        "step_seconds": step_seconds,
        "steps_per_epoch": steps_per_epoch,
        "default_interval_seconds": interval,
        "share_at_default_interval": save_seconds / (interval + save_seconds),
        "share_at_every_epoch": save_seconds / (epoch_seconds + save_seconds),
        "share_every_100_steps": save_seconds / (STEPS_BETWEEN * step_seconds + save_seconds),
    }
    table = markdown(result)
    write_results(arguments.results, result, table)
    print(table)
    return 0


def markdown(result: dict) -> str:
    return (
        f"`{result['command']}`\n\n"
        f"A checkpoint of {result['checkpoint_bytes'] / 1e6:.2f} MB saves in "
        f"{1000 * result['save_seconds']:.1f} ms; a training step takes "
        f"{1000 * result['step_seconds']:.0f} ms ({result['steps_per_epoch']} steps an epoch).\n\n"
        "| interval | share of training time |\n| --- | --- |\n"
        f"| every {result['default_interval_seconds'] / 60:.0f} minutes (the default) | "
        f"{100 * result['share_at_default_interval']:.3f}% |\n"
        f"| every epoch | {100 * result['share_at_every_epoch']:.3f}% |\n"
        f"| every {STEPS_BETWEEN} steps | {100 * result['share_every_100_steps']:.3f}% |\n"
    )


if __name__ == "__main__":
    sys.exit(main())
