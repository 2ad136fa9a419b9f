"""Metric ``directions``: how much the line depends on the batch that chose its direction (Fig. 8).

Reads the store's ``directions/`` group (M lines from the same parameters at a few training
steps) once, whole: it is small. Per position, the spread over the M directions of ``s_opt``,
of ``r = s_opt / direction_norm``, the degree-2 fit MAE and the mean distance between the lines
(:mod:`losslines.analysis.direction_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.direction_stats import DirectionStats, direction_stats
from losslines.analysis.metric import FigureSpec, Metric, MetricResult, Parts, Plan, ReportPart, Setup, Stage
from losslines.analysis.source import LineRange
from losslines.analysis.summary_stats import distribution, fmt
from losslines.records import nonfinite_line

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult


@dataclass(frozen=True)
class DirectionSpread:
    """Statistics over directions, and the training step of each position.

    Attributes:
        stats: ``[P, M]`` / ``[P]`` statistics.
        steps: ``[P]`` training step of each position (its line index without ``step``).
    """

    stats: DirectionStats
    steps: np.ndarray


class DirectionSpreadMetric(Metric):
    """Spread of s_opt, r, MAE_2 and line distances over many directions from the same parameters."""

    name = "directions"
    stage = Stage.WHOLE
    reads = ()
    requires = ("directions/loss_train", "directions/direction_norm")

    def plan(self, setup: Setup) -> Plan:
        sub = setup.source.directions()
        if sub is None:
            return Plan(setup, run=False, skipped=(
                "all-directions statistics (Fig. 8): the store has no directions/ group with committed lines",))
        if not sub.has("loss_train") or not sub.has("direction_norm"):
            return Plan(setup, run=False, skipped=(
                "all-directions statistics: directions/ lacks loss_train or direction_norm",))
        return Plan(setup, params=sub)

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        sub, position = plan.params, plan.setup.position
        every = LineRange(0, sub.committed_lines)
        losses = sub.read("loss_train", every).astype(np.float64)
        norm = sub.read("direction_norm", every).astype(np.float64)
        # a diverged θ_t: its direction lines are non-finite (records.nonfinite_line), left out like unmeasured ones
        zero = np.flatnonzero(position == 0.0)
        nonfinite = nonfinite_line(norm, 0.0, {"train": losses[..., zero[0]] if zero.size else 0.0})  # what it reads
        notes = ()
        if nonfinite.any():
            losses[nonfinite], norm[nonfinite] = np.nan, np.nan
            notes = (f"all directions: {int(nonfinite.sum())} of {nonfinite.size} direction lines are non-finite "
                     "(NaN or ±inf at s = 0: a diverged θ_t) and left out",)
        stats = direction_stats(position, losses, norm, window=plan.setup.options.window)
        steps = sub.read("step", every) if sub.has("step") else every.indices
        return MetricResult(value=DirectionSpread(stats, steps), notes=notes)

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        ds: DirectionStats = self.output(analysis).value.stats
        return {"directions": {"positions": int(ds.s_opt.shape[0]), "directions": int(ds.s_opt.shape[1]),
                               "s_opt_std_over_directions": distribution(_std_over_directions(ds.s_opt)),
                               "ratio_std_over_directions": distribution(_std_over_directions(ds.ratio)),
                               "mae2": distribution(ds.mae2), "mean_distance": distribution(ds.mean_distance)}}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        d = summary["directions"]
        return ReportPart(section=(
            "", "## All directions", "", f"{d['positions']} position(s) × {d['directions']} directions; "
            f"median std of s_opt over directions {fmt(d['s_opt_std_over_directions']['median'])}, "
            f"of r {fmt(d['ratio_std_over_directions']['median'])}; median MAE_2 {fmt(d['mae2']['median'])}."))

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        from losslines.analysis.figures_metrics import directions_figure

        return (FigureSpec("all directions (Fig. 8)", "directions", directions_figure),)


def _std_over_directions(values: np.ndarray) -> np.ndarray:
    """``[P, M]`` -> ``[P]`` std over the finite directions of each position (NaN where none is)."""
    finite = np.isfinite(values)
    out = np.full(values.shape[0], np.nan)
    rows = finite.any(axis=1)
    out[rows] = np.nanstd(np.where(finite, values, np.nan)[rows], axis=1)
    return out
