"""Line plots (paper Figs. 2 and 5): one line with its batch-loss bands and the replayed steps.

Plotting only reads :class:`~losslines.analysis.results.LineView` records; it computes nothing.
Figures are built on :class:`matplotlib.figure.Figure` directly (the Agg canvas, no pyplot
state, no display, no LaTeX).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from losslines.analysis.results import LineView

_SPLIT_STYLE = {
    "train": dict(color="black", lw=1.8, label="full-batch loss L"),
    "batch": dict(color="tab:red", lw=1.2, label="direction-batch loss $L_B$"),
    "val": dict(color="tab:blue", lw=1.2, ls="--", label="held-out loss $L_V$"),
}
_MARK_STYLE = {"taken": ("tab:green", "step taken"), "optimum": ("black", r"$s_{opt}$")}


def line_figure(position: np.ndarray, view: LineView) -> Figure:
    """One line: L, L_B, L_V, min/max and quartile bands of random batches, marked steps."""
    fig = Figure(figsize=(9.0, 4.4), layout="constrained")
    draw_line(fig.add_subplot(), position, view)
    return fig


def draw_line(ax, position: np.ndarray, view: LineView) -> None:
    """:func:`line_figure`'s drawing, into a given matplotlib ``ax``."""
    if view.bands is not None:
        v = view.bands.values
        ax.fill_between(position, v[0], v[4], color="tab:orange", alpha=0.18,
                        label=f"min–max of {view.bands.n_draws} random batches (b={view.bands.batch_size})")
        ax.fill_between(position, v[1], v[3], color="tab:orange", alpha=0.4, label="quartiles")
    for split, values in view.losses.items():
        if np.isfinite(values).any():
            ax.plot(position, values, **_SPLIT_STYLE[split])
    train = view.losses.get("train")
    others = [k for k in view.marks if k not in _MARK_STYLE]
    cmap = [f"C{i}" for i in range(4, 10)]
    for key, s in sorted(view.marks.items()):
        color, label = _MARK_STYLE.get(key, (cmap[others.index(key) % len(cmap)] if key in others else "grey", key))
        ax.axvline(s, color=color, lw=1.0, ls=":" if key not in _MARK_STYLE else "-", alpha=0.9, label=f"{label}: {s:.3g}")
    ax.set_xlabel("step size s (distance along the unit update direction)")
    ax.set_ylabel("loss (nats)")
    drawn = any(np.isfinite(values).any() for values in view.losses.values())
    ax.set_title(f"line {view.line} (training step {view.step})" + ("" if drawn else ": no finite loss (diverged)"))
    if train is not None and np.isfinite(train).any():  # zoom on the full-batch line (L_B may run off)
        finite = train[np.isfinite(train)]
        span = float(finite.max() - finite.min())
        ax.set_ylim(float(finite.min()) - 0.1 * span, float(finite.max()) + 0.25 * span)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
