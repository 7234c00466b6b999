"""The ``deepnc`` command: ``train``, ``fit``, ``eval``, ``compare``, ``snap``, ``explain``,
``predict``, ``calibrate``, ``add-classes``, ``remove-classes``, ``export``, ``configs``.

Run ``deepnc <command> --help`` for each command's options. Parsing imports nothing heavy
(``deepnc --help`` answers at once); each command imports what it computes with. Under
``torchrun`` the same commands train with DDP:
``torchrun --nproc_per_node 2 -m deepnc train --config ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from deepnc._version import __version__
from deepnc.cli import (
    calibrate_command,
    classes_command,
    compare_command,
    configs_command,
    eval_command,
    explain_command,
    export_command,
    fit_command,
    predict_command,
    snap_command,
    train_command,
)
from deepnc.utils.errors import UnreadableImageError, one_line
from deepnc.utils.extras import missing_extra

__all__ = ["main"]

_COMMANDS = {
    "train": train_command,
    "fit": fit_command,
    "eval": eval_command,
    "compare": compare_command,
    "snap": snap_command,
    "explain": explain_command,
    "predict": predict_command,
    "calibrate": calibrate_command,
    "add-classes": classes_command,
    "remove-classes": classes_command,
    "export": export_command,
    "configs": configs_command,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``deepnc`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="deepnc", description="Deep Nearest Centroids for PyTorch"
    )
    parser.add_argument("--version", action="version", version=f"deepnc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(_COMMANDS.values()):  # a module may add several commands
        module.add_parser(commands)
    arguments, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("matplotlib", "onnxscript", "onnx_ir", "torch.onnx"):  # INFO not for users
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return _COMMANDS[arguments.command].run(arguments, rest) or 0
    except ModuleNotFoundError as error:  # an extra this command needs (onnx for export...)
        message = missing_extra(error, f"deepnc {arguments.command}")
        print(f"deepnc {arguments.command}: error: {message}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, UnreadableImageError) as error:
        print(f"deepnc {arguments.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # train says what it saved; the other commands save nothing
        print(f"\ndeepnc {arguments.command}: interrupted", file=sys.stderr)
        return 130
