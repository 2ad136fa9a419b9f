"""Which training steps get a measured line (docs/design.md, "The measurement": schedules).

Kinds (``Schedule.kind``):

* ``"every"``: steps ``offset, offset + period, offset + 2·period, ...`` (``period=1``: all steps).
* ``"log"``: ``n`` unique steps log-spaced over ``[0, total_steps)``, always including step 0 —
  dense early, sparse late. Exactly ``min(n, total_steps)`` steps: where log spacing would repeat
  an integer the next free step is taken.
* ``"list"``: an explicit list of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEDULE_KINDS = ("every", "log", "list")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"schedule {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def log_spaced_steps(n: int, total_steps: int) -> tuple[int, ...]:
    """``min(n, total_steps)`` unique increasing integers in ``[0, total_steps)``, log-spaced, starting at 0.

    The raw positions are ``floor(geomspace(1, total_steps, n)) − 1``; repeats are pushed to the
    next free integer, and the tail is pulled back below ``total_steps`` if needed.
    """
    n = _check_int("n", n, 1)
    total_steps = _check_int("total_steps", total_steps, 1)
    n = min(n, total_steps)
    raw = np.floor(np.geomspace(1.0, float(total_steps), n)).astype(np.int64) - 1
    steps = raw.copy()
    for i in range(1, n):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    for i in range(n - 1, -1, -1):
        steps[i] = min(steps[i], total_steps - (n - i))
    return tuple(int(s) for s in steps)


@dataclass(frozen=True)
class Schedule:
    """The measured steps of a run. Build with ``Schedule.every``, ``log_spaced`` or ``explicit``.

    Attributes:
        kind: one of ``SCHEDULE_KINDS``.
        period, offset: for ``"every"``: steps ``offset + k·period``.
        listed: the measured steps of ``"log"`` and ``"list"`` schedules, sorted, unique.
    """

    kind: str
    period: int = 1
    offset: int = 0
    listed: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; valid kinds: {', '.join(SCHEDULE_KINDS)}")
        _check_int("period", self.period, 1)
        _check_int("offset", self.offset, 0)
        for s in self.listed:
            _check_int("step", s, 0)
        if list(self.listed) != sorted(set(self.listed)):
            raise ValueError("schedule steps must be sorted and unique (use Schedule.explicit)")

    @classmethod
    def every(cls, period: int = 1, offset: int = 0) -> "Schedule":
        """Measure steps ``offset + k·period`` for k = 0, 1, ... (``Schedule.every()``: all steps)."""
        return cls("every", period=_check_int("period", period, 1), offset=_check_int("offset", offset, 0))

    @classmethod
    def log_spaced(cls, n: int, total_steps: int) -> "Schedule":
        """Measure ``min(n, total_steps)`` log-spaced steps in ``[0, total_steps)`` (see ``log_spaced_steps``)."""
        return cls("log", listed=log_spaced_steps(n, total_steps))

    @classmethod
    def explicit(cls, steps) -> "Schedule":
        """Measure exactly ``steps`` (any order; duplicates are an error)."""
        steps = [_check_int("step", s, 0) for s in steps]
        if len(set(steps)) != len(steps):
            raise ValueError(f"schedule steps contain duplicates: {sorted(steps)}")
        if not steps:
            raise ValueError("an explicit schedule needs at least one step")
        return cls("list", listed=tuple(sorted(steps)))

    def should_measure(self, step: int) -> bool:
        """Is a line measured at training step ``step`` (>= 0)?"""
        step = _check_int("step", step, 0)
        if self.kind == "every":
            return step >= self.offset and (step - self.offset) % self.period == 0
        return step in self._listed_set()

    def steps(self, total_steps: int) -> list[int]:
        """All measured steps below ``total_steps``, ascending."""
        total_steps = _check_int("total_steps", total_steps, 0)
        if self.kind == "every":
            return list(range(self.offset, total_steps, self.period))
        return [s for s in self.listed if s < total_steps]

    def _listed_set(self) -> frozenset[int]:
        cached = self.__dict__.get("_set")
        if cached is None:
            cached = frozenset(self.listed)
            object.__setattr__(self, "_set", cached)
        return cached

    def to_attrs(self) -> dict:
        """JSON-ready description (for store attributes)."""
        return {"kind": self.kind, "period": self.period, "offset": self.offset, "steps": list(self.listed)}


def make_schedule(kind: str, **kwargs) -> Schedule:
    """Build a schedule by kind name: ``"every"`` (period, offset), ``"log"`` (n, total_steps),
    ``"list"`` (steps).

    Raises:
        ValueError: unknown kind (listing the valid ones) or bad arguments.
    """
    builders = {"every": Schedule.every, "log": Schedule.log_spaced, "list": Schedule.explicit}
    if kind not in builders:
        raise ValueError(f"unknown schedule kind {kind!r}; valid kinds: {', '.join(SCHEDULE_KINDS)}")
    try:
        return builders[kind](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for a {kind!r} schedule: {err}") from None
