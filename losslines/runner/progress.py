"""Progress of a run on stderr: a bar on a terminal, periodic log lines off one (a scheduler's log).

What is shown — units done, lines, lines/s, the training loss and the time left — is refreshed
at most every ``interval`` seconds (a bar: 0.5 s; a log: 30 s), and only then is the loss read
from the device: a step never waits for the GPU for the display's sake. The time left weighs
what the work costs: measured units and plain ones are timed apart, and the remaining ones of
each kind are counted from the plan (``total_measured``), so the first cheap steps of a run do
not promise an early end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, TextIO

log = logging.getLogger("losslines.run")
BAR_INTERVAL = 0.5
LOG_INTERVAL = 30.0


def format_duration(seconds: float) -> str:
    """``3725`` -> ``'1h02m'``, ``75`` -> ``'1m15s'``, ``9.4`` -> ``'9s'``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """The run's progress display, or nothing when disabled; :meth:`log` works either way.

    Args:
        enabled: show progress (a bar when ``stream`` is a terminal, log lines otherwise).
        total, initial: units (training steps) in all and already done (a resumed run).
        desc: the label (the run's name).
        quiet: no log lines either (the processes other than 0 of a run of several).
        unit: what is counted (``"step"``; ``losslines measure`` counts lines).
        total_measured, initial_measured: measured units (lines) planned in all and already done;
            default: every unit is measured when ``unit == "line"``, else none is known.
        stream: where it goes (default stderr). interval: seconds between refreshes (default 0.5
            on a terminal, 30 in a log). clock: the time source (tests).
    """

    def __init__(self, enabled: bool, *, total: int, initial: int, desc: str, quiet: bool = False,
                 unit: str = "step", total_measured: int | None = None, initial_measured: int = 0,
                 stream: TextIO | None = None, interval: float | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self._stream = stream if stream is not None else sys.stderr
        # the CLI configures the losslines logger (-q / -v); a library caller gets the stream
        self._use_logger = stream is None and bool(logging.getLogger("losslines").handlers)
        self._quiet, self._desc, self._unit, self._clock = quiet, desc, unit, clock
        self._total, self._done = int(total), int(initial)
        if total_measured is None:
            total_measured, initial_measured = (total, initial) if unit == "line" else (0, 0)
        self._measured_left = max(0, int(total_measured) - int(initial_measured))
        self._bar = None
        self._mode = None
        if enabled:
            self._mode = "bar" if getattr(self._stream, "isatty", lambda: False)() else "log"
        if self._mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, file=self._stream,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        self._interval = interval if interval is not None else (BAR_INTERVAL if self._mode == "bar" else LOG_INTERVAL)
        self._t0 = self._last_step = self._last_shown = clock()
        self._lines = 0  # measured in this invocation
        self._spent = {True: [0.0, 0], False: [0.0, 0]}  # measured / plain: seconds and units
        self._pending = 0  # bar units not yet drawn
        self._loss = None

    def log(self, message: str) -> None:
        """One line that does not break the bar: through the ``losslines.run`` logger when the
        ``losslines`` logger has handlers (the CLI's: ``-q`` silences it), else on the stream."""
        if self._quiet:
            return
        if self._bar is not None:
            self._bar.write(f"losslines: {message}", file=self._stream)
        elif self._use_logger:
            log.info(message)
        else:
            print(f"losslines: {message}", file=self._stream, flush=True)

    def step(self, *, measured: bool, lines: int, loss) -> None:
        """One unit done; ``lines`` is the store's total so far (committed + queued); ``loss`` (a
        tensor or a number) is read only if the display is refreshed now."""
        now = self._clock()
        spent = self._spent[bool(measured)]
        spent[0] += now - self._last_step
        spent[1] += 1
        self._last_step = now
        self._done += 1
        self._lines += int(measured)
        if measured:
            self._measured_left = max(0, self._measured_left - 1)
        self._pending += 1
        # detached: no sync, and the step's autograd graph is not kept alive until the next refresh
        self._loss, self._total_lines = (loss.detach() if hasattr(loss, "detach") else loss), lines
        if self._mode is not None and (now - self._last_shown >= self._interval or self._done >= self._total):
            self._show(now)

    def eta(self) -> float | None:
        """Seconds left: the remaining measured and plain units at their own mean cost so far
        (None until each kind that remains has been timed)."""
        left = self._total - self._done
        measured_left = min(self._measured_left, left)
        plain_left = left - measured_left
        total = 0.0
        for count, (seconds, units) in ((measured_left, self._spent[True]), (plain_left, self._spent[False])):
            if count:
                if not units:
                    return None
                total += count * seconds / units
        return total

    def _show(self, now: float) -> None:
        self._last_shown = now
        rate = self._lines / max(now - self._t0, 1e-9)
        eta = self.eta()
        loss = float(self._loss) if self._loss is not None else float("nan")  # the one device read per refresh
        left = format_duration(eta) if eta is not None else "?"
        if self._bar is not None:
            self._bar.set_postfix_str(f"lines={self._total_lines}, {rate:.2f} lines/s, loss={loss:.3f}, "
                                      f"left {left}", refresh=False)
            self._bar.update(self._pending)
        else:
            self.log(f"{self._desc}: {self._unit} {self._done}/{self._total}, {self._total_lines} lines, "
                     f"{rate:.2f} lines/s, loss {loss:.3f}, {format_duration(now - self._t0)} elapsed, {left} left")
        self._pending = 0

    def close(self) -> None:
        if self._bar is not None:
            if self._pending:
                self._bar.update(self._pending)
            self._bar.close()
