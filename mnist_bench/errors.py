"""The one exception type the CLI turns into a one-line message, any exception as one line,
and the one lookup every registry of choices makes (``registered``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Entry = TypeVar("Entry")

# The longest another library's exception may be once made one line (``one_line``): a
# driver's message fits, a traceback's worth of mirror URLs or SQL does not.
LINE_CHARS = 200


class MnistBenchError(Exception):
    """A problem the user can fix (bad option, missing file, unreachable storage).

    The message must stand on its own as a single line: the CLI prints it after
    "Error:" and exits non-zero, without a traceback.
    """


class UsageError(MnistBenchError):
    """The command line asks for something invalid (an option's value, a space file, a name):
    the CLI exits 2, as for click's own usage errors, and the fix is in the command itself.
    Problems of the machine, the files or the storage stay ``MnistBenchError`` (exit 1)."""


def one_line(exc: BaseException) -> str:
    """``exc`` as one line, wherever an exception is shown or kept as a reason.

    Our own errors as they read (one line already, and whole: their advice comes last);
    any other after its type, its first line that says something, at most ``LINE_CHARS``
    long; the type alone when it says nothing. Keep this, never the exception itself: its
    traceback holds its frames (a model, a graph) alive until a full garbage collection.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if isinstance(exc, MnistBenchError):
        return lines[0]
    return f"{type(exc).__name__}: {lines[0]}"[:LINE_CHARS]


def registered(registry: Mapping[str, Entry], kind: str, name: str) -> Entry:
    """The entry ``name`` of a registry of choices (optimizers, schedules, samplers, ...); a
    ValueError naming the known ones otherwise, never a fallback to another entry."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"{kind}={name!r} must be one of {tuple(registry)}") from None
