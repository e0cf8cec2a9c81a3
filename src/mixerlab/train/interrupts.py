"""Ctrl-C as a request: the first one asks running work to stop at its next step, the second stops at once.

A run stopped by request raises :class:`Interrupted` from inside the trainer's loop; its last
checkpoint (written atomically after each epoch) stays on disk, so the same command resumes it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Interrupted(Exception):
    """Training stopped because a stop was requested (Ctrl-C); nothing half-written was kept."""


class StopRequest:
    """A flag set by the first SIGINT; the second SIGINT raises :class:`KeyboardInterrupt` as usual.

    ``on_first`` runs inside the signal handler (keep it to setting flags or events).
    """

    def __init__(self, on_first: Callable[[], None] | None = None) -> None:
        self.requested = False
        self._on_first = on_first

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self._on_first is not None:
            self._on_first()


@contextmanager
def stop_on_interrupt(on_first: Callable[[], None] | None = None) -> Iterator[StopRequest]:
    """Within the block, SIGINT sets the yielded flag instead of raising (main thread only).

    Off the main thread a handler cannot be installed; the flag then never sets and Ctrl-C
    behaves as Python's default.
    """
    request = StopRequest(on_first)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGINT, request._handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
