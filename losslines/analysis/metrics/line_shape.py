"""Metric ``shape``: how parabolic each full-batch line is on the window (Fig. 4).

Per line (:mod:`losslines.analysis.polyfit`): the MAE of the least-squares polynomial of every
degree in ``options.degrees`` on ``|s| <= options.window``, its coefficients (per_line.npz
``coef_deg<k>``), and a "not parabolic" flag with the kink position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.metric import Block, FigureSpec, Metric, MetricResult, Parts, Plan, ReportPart
from losslines.analysis.polyfit import fit_polynomials, nonparabolic
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

MAE2_PARABOLIC = 1e-3  # paper, claim 1: MAE_2 of about 1e-3 or below


class LineShapeMetric(Metric):
    """Polynomial fit MAE per degree, coefficients, and the not-parabolic flag of each line."""

    name = "shape"
    reads = ("loss_train",)

    def block(self, plan: Plan, block: Block) -> Parts:
        position, options = plan.setup.position, plan.setup.options
        lt = block.f64("loss_train")
        fits = fit_polynomials(position, lt, degrees=options.degrees, window=options.window)
        flag, kink = nonparabolic(position, lt, fits.mae.get(2, np.full(lt.shape[0], np.nan)),
                                  window=options.window, rel_tol=options.rel_tol)
        parts = {"not_parabolic": flag, "kink_position": kink}
        parts.update({f"mae{k}": fits.mae[k] for k in options.degrees})
        parts.update({f"coef_deg{k}": fits.coef[k] for k in options.degrees})
        return parts

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        degrees = plan.setup.options.degrees
        coef = {k: parts[f"coef_deg{k}"] for k in degrees}
        per_line = {k: v for k, v in parts.items() if not k.startswith("coef_deg")}
        return MetricResult(per_line=per_line, arrays={f"coef_deg{k}": v for k, v in coef.items()}, value=coef)

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        pl, coef, options = self.output(analysis).per_line, self.output(analysis).value, analysis.options
        mae2 = pl.get("mae2")
        return {"shape": {
            "window": options.window,
            "mae": {str(k): distribution(pl[f"mae{k}"]) for k in options.degrees},
            "fraction_mae2_below_1e-3": json_number(np.mean(mae2[np.isfinite(mae2)] < MAE2_PARABOLIC))
            if mae2 is not None and np.isfinite(mae2).any() else None,
            "not_parabolic_lines": int(np.sum(pl["not_parabolic"])),
            "coef_deg2": {n: distribution(coef[2][:, j]) for j, n in enumerate(("a", "b", "c"))} if 2 in coef else None,
        }}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        sh = summary["shape"]
        rows = [f"| median fit MAE, degree {k}, window ±{sh['window']:g} | {fmt(st['median'])} |"
                for k, st in sh["mae"].items()]
        rows += [f"| fraction of lines with MAE_2 < 1e-3 | {fmt(sh['fraction_mae2_below_1e-3'], '.3f')} |",
                 f"| lines flagged not parabolic (kink) | {sh['not_parabolic_lines']} |"]
        return ReportPart(headline=tuple(rows))

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        from losslines.analysis.figures_metrics import shape_figure

        return (FigureSpec("parabolic shape: fit MAE and coefficients (Fig. 4)", "shape", shape_figure),)
