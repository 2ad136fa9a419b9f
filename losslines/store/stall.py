"""How long a store writer holds up the thread that measures (issue 13: at most 5 % of wall time).

A :class:`StallClock` is the writer's stopwatch: the caller-side methods of
``losslines.store.writer.StoreWriter`` run inside :meth:`StallClock.caller` (nested calls
counted once), its queue puts and flushes inside :meth:`StallClock.part`, its background
thread's work inside ``part("write_s")``. :meth:`StallClock.read` gives a frozen
:class:`WriterStall`, which ``close()`` stores as the ``writer_stall`` attribute.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

__all__ = ["WriterStall", "StallClock"]


@dataclass(frozen=True)
class WriterStall:
    """How long the caller of a store writer waited on it, in wall seconds.

    Attributes:
        open_s: seconds since the writer was created or resumed (until it closed).
        caller_s: seconds the calling thread spent inside ``append*``, ``update_attrs`` and
            ``flush`` (validating and copying records included): time the measurement did not run.
        queue_wait_s: the part of ``caller_s`` spent putting into the queue (waiting for room
            while the writer thread is ``max_queued_lines`` lines behind).
        flush_wait_s: the part of ``caller_s`` spent in ``flush`` (before every checkpoint and
            at close: everything queued written and committed).
        write_s: seconds the writer thread was busy, overlapped with the caller (its Python code
            competes for the GIL, so ``caller_s + write_s`` bounds the stall from above).
        lines: records appended (all groups).
    """

    open_s: float
    caller_s: float
    queue_wait_s: float
    flush_wait_s: float
    write_s: float
    lines: int

    @property
    def fraction(self) -> float:
        """``caller_s / open_s``: the share of the writer's lifetime the caller was held up."""
        return self.caller_s / self.open_s if self.open_s > 0 else 0.0

    @property
    def bound(self) -> float:
        """``(caller_s + write_s) / open_s``: an upper bound of the share, GIL contention included."""
        return (self.caller_s + self.write_s) / self.open_s if self.open_s > 0 else 0.0

    def as_attrs(self) -> dict[str, float | int]:
        """JSON-ready, seconds rounded to the microsecond (the ``writer_stall`` attribute)."""
        seconds = {k: round(float(getattr(self, k)), 6)
                   for k in ("open_s", "caller_s", "queue_wait_s", "flush_wait_s", "write_s")}
        return {**seconds, "lines": self.lines, "fraction": round(self.fraction, 6), "bound": round(self.bound, 6)}


class _Depth(threading.local):
    depth = 0


class StallClock:
    """The mutable counters behind a :class:`WriterStall` (one per writer)."""

    _PARTS = ("queue_wait_s", "flush_wait_s", "write_s")

    def __init__(self) -> None:
        self._opened = time.perf_counter()
        self._open_s: float | None = None
        self._seconds = dict.fromkeys(("caller_s", *self._PARTS), 0.0)
        self._lines = 0
        self._depth = _Depth()
        self._lock = threading.Lock()  # several producer threads and the writer thread add

    def _add(self, key: str, seconds: float) -> None:
        with self._lock:
            self._seconds[key] += seconds

    @contextmanager
    def caller(self) -> Iterator[None]:
        """Time a caller-side call (a call made inside another is not counted again)."""
        self._depth.depth += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._depth.depth -= 1
            if self._depth.depth == 0:
                self._add("caller_s", time.perf_counter() - t0)

    @contextmanager
    def part(self, key: str) -> Iterator[None]:
        """Time one of ``queue_wait_s``, ``flush_wait_s``, ``write_s``."""
        if key not in self._PARTS:
            raise ValueError(f"unknown stall part {key!r}; valid: {', '.join(self._PARTS)}")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._add(key, time.perf_counter() - t0)

    def count_line(self) -> None:
        with self._lock:
            self._lines += 1

    def stop(self) -> None:
        """Freeze ``open_s`` (the writer closed)."""
        if self._open_s is None:
            self._open_s = time.perf_counter() - self._opened

    def read(self) -> WriterStall:
        """The counters now."""
        open_s = self._open_s if self._open_s is not None else time.perf_counter() - self._opened
        with self._lock:
            return WriterStall(open_s=open_s, lines=self._lines, **self._seconds)
