"""TensorBoard scalars of every measured line while a run goes (``store.tensorboard = "DIR"``).

For each line the run measures and each measured split (``train``, ``val``, ``batch``), at the
line's training step as TensorBoard's global step, five scalars under ``<quantity>/<split>``:

* ``s_opt``: the refined minimum of the split's line — the grid argmin refined to the vertex of
  the parabola through it and its measured neighbours (``analysis.minimum.find_minimum``, the
  report's ``s_opt``; paper Fig. 6), a distance along the unit update direction û;
* ``s_opt_over_direction_norm``: ``s_opt / direction_norm`` (r, the λ that would make SGD a line
  search; ``direction_norm`` = ‖g‖ for plain SGD);
* ``update_step_over_s_opt``: ``update_step / s_opt``, the step taken relative to the optimal one
  (> 1: the step overshoots);
* ``fit_mae2``: the mean absolute error (nats) of the least-squares parabola on
  ``|s| <= analysis.polyfit.DEFAULT_WINDOW`` (``analysis.polyfit.fit_polynomials``, paper Fig. 4;
  logged only when the grid has at least three points in that window);
* ``loss_at_0``: the split's mean loss at s = 0 (nats).

The numbers come from the analysis package's own functions (no second fit here), applied to the
line as the store keeps it (its losses and norms cast to the store's array dtypes,
``store.schema.line_specs``): each scalar is, to TensorBoard's float32, the number
``losslines analyze`` reports for that line's ``train`` split. Lines of the all-directions mode and
the per-step values are not logged.

:class:`TensorBoardSink` tees: every record goes to the store's sink first, then its scalars to a
``torch.utils.tensorboard.SummaryWriter``. The driver wraps process 0's sink only (under
``torchrun`` the other processes log nothing) and closes it when the run ends. A run purges, in
TensorBoard's view, the events of the directory at or after its first step
(``SummaryWriter(purge_step=...)``): a resumed run's redone lines replace those logged after its
checkpoint, and a new run replaces an old one logged to the same directory.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from losslines.analysis.interpolate import loss_at
from losslines.analysis.minimum import find_minimum
from losslines.analysis.polyfit import DEFAULT_WINDOW, fit_polynomials, window_index
from losslines.records import DirectionsRecord, LineRecord, LineShape, StepRecord
from losslines.runner.config import ConfigError
from losslines.store.schema import StoreLayout, line_specs

__all__ = ["QUANTITIES", "TENSORBOARD_MISSING", "TensorBoardSink", "line_scalars", "require_tensorboard",
           "tensorboard_installed"]

QUANTITIES = ("s_opt", "s_opt_over_direction_norm", "update_step_over_s_opt", "fit_mae2", "loss_at_0")
TENSORBOARD_MISSING = ("config key 'store.tensorboard' needs the tensorboard package, which is not installed: "
                       "pip install 'losslines[tensorboard]'")


def tensorboard_installed() -> bool:
    """Can ``torch.utils.tensorboard.SummaryWriter`` be imported?"""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def require_tensorboard() -> None:
    """Raises:
        ConfigError: tensorboard is not installed (the message names the extra to install)."""
    if not tensorboard_installed():
        raise ConfigError(TENSORBOARD_MISSING)


def line_scalars(position: np.ndarray, losses: np.ndarray, direction_norm: float, update_step: float, *,
                 window: float | None = DEFAULT_WINDOW) -> dict[str, np.ndarray]:
    """The logged quantities of one line's splits (see the module docstring for their meaning).

    Args:
        position: ``[K]`` grid, distance along û.
        losses: ``[S, K]`` mean loss of each split in nats, NaN where not measured.
        direction_norm: ``‖u‖/λ`` of the line.
        update_step: ``‖u‖``, the distance along û the optimizer moved.
        window: half-width of the parabola fit's window; None: no ``fit_mae2``.

    Returns:
        ``{quantity: [S]}`` float64, in :data:`QUANTITIES` order (NaN where undefined, e.g. the
        ratios of an ``s_opt`` of 0).
    """
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    m = find_minimum(position, losses)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"s_opt": m.s_opt, "s_opt_over_direction_norm": m.s_opt / np.float64(direction_norm),
               "update_step_over_s_opt": np.float64(update_step) / m.s_opt}
    if window is not None:
        out["fit_mae2"] = fit_polynomials(position, losses, degrees=(2,), window=window).mae[2]
    out["loss_at_0"] = loss_at(position, losses, np.zeros(losses.shape[0]))
    return out


class TensorBoardSink:
    """A ``losslines.records.LineSink`` that passes every record to ``inner`` (the store's sink)
    and logs each line's :func:`line_scalars` to TensorBoard (see the module docstring).

    Args:
        inner: the sink the records are for (a ``StoreSink`` or a ``RankSink``).
        log_dir: the TensorBoard log directory (created when the sink is opened).
        purge_step: the run's first step: TensorBoard hides earlier-logged events at or after it.

    Raises:
        ConfigError: tensorboard is not installed.
    """

    def __init__(self, inner: Any, log_dir: str | os.PathLike[str], *, purge_step: int = 0) -> None:
        require_tensorboard()
        self.inner, self.log_dir, self.purge_step = inner, os.fspath(log_dir), int(purge_step)
        self._summary = None
        self._position: np.ndarray | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._window: float | None = None

    @property
    def writer(self):
        """The inner sink's writer (the store's)."""
        return self.inner.writer

    def open(self, shape: LineShape) -> None:
        """Open the inner sink (a refused shape leaves no log behind), then the log directory."""
        from torch.utils.tensorboard import SummaryWriter

        self.inner.open(shape)
        self._position = shape.positions
        self._dtypes = {spec.name: spec.dtype for spec in line_specs(StoreLayout.from_shape(shape))}
        try:
            enough = window_index(shape.positions, DEFAULT_WINDOW).size >= 3
        except ValueError:  # fewer than two grid points in the window
            enough = False
        self._window = DEFAULT_WINDOW if enough else None
        self._summary = SummaryWriter(self.log_dir, purge_step=self.purge_step)

    def append(self, record: LineRecord) -> Any:
        """Pass ``record`` on, then log its scalars at ``record.step``; returns the inner result."""
        result = self.inner.append(record)
        self.log(record)
        return result

    def append_step(self, record: StepRecord) -> Any:
        return self.inner.append_step(record)

    def append_directions(self, record: DirectionsRecord) -> Any:
        return self.inner.append_directions(record)

    def log(self, record: LineRecord) -> None:
        """Write the scalars of one line (the sink must be open)."""
        if self._summary is None:
            raise RuntimeError(f"the TensorBoard sink for {self.log_dir} is not open yet (a sampler opens it)")
        splits = [s for s in record.splits if f"loss_{s}" in self._dtypes]
        if not splits:
            return
        losses = np.stack([self._stored(f"loss_{s}", record.splits[s].loss) for s in splits])
        scalars = line_scalars(self._position, losses, self._stored("direction_norm", record.direction_norm),
                               self._stored("update_step", record.update_step), window=self._window)
        for quantity, values in scalars.items():
            for split, value in zip(splits, values):
                self._summary.add_scalar(f"{quantity}/{split}", float(value), global_step=record.step)
        self._summary.flush()  # a line takes seconds or more: show it now

    def _stored(self, name: str, value) -> np.ndarray:
        """``value`` as the store keeps the array ``name``, back in float64."""
        return np.asarray(value, dtype=self._dtypes[name]).astype(np.float64)

    def close(self) -> None:
        """Flush and close the log (idempotent); the store is closed by its own writer."""
        if self._summary is not None:
            self._summary.close()
            self._summary = None

    def __enter__(self) -> "TensorBoardSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
