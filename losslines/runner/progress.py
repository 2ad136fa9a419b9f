"""Progress of a run on stderr: a tqdm bar (steps, lines, lines/s, training loss) and log lines."""

from __future__ import annotations

import sys
import time

from torch import Tensor


class Progress:
    """The run's progress bar, or nothing when disabled; :meth:`log` works either way.

    Args:
        enabled: show the bar.
        total, initial: units (training steps) in all and already done (a resumed run).
        desc: the bar's label (the run's name).
        quiet: no log lines either (the processes other than 0 of a run of several).
        unit: what the bar counts (``"step"``; ``losslines measure`` counts lines).
    """

    def __init__(self, enabled: bool, *, total: int, initial: int, desc: str, quiet: bool = False,
                 unit: str = "step"):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True)
        self._t0 = time.perf_counter()
        self._lines = 0
        self._quiet = quiet  # the other processes of a run of several: process 0 speaks

    def log(self, message: str) -> None:
        """One line on stderr that does not break the bar."""
        if self._quiet:
            return
        if self._bar is not None:
            self._bar.write(f"losslines: {message}", file=sys.stderr)
        else:
            print(f"losslines: {message}", file=sys.stderr)

    def step(self, *, measured: bool, lines: int, loss: Tensor | float) -> None:
        """Advance by one unit; ``lines`` is the store's total so far (committed + queued)."""
        self._lines += int(measured)
        if self._bar is None:
            return
        rate = self._lines / max(time.perf_counter() - self._t0, 1e-9)
        self._bar.set_postfix(lines=lines, lines_s=f"{rate:.2f}", loss=f"{float(loss):.3f}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
