"""Metric ``distances``: line-to-line distances of the min-shifted lines (Fig. 3), tiled.

Each block contributes the min-shifted window of its lines (every ``stride``-th analysed line
beyond ``options.max_distance_lines``); the N x N matrix is then walked in tiles by
:func:`losslines.analysis.distances.blockwise_distances` and never held in memory. With
``options.save_distance_matrix`` every tile is also written to ``distances.zarr`` (float32) in
the report folder. A line without a finite window point (diverged) is left out, with a note.
With ``compat = "original"`` the window is the original's 66 grid points around 0, averaged
without weights (:mod:`losslines.analysis.compat`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.compat import distance_window_index, is_original
from losslines.analysis.distances import DistanceSummary, Sink, blockwise_distances, shifted_window
from losslines.analysis.polyfit import window_index
from losslines.analysis.parallel import current_executor
from losslines.analysis.metric import Block, FigureSpec, Metric, MetricResult, Parts, Plan, ReportPart, Setup
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult


@dataclass(frozen=True)
class LineDistances:
    """The distance matrices' summary and which lines they compare.

    Attributes:
        summary: O(N) summaries of the matrix; None with fewer than two lines.
        lines: ``[N]`` committed indices of the compared lines.
    """

    summary: DistanceSummary | None
    lines: np.ndarray


class LineDistancesMetric(Metric):
    """Mean min-shifted distance between lines: all pairs, the first 50, the rest, consecutive."""

    name = "distances"
    reads = ("loss_train",)

    def plan(self, setup: Setup) -> Plan:
        n = len(setup.lines)
        stride = max(1, math.ceil(n / setup.options.max_distance_lines))
        notes = (f"distance matrices use every {stride}-th analysed line ({math.ceil(n / stride)} lines)",) \
            if stride > 1 else ()
        return Plan(setup, reads=self.reads, notes=notes, params=stride)

    def block(self, plan: Plan, block: Block) -> Parts:
        stride, lt = plan.params, block.f64("loss_train")
        first = (-block.offset) % stride
        return {"shifted": shifted_window(plan.setup.position, lt[first::stride], self._window(plan.setup))[0]}

    def _window(self, setup: Setup) -> np.ndarray:
        """The compared grid points: ``|s| <= window``, or the original's 66 points (``compat``)."""
        if is_original(setup):
            return distance_window_index(setup.position)
        return window_index(setup.position, setup.options.window)

    def _window_position(self, plan: Plan) -> np.ndarray:
        return plan.setup.position[self._window(plan.setup)]

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        setup, stride = plan.setup, plan.params
        a = parts["shifted"]
        lines = setup.lines.indices[::stride]
        notes = ()
        measured = np.isfinite(a).any(axis=1)  # a diverged line has no finite window point
        if not measured.all():
            notes = (f"distance matrices: {int((~measured).sum())} line(s) without a finite window point "
                     f"left out (e.g. line {int(lines[~measured][0])})",)
            a, lines = a[measured], lines[measured]
        options = setup.options
        sink = _matrix_sink(setup.out_dir, len(setup.lines), stride, options.distance_block) \
            if options.save_distance_matrix and setup.out_dir is not None else None
        if a.shape[0] < 2:
            return MetricResult(computed=False, value=LineDistances(None, lines), notes=notes,
                                skipped=("distance matrices: fewer than two lines analysed",))
        executor = current_executor()
        summary = blockwise_distances(a, block=options.distance_block, view_size=options.view_size, sink=sink,
                                      map_tiles=executor.map if executor.parallel else None,
                                      position=None if is_original(setup) else self._window_position(plan))
        return MetricResult(value=LineDistances(summary, lines), notes=notes)

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        d: DistanceSummary = self.output(analysis).value.summary
        return {"distances": {"lines": d.n_lines, "window_points": d.n_points, "mean_all": json_number(d.mean_all),
                              "mean_first_50": json_number(d.mean_first), "mean_rest": json_number(d.mean_rest),
                              "consecutive": distribution(d.consecutive)}}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        d = summary["distances"]
        return ReportPart(headline=(f"| mean line-to-line distance D: all / first 50 / rest | {fmt(d['mean_all'])} / "
                                    f"{fmt(d['mean_first_50'])} / {fmt(d['mean_rest'])} |",))

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        from losslines.analysis.figures_metrics import distance_figure

        return (FigureSpec("line-to-line distances (Fig. 3)", "distances", distance_figure),)


def _matrix_sink(out: Path, n_analysed: int, stride: int, block: int) -> Sink:
    """Write every distance tile into ``out/distances.zarr`` (float32 ``[N, N]``, on disk)."""
    import zarr

    n = len(range(0, n_analysed, stride))
    array = zarr.create_array(store=str(out / "distances.zarr"), shape=(n, n), chunks=(block, block),
                              dtype="float32", fill_value=float("nan"), overwrite=True,
                              dimension_names=("line_a", "line_b"))

    def sink(r0: int, c0: int, tile: np.ndarray) -> None:
        array[r0:r0 + tile.shape[0], c0:c0 + tile.shape[1]] = tile.astype(np.float32)

    return sink
