"""Metric ``slope_sources``: the slope at s = 0 of the full-batch and direction-batch lines.

The store's exact slope (forward-mode jvp, ``slope0_{train,batch}``) is used where finite, the
grid stencil of :mod:`losslines.analysis.slopes` elsewhere; how many lines used which is counted,
never silent. The replayed PAL rules read these slopes. For SGD the direction batch's slope is
``-‖g‖``, so ``|L_B'(0) + direction_norm| / direction_norm`` checks the stored slopes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.metric import Block, Metric, MetricResult, Parts, Plan, ReportPart, Setup
from losslines.analysis.slopes import slope_stencil
from losslines.analysis.summary_stats import distribution

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

SPLITS = ("train", "batch")


@dataclass(frozen=True)
class SlopeSources:
    """Where the slopes came from.

    Attributes:
        counts: ``{split: {"exact": lines, "grid": lines}}`` for the splits with a line.
        batch_check: ``[L]`` ``|slope0_batch + direction_norm| / direction_norm``, or None
            without both.
    """

    counts: dict[str, dict[str, int]]
    batch_check: np.ndarray | None


class SlopeSourcesMetric(Metric):
    """Slopes at 0 (exact where stored, grid estimate elsewhere) and their sources."""

    name = "slope_sources"
    reads = ("loss_train", "loss_batch", "slope0_train", "slope0_batch", "direction_norm")

    def plan(self, setup: Setup) -> Plan:
        stencil = slope_stencil(setup.position, setup.options.slope_half_points)
        return Plan(setup, reads=self.reads, params=stencil)

    def block(self, plan: Plan, block: Block) -> Parts:
        parts = {}
        for split in SPLITS:
            if f"loss_{split}" not in block.arrays:
                continue
            estimate = plan.params.apply(block.f64(f"loss_{split}"))
            if f"slope0_{split}" in block.arrays:
                exact = block.f64(f"slope0_{split}")
                use = np.isfinite(exact)
                parts[f"slope0_{split}"] = np.where(use, exact, estimate)
            else:
                use = np.zeros(estimate.shape[0], dtype=bool)
                parts[f"slope0_{split}"] = estimate
            parts[f"exact_{split}"] = use
            # neither: a line left out as non-finite (no finite loss: compute.py)
            parts[f"grid_{split}"] = ~use & np.isfinite(block.f64(f"loss_{split}")).any(axis=1)
        if "slope0_batch" in parts and "direction_norm" in block.arrays:
            norm = block.f64("direction_norm")
            with np.errstate(invalid="ignore", divide="ignore"):
                parts["batch_check"] = np.abs(parts["slope0_batch"] + norm) / norm
        return parts

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        counts = {}
        for split in SPLITS:
            if f"exact_{split}" in parts:
                counts[split] = {"exact": int(parts[f"exact_{split}"].sum()), "grid": int(parts[f"grid_{split}"].sum())}
        per_line = {f"slope0_{s}": parts[f"slope0_{s}"] for s in SPLITS if f"slope0_{s}" in parts}
        return MetricResult(per_line=per_line, value=SlopeSources(counts, parts.get("batch_check")))

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        sources: SlopeSources = self.output(analysis).value
        out: dict[str, Any] = {"slope_sources": sources.counts}
        if sources.batch_check is not None:
            out["batch_slope_plus_direction_norm_rel"] = distribution(sources.batch_check)
        return out

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        return ReportPart(section=("", "Slope sources (exact jvp from the store vs grid estimate): "
                                       f"`{json.dumps(summary['slope_sources'])}`."))
