"""Metric ``minimum``: the refined full-batch minimum of every line and the key ratio (Fig. 6).

Per line (:mod:`losslines.analysis.minimum`): ``s_opt`` refined from the grid argmin, its error
estimate, edge and refinement flags; ``ratio = s_opt / direction_norm`` (constant r means SGD
with λ = r is a line search) and ``overshoot = update_step / s_opt`` (> 1: the step overshoots).
With ``compat = "original"`` (:mod:`losslines.analysis.compat`): the grid argmin of the curve
pooled with the direction batch, unrefined; ``s_opt_err`` is then its distance to the refined
vertex.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.compat import full_batch_curve, is_original, pool_weights
from losslines.analysis.metric import Block, Metric, Parts, Plan, ReportPart, Setup
from losslines.analysis.minimum import find_minimum
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult


class LineMinimumMetric(Metric):
    """Refined minimum s_opt of each full-batch line, r = s_opt / direction_norm, update_step / s_opt."""

    name = "minimum"
    reads = ("loss_train", "direction_norm", "update_step")

    def plan(self, setup: Setup) -> Plan:
        skipped = () if setup.source.has("direction_norm") else (
            "s_opt / direction_norm: the store has no 'direction_norm'",)
        if is_original(setup):
            return Plan(setup, reads=self.reads + ("loss_batch",), skipped=skipped, params=pool_weights(setup.source))
        return Plan(setup, reads=self.reads, skipped=skipped)

    def block(self, plan: Plan, block: Block) -> Parts:
        curve = full_batch_curve(block, plan.params)
        m = find_minimum(plan.setup.position, curve)
        if is_original(plan.setup):  # the original's s_opt: the grid argmin; its error: the refinement's shift
            at = np.argmin(np.where(np.isfinite(curve), curve, np.inf), axis=1)
            m = replace(m, s_opt=m.s_grid, s_opt_err=np.abs(m.s_opt - m.s_grid),
                        loss_min=np.where(np.isfinite(m.s_grid), curve[np.arange(curve.shape[0]), at], np.nan),
                        refined=np.zeros_like(m.refined))
        nan = np.full(m.s_opt.shape[0], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = m.s_opt / block.f64("direction_norm") if "direction_norm" in block.arrays else nan
            overshoot = block.f64("update_step") / m.s_opt if "update_step" in block.arrays else nan
        return {"s_opt": m.s_opt, "s_grid": m.s_grid, "s_opt_err": m.s_opt_err, "loss_min": m.loss_min,
                "at_edge": m.at_edge, "refined": m.refined, "ratio": ratio, "overshoot": overshoot}

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        pl = self.output(analysis).per_line
        ratio = distribution(pl["ratio"])
        ratio["cv"] = json_number(ratio["std"] / abs(ratio["mean"])) if ratio["n"] and ratio["mean"] else None
        return {"minimum": {
            "s_opt": distribution(pl["s_opt"]), "s_opt_err": distribution(pl["s_opt_err"]),
            "refinement_shift": distribution(np.abs(pl["s_opt"] - pl["s_grid"])),
            "at_edge_lines": int(np.sum(pl["at_edge"])), "refined_lines": int(np.sum(pl["refined"])),
            "ratio_s_opt_over_direction_norm": ratio, "update_step_over_s_opt": distribution(pl["overshoot"]),
        }}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        m = summary["minimum"]
        r = m["ratio_s_opt_over_direction_norm"]
        original = summary["options"].get("compat") == "original"
        return ReportPart(headline=(
            f"| median s_opt ({'grid argmin of the pooled curve' if original else 'refined'}) | "
            f"{fmt(m['s_opt']['median'])} |",
            f"| median {'shift of s_opt by the refinement' if original else 'refinement error of s_opt'} | "
            f"{fmt(m['s_opt_err']['median'])} |",
            f"| lines with the minimum on the grid edge | {m['at_edge_lines']} |",
            f"| r = s_opt / direction_norm: median (CV) | {fmt(r['median'])} ({fmt(r.get('cv'), '.3f')}) |",
            f"| update_step / s_opt: median (>1 overshoots) | {fmt(m['update_step_over_s_opt']['median'])} |",
        ))
