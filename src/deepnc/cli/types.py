"""Argument types that validate a flag's value, so that argparse's error names the flag:
``argument --batch-size: must be an int >= 1, got 0``."""

from __future__ import annotations

import argparse

__all__ = ["at_least", "positive_float", "share"]


def at_least(minimum: int):
    """An argparse ``type``: an int >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def _number(text: str, allowed, what: str) -> float:
    """``text`` as a float for which ``allowed(value)`` holds, else argparse's error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not allowed(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a float > 0."""
    return _number(text, lambda value: value > 0, "a number > 0")


def share(text: str) -> float:
    """An argparse ``type``: a fraction in (0, 1]."""
    what = "a share in (0, 1] (e.g. 0.95: keep 95% of known images)"
    return _number(text, lambda value: 0 < value <= 1, what)
