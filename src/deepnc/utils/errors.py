"""Errors a user's input can cause, importable without torch (the command line reports
them as one line)."""

from __future__ import annotations

__all__ = ["UnreadableImageError", "one_line"]


class UnreadableImageError(OSError):
    """An image file that PIL cannot decode; the message names the file."""


def one_line(error: BaseException) -> str:
    """The message of ``error``; for an error re-raised from a ``DataLoader`` worker (whose
    message carries the worker's traceback), only the original message."""
    message = str(error)
    if "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    name = type(error).__name__
    return last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
