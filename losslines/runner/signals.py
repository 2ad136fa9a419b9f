"""Interrupts between training steps: Ctrl-C (SIGINT) and a scheduler's SIGTERM are deferred to
the next step boundary, so a checkpoint is always taken between steps."""

from __future__ import annotations

import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)


class InterruptBetweenSteps:
    """Defer SIGINT and SIGTERM to the next step boundary.

    The first signal only sets ``requested`` (and ``signal_name``); the loop checks it before each
    step and stops there with a checkpoint. A second signal aborts at once (the store keeps its
    committed lines; resume from the last periodic checkpoint). Outside the main thread signals
    cannot be caught, and nothing is installed.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "InterruptBetweenSteps":
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
