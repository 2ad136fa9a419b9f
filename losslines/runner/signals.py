"""Ctrl-C between training steps: the first interrupt is deferred to the next step boundary."""

from __future__ import annotations

import signal
import threading


class InterruptBetweenSteps:
    """Defer Ctrl-C to the next step boundary, so a checkpoint is always taken between steps.

    The first SIGINT only sets ``requested``; the loop checks it before each step. A second
    SIGINT aborts at once (the store keeps its committed lines; resume from the last periodic
    checkpoint). Outside the main thread signals cannot be caught, and nothing is installed.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "InterruptBetweenSteps":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
