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
from deepnc.utils.suggest import did_you_mean

__all__ = ["CONFIG_COMMANDS", "main"]

# Commands whose other flags are config keys (--epochs 5, --head_options.tau 0.2)
CONFIG_COMMANDS = ("train", "fit", "compare")

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
    argv = _one_spelling(list(sys.argv[1:] if argv is None else argv), commands.choices)
    arguments, rest = parser.parse_known_args(argv)
    if rest and arguments.command not in CONFIG_COMMANDS:
        return _unknown(arguments.command, rest, commands.choices[arguments.command])
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


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def _one_spelling(argv: list[str], parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """``argv`` with each flag of the command in the spelling its parser knows: flags are
    written with hyphens (``--data-root``), config keys with underscores, and either
    spelling is accepted for both."""
    command = next((word for word in argv if word in parsers), None)
    if command is None:
        return argv
    known = set(_options(parsers[command]))
    start = argv.index(command) + 1
    spelled = argv[:start]
    for word in argv[start:]:
        flag, equals, value = word.partition("=")
        if word.startswith("--") and flag not in known:
            for other in (flag.replace("_", "-"), "--" + flag[2:].replace("-", "_")):
                if other in known:
                    word = other + equals + value
                    break
        spelled.append(word)
    return spelled


def _unknown(command: str, rest: list[str], parser: argparse.ArgumentParser) -> int:
    """Report arguments ``command`` does not take, with the nearest flag it does take."""
    flags = [word.partition("=")[0] for word in rest if word.startswith("-")]
    if flags:
        hint = did_you_mean(flags[0], _options(parser), cutoff=0.5)
        message = f"unknown option {flags[0]}.{hint} (see deepnc {command} --help)"
    else:
        message = f"unexpected argument {rest[0]!r} (see deepnc {command} --help)"
    print(f"deepnc {command}: error: {message}", file=sys.stderr)
    return 2
