"""\"Did you mean\" for mistyped names: the end of every "unknown name" message (imports
nothing heavy, so that the command line can use it before torch loads)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(name: str, valid: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` for the valid name closest to a mistyped ``name``, else ``""``:
    the end of every "unknown name" message.

    >>> did_you_mean("resnt20", ["resnet20", "resnet56"])
    " Did you mean 'resnet20'?"
    """
    close = difflib.get_close_matches(name, [v for v in valid if v != name], n=1, cutoff=cutoff)
    return f" Did you mean {close[0]!r}?" if close else ""
