"""Metric ``rules``: step rules replayed on every line, judged on the full-batch loss (Fig. 6).

The rules (:mod:`losslines.analysis.steprules`): the step taken, the refined optimum, SGD with
other learning rates (default 1/4, 1/2, 1 and 2 times the store's median λ), PAL on the
direction batch and on the full batch. Each step's improvement ``L(0) - L(s)`` and distance
``s_opt - s`` go to per_line.npz as ``rule_{step,improvement,distance}|<rule>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.compat import PoolWeights, full_batch_curve, is_original, pool_weights
from losslines.analysis.metric import Block, FigureSpec, Metric, MetricResult, Parts, Plan, ReportPart, Setup
from losslines.analysis.steprules import StepOutcome, judge_step, pal_on_line, rule_key, sgd_step
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

SGD_FACTORS = (0.25, 0.5, 1.0, 2.0)
OUTCOME_PARTS = ("step", "improvement", "distance")


@dataclass(frozen=True)
class ReplayedRules:
    """The judged steps of every rule.

    Attributes:
        outcomes: ``{rule key: StepOutcome}`` with ``[L]`` fields.
        accumulated: ``{rule key: {"improvement": [L], "distance": [L]}}`` running sums (NaN as 0).
    """

    outcomes: dict[str, StepOutcome]
    accumulated: dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class _RulesPlan:
    """The replayed learning rates, and the pool weights of ``compat = "original"`` (else None)."""

    sgd_lrs: tuple[float, ...]
    pool: PoolWeights | None


class ReplayedRulesMetric(Metric):
    """Replayed step rules (taken, optimum, SGD, PAL, full-batch PAL) and how good each step is."""

    name = "rules"
    reads = ("loss_train", "loss_batch", "update_step", "direction_norm", "loss_at_update_train",
             "loss_at_update_batch")
    needs = ("minimum", "slope_sources")

    def plan(self, setup: Setup) -> Plan:
        skipped = []
        sgd_lrs = _sgd_lrs(setup, skipped)
        if not setup.source.has("loss_batch"):
            skipped.append("PAL on the direction batch: the store has no 'loss_batch'")
        pool = pool_weights(setup.source) if is_original(setup) else None
        return Plan(setup, reads=self.reads, skipped=tuple(skipped), params=_RulesPlan(sgd_lrs, pool))

    def block(self, plan: Plan, block: Block) -> Parts:
        position, pal_mus = plan.setup.position, plan.setup.options.pal_mus
        pool, nearest, have = plan.params.pool, is_original(plan.setup), block.arrays
        lt = full_batch_curve(block, pool)  # the full-batch line the steps are judged on
        s_opt = block.upstream["minimum"]["s_opt"]
        slopes = block.upstream["slope_sources"]
        slope_full = slopes["slope0_train"] if pool is None else pool.pool(slopes["slope0_train"], slopes["slope0_batch"])
        steps = {rule_key("taken"): block.f64("update_step") if "update_step" in have
                 else np.full(lt.shape[0], np.nan), rule_key("optimum"): s_opt}
        if "direction_norm" in have:
            for lr in plan.params.sgd_lrs:
                steps[rule_key("sgd", lr)] = sgd_step(lr, block.f64("direction_norm"))
        if "loss_batch" in have:
            lb = block.f64("loss_batch")
            for mu in pal_mus:
                steps[rule_key("pal", mu)] = pal_on_line(position, lb, slopes["slope0_batch"], mu, nearest=nearest)
        for mu in pal_mus:
            steps[rule_key("fbpal", mu)] = pal_on_line(position, lt, slope_full, mu, nearest=nearest)
        exact = _loss_at_update(block, pool)
        parts = {}
        for key, s in steps.items():
            outcome = judge_step(position, lt, s_opt, s, loss_at_step=exact if key == "taken" else None)
            parts.update({f"{p}|{key}": getattr(outcome, p) for p in OUTCOME_PARTS})
        return parts

    def finish(self, plan: Plan, parts: Parts) -> MetricResult:
        keys = [k.split("|", 1)[1] for k in parts if k.startswith("step|")]
        outcomes = {k: StepOutcome(*(parts[f"{p}|{k}"] for p in OUTCOME_PARTS)) for k in keys}
        accumulated = {k: {"improvement": np.nancumsum(o.improvement), "distance": np.nancumsum(o.distance)}
                       for k, o in outcomes.items()}
        arrays = {f"rule_{p}|{k}": getattr(o, p) for k, o in outcomes.items() for p in OUTCOME_PARTS}
        return MetricResult(arrays=arrays, value=ReplayedRules(outcomes, accumulated),
                            marks={k: o.step for k, o in outcomes.items()})

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        rules: ReplayedRules = self.output(analysis).value
        acc = rules.accumulated
        return {"rules": {k: {"step": distribution(o.step), "improvement": distribution(o.improvement),
                              "accumulated_improvement": json_number(acc[k]["improvement"][-1]),
                              "distance": distribution(o.distance), "abs_distance": distribution(np.abs(o.distance)),
                              "accumulated_distance": json_number(acc[k]["distance"][-1])}
                          for k, o in rules.outcomes.items()}}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        lines = ["", "## Step rules on the full-batch line", "",
                 "| rule | median step | mean improvement | accumulated improvement | mean distance s_opt − s "
                 "| lines with the step off the measured grid |", "|---|---|---|---|---|---|"]
        finite = summary["analysed_lines"] - summary.get("nonfinite", {}).get("lines", 0)  # those left out: no step
        for k, v in summary["rules"].items():
            lines.append(f"| {k} | {fmt(v['step']['median'])} | {fmt(v['improvement']['mean'])} | "
                         f"{fmt(v['accumulated_improvement'])} | {fmt(v['distance']['mean'])} | "
                         f"{finite - v['improvement']['n']} |")
        lines += ["", "Improvements use the exact stored loss at the update step where present, else the "
                  "parabola through the 3 nearest grid points; a step off the measured grid has no improvement "
                  "(it counts as 0 in the accumulated sum)."]
        return ReportPart(section=tuple(lines))

    def figures(self, analysis: AnalysisResult) -> tuple[FigureSpec, ...]:
        from losslines.analysis.figures_metrics import metrics_figure

        return (FigureSpec("metrics over training (Fig. 6)", "metrics", metrics_figure),)


def _loss_at_update(block: Block, pool: PoolWeights | None) -> np.ndarray | None:
    """The exact stored full-batch loss at the step taken (pooled like the curve), or None."""
    if "loss_at_update_train" not in block.arrays:
        return None
    if pool is None:
        return block.f64("loss_at_update_train")
    if "loss_at_update_batch" not in block.arrays:
        return None
    return pool.pool(block.f64("loss_at_update_train"), block.f64("loss_at_update_batch"))


def _sgd_lrs(setup: Setup, skipped: list[str]) -> tuple[float, ...]:
    """The replayed learning rates: the options', else multiples of the store's median λ."""
    if setup.options.sgd_lrs is not None:
        return tuple(setup.options.sgd_lrs)
    source = setup.source
    lr = source.read("lr", setup.lines).astype(np.float64) if source.has("lr") else np.empty(0)
    finite = lr[np.isfinite(lr)]
    if finite.size == 0:
        skipped.append("replayed SGD: the store's learning rate is unknown (lr is NaN); pass sgd_lrs / --sgd-lrs")
        return ()
    base = float(np.median(finite))
    return tuple(float(f"{base * f:.6g}") for f in SGD_FACTORS)
