"""Metric ``per_sample_consistency``: the stored per-sample losses average to the stored mean.

Every stored per-sample value is read (the same blocks as the batch-size study): per line and
split, the largest gap over the grid between the mean of the per-sample losses and the stored
mean loss, in nats. A gap beyond storage rounding means the per-sample arrays and the means
disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.metric import Block, Metric, Parts, Plan, ReportPart, Setup, Stage
from losslines.analysis.metrics.batch_size_study import NO_SAMPLE_TRAIN
from losslines.analysis.summary_stats import fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

SPLITS = ("batch", "train")


class SampleConsistencyMetric(Metric):
    """Per line: max |mean of stored per-sample losses - stored mean loss| over the grid."""

    name = "per_sample_consistency"
    stage = Stage.SAMPLES
    requires = ("sample_loss_batch", "sample_loss_train")

    def plan(self, setup: Setup) -> Plan:
        present = tuple(s for s in SPLITS if setup.source.has(f"sample_loss_{s}"))
        skipped = () if "train" in present else (NO_SAMPLE_TRAIN,)
        reads = tuple(f"{kind}_{s}" for s in present for kind in ("sample_loss", "loss"))
        return Plan(setup, run=bool(present), reads=reads, skipped=skipped, params=present)

    def block(self, plan: Plan, block: Block) -> Parts:
        parts = {}
        for split in plan.params:
            samples, mean = block.arrays[f"sample_loss_{split}"], block.arrays.get(f"loss_{split}")
            gaps = np.full(samples.shape[0], np.nan)
            for r in range(samples.shape[0]):
                if mean is None:
                    continue
                gap = np.abs(np.mean(samples[r], axis=1, dtype=np.float64) - mean[r])
                if np.isfinite(gap).any():
                    gaps[r] = float(np.max(gap[np.isfinite(gap)]))
            parts[f"sample_mean_gap_{split}"] = gaps
        return parts

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        pl = self.output(analysis).per_line
        out = {}
        for split in ("train", "batch"):
            gap = pl.get(f"sample_mean_gap_{split}")
            if gap is not None:
                out[split] = {"max_abs_gap_mean_of_samples_vs_stored_mean":
                              json_number(np.nanmax(gap)) if np.isfinite(gap).any() else None}
        return {"per_sample_consistency": out}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        return ReportPart(section=("", "Per-sample check (mean of stored per-sample losses vs stored mean): " + ", ".join(
            f"{k}: max gap {fmt(v['max_abs_gap_mean_of_samples_vs_stored_mean'])} nats"
            for k, v in summary["per_sample_consistency"].items()) + "."))
