"""The lines drawn as line plots (Figs. 2, 5): their losses, batch-loss bands and marked steps.

Not a metric (it adds nothing to metrics.json): it reads the chosen lines whole, one at a time,
and marks the step sizes the metrics offer (``MetricResult.marks``, e.g. every replayed rule).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from losslines.analysis.bands import batch_bands
from losslines.analysis.results import AnalysisOptions, LineView
from losslines.analysis.source import LineRange, LineSource


def chosen_lines(lines: LineRange, plot_lines: tuple[int, ...] | None, committed: int,
                 nonfinite: np.ndarray | None = None) -> list[int]:
    """Positions among the analysed lines of the plotted ones (default: 4 spread out over the
    finite ones, ``nonfinite`` being the ``[L]`` flags of the non-finite lines).

    Raises:
        ValueError: a requested line is not among the analysed lines.
    """
    idx = lines.indices
    if plot_lines is None:
        finite = np.flatnonzero(~nonfinite) if nonfinite is not None and not nonfinite.all() else np.arange(idx.size)
        spread = np.linspace(0, finite.size - 1, min(4, finite.size)).round().astype(int)
        return sorted(set(finite[spread].tolist()))
    chosen = []
    for line in plot_lines:
        at = np.flatnonzero(idx == line)
        if at.size == 0:
            raise ValueError(f"plot line {line} is not among the analysed lines "
                             f"({lines.start}:{lines.stop}:{lines.step}, committed {committed})")
        chosen.append(int(at[0]))
    return chosen


def line_views(source: LineSource, lines: LineRange, options: AnalysisOptions, steps: np.ndarray | None,
               marks: Mapping[str, np.ndarray], nonfinite: np.ndarray | None = None) -> list[LineView]:
    """One :class:`LineView` per plotted line.

    Args:
        steps: ``[L]`` training step of each analysed line (None: the line index stands in).
        marks: ``{label: [L]}`` step sizes to mark; NaN ones are not marked.
        nonfinite: ``[L]`` flags of the non-finite lines: not chosen by default; one asked for is
            drawn as stored, without batch bands (as is a line whose per-sample losses hold ±inf).
    """
    idx = lines.indices
    n_b = source.shape("sample_loss_batch")[-1] if source.has("sample_loss_batch") else 0
    views = []
    for at in chosen_lines(lines, options.plot_lines, source.committed_lines, nonfinite):
        line = int(idx[at])
        one = LineRange(line, line + 1)
        losses = {s: source.read(f"loss_{s}", one)[0].astype(np.float64)
                  for s in ("train", "batch", "val") if source.has(f"loss_{s}")}
        bands = None
        if source.has("sample_loss_train") and not (nonfinite is not None and nonfinite[at]):
            per_sample = next(source.blocks("sample_loss_train", one, rows_per_block=1))[1][0]
            size = min(n_b or 128, per_sample.shape[1])
            if not np.isinf(per_sample).any():  # ±inf: losses beyond the sample dtype, no bands to draw
                bands = batch_bands(per_sample, size, max(options.n_draws, 8),
                                    np.random.default_rng([options.seed, line, 1]))
        marked = {k: float(v[at]) for k, v in marks.items() if np.isfinite(v[at])}
        views.append(LineView(line, int(steps[at]) if steps is not None else line, losses, bands, marked))
    return views
