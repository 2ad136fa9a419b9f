"""Figures for a notebook: each draws into a given matplotlib ``ax`` (or a new figure) and returns
the ``ax``; the report's multi-panel figures (``losslines.analysis.figures_metrics``) return
Figures. matplotlib is imported when a figure is drawn, not before.

* :func:`plot_line` — one stored line: full-batch, direction-batch and held-out losses, the
  quartile and min–max bands of random training batches, the step taken and the optimum;
* :func:`plot_per_line` — any per-line result over training (``s_opt``, ``mae2``, ...), raw and
  smoothed, from an ``AnalysisResult``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisOptions, AnalysisResult


def _axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


def plot_line(store: Any, line: int, *, ax=None, options: AnalysisOptions | None = None):
    """Draw committed line ``line`` of ``store`` (a path, URL or open ``LineStore``) with its
    batch-loss bands and the marked steps (taken, the optimum, the replayed rules); returns the ax.

    Raises:
        ValueError: ``line`` is not a committed line.
    """
    from losslines.analysis.analyze import compute_store
    from losslines.analysis.figures_lines import draw_line

    res = compute_store(store, lines=f"{int(line)}:{int(line) + 1}", options=options)
    if not res.views or res.views[0].line != int(line):
        raise ValueError(f"line {line} is not a committed line of {res.store}")
    ax = _axes(ax, (8.0, 4.4))
    draw_line(ax, res.position, res.views[0])
    return ax


def plot_per_line(res: AnalysisResult, name: str, *, ax=None, smoothing: int | None = None, label: str | None = None):
    """Draw the per-line result ``name`` (a column of ``res.to_dataframe()``) over training steps,
    raw and as a moving average of ``smoothing`` lines (default: the analysis's); returns the ax.

    Raises:
        KeyError: ``name`` is not a per-line result (the message lists them).
    """
    from losslines.analysis.figures_metrics import _curve

    columns = res.per_line_columns()
    if name not in columns or name == "line":
        raise KeyError(f"{name!r} is not a per-line result; there are: {', '.join(k for k in columns if k != 'line')}")
    ax = _axes(ax, (7.0, 3.8))
    x = columns.get("step", columns["line"])
    _curve(ax, x, np.asarray(columns[name], dtype=np.float64), smoothing or res.options.smoothing, label or name)
    ax.set_xlabel("training step")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    return ax


def save(ax_or_fig, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """Write the figure of an ax (or a Figure) to ``path`` (format from the suffix)."""
    fig = ax_or_fig.figure if hasattr(ax_or_fig, "figure") and not hasattr(ax_or_fig, "savefig") else ax_or_fig
    fig.savefig(path, dpi=dpi)
