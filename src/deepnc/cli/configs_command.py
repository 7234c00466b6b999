"""``deepnc configs [NAME]``: the recipes that ship with the package, or one of them."""

from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "configs",
        help="list the shipped recipes (--config NAME), or print one",
        description=(
            "List the recipes that ship with deepnc; any of them is a --config NAME of "
            "train and compare. With a NAME, print that recipe (to copy and edit)."
        ),
    )
    parser.add_argument("name", nargs="?", help="print this recipe's YAML")


def run(arguments: argparse.Namespace, rest: list[str]) -> int:
    from deepnc.engine.recipes import find_config, list_configs

    if arguments.name:
        print(find_config(arguments.name).read_text(), end="")
        return 0
    recipes = list_configs()
    width = max(map(len, recipes))
    for name, description in recipes.items():
        print(f"{name:<{width}}  {description}")
    return 0
