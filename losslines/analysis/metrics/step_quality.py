"""Metric ``per_step``: the quality of every training step, from the store's ``steps/`` group.

The per-step mode stores, for every step, the loss and exact slope at θ_t and the loss at the
step taken (``measure.per_step``); :mod:`losslines.analysis.step_quality` turns them into the
improvement, its linear prediction and their ratio (the step's efficiency). Reported per split:
how many steps lowered the loss, and the distributions of improvement and efficiency over
training; the figure shows both over the steps (moving averages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.metric import FigureSpec, Metric, MetricResult, Parts, Plan, ReportPart, Setup, Stage
from losslines.analysis.smoothing import moving_average
from losslines.analysis.source import LineRange
from losslines.analysis.step_quality import StepQuality, step_quality
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from losslines.analysis.results import AnalysisResult

SPLITS = ("train", "batch", "val")


@dataclass(frozen=True)
class StepsResult:
    """Per split the step quality, and the training step of each entry."""

    steps: np.ndarray
    quality: Mapping[str, StepQuality]


class StepQualityMetric(Metric):
    """Improvement, linear prediction and efficiency of every training step (per-step mode)."""

    name = "per_step"
    stage = Stage.WHOLE
    reads = ()
    requires = ("steps/loss0_train", "steps/slope0_train", "steps/loss_at_update_train", "steps/update_step")

    def plan(self, setup: Setup) -> Plan:
        sub = setup.source.steps()
        if sub is None:
            return Plan(setup, run=False, skipped=(
                "per-step quality: the store has no steps/ group with committed steps (measure.per_step)",))
        splits = tuple(s for s in SPLITS if all(sub.has(f"{k}_{s}") for k in ("loss0", "slope0", "loss_at_update")))
        if not splits or not sub.has("update_step"):
            return Plan(setup, run=False, skipped=("per-step quality: steps/ lacks losses, slopes or update_step",))
        return Plan(setup, params=(sub, splits))

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        sub, splits = plan.params
        every = LineRange(0, sub.committed_lines)
        update = sub.read("update_step", every)
        quality = {s: step_quality(sub.read(f"loss0_{s}", every), sub.read(f"loss_at_update_{s}", every),
                                   sub.read(f"slope0_{s}", every), update) for s in splits}
        return MetricResult(value=StepsResult(sub.read("step", every), quality))

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        result: StepsResult = self.output(analysis).value
        out: dict[str, Any] = {"steps": int(result.steps.size)}
        for split, q in result.quality.items():
            finite = np.isfinite(q.improvement)
            out[split] = {"fraction_improving": json_number(np.mean(q.improvement[finite] > 0)) if finite.any() else None,
                          "improvement": distribution(q.improvement), "efficiency": distribution(q.efficiency)}
        return {"per_step": out}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        s = summary["per_step"]
        rows = [f"| {split} | {fmt(v['fraction_improving'], '.3f')} | {fmt(v['improvement']['median'])} | "
                f"{fmt(v['efficiency']['median'])} |" for split, v in s.items() if split != "steps"]
        return ReportPart(section=(
            "", "## Every step (per-step mode)", "",
            f"{s['steps']} training steps: the loss at θ_t, its exact slope and the loss at the step taken. "
            "Efficiency = improvement / (−slope · step): 1 linear, 0.5 the optimal step of a parabola, < 0 "
            "an overshoot that raised the loss.", "",
            "| split | steps that lowered the loss | median improvement (nats) | median efficiency |",
            "|---|---|---|---|", *rows))

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        return (FigureSpec("every step: improvement and efficiency", "per_step", steps_figure),)


def steps_figure(res: AnalysisResult) -> Figure:
    """Improvement and efficiency of every step over training (moving averages, per split)."""
    from matplotlib.figure import Figure

    result: StepsResult = res.outputs["per_step"].value
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    width = max(1, min(res.options.smoothing, result.steps.size // 5 or 1))
    for split, q in result.quality.items():
        left.plot(result.steps, moving_average(q.improvement, width), label=split)
        right.plot(result.steps, moving_average(np.clip(q.efficiency, -2, 2), width), label=split)
    left.axhline(0, color="k", lw=0.6)
    left.set(title="improvement L(0) − L(step)", xlabel="training step", ylabel="nats")
    right.axhline(0.5, color="k", lw=0.6, ls=":")
    right.set(title="efficiency (0.5: optimal step of a parabola)", xlabel="training step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
