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
        sub = plan.params
        every = LineRange(0, sub.committed_lines)
        stats = direction_stats(plan.setup.position, sub.read("loss_train", every), sub.read("direction_norm", every),
                                window=plan.setup.options.window)
        steps = sub.read("step", every) if sub.has("step") else every.indices
        return MetricResult(value=DirectionSpread(stats, steps))

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        ds: DirectionStats = self.output(analysis).value.stats
        return {"directions": {"positions": int(ds.s_opt.shape[0]), "directions": int(ds.s_opt.shape[1]),
                               "s_opt_std_over_directions": distribution(np.nanstd(ds.s_opt, axis=1)),
                               "ratio_std_over_directions": distribution(np.nanstd(ds.ratio, axis=1)),
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
