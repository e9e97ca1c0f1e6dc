"""Ctrl-C as a request: training stops at the next batch boundary, not wherever it lands.

A KeyboardInterrupt raised at a random point can be swallowed (inside a weakref or
garbage-collector callback, say) or hit Optuna mid-write. The first SIGINT only sets an
event, which the trainer checks between batches and turns into a KeyboardInterrupt
there; a second SIGINT interrupts at once, for the impatient.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol


class StopFlag(Protocol):
    """A threading.Event, or a multiprocessing one shared with worker processes."""

    def is_set(self) -> bool: ...


@contextmanager
def sigint_as_event() -> Iterator[threading.Event]:
    """Within the block, SIGINT sets the yielded event (main thread only)."""
    event = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)
