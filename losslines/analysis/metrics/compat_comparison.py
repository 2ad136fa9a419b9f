"""Metric ``compat``: with ``--compat original``, the original's numbers next to the default ones.

Runs only in the compatibility mode (:mod:`losslines.analysis.compat`). It analyses the same
lines a second time with the default definitions — only the metrics whose numbers the mode
changes (``slope_sources``, ``minimum``, ``rules``, ``distances``) — and reports, per headline
number, both values, and per quantity how the definitions differ and why the default is the
better measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping

from losslines.analysis.compat import DIFFERENCES, PoolWeights, is_original, pool_weights
from losslines.analysis.metric import Metric, MetricResult, Plan, ReportPart, Setup, Stage
from losslines.analysis.summary_stats import fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

AFFECTED = ("slope_sources", "minimum", "rules", "distances")  # the metrics whose numbers the mode changes

# (label, the definitions it depends on (DIFFERENCES indices), its value in a metrics.json-like summary)
_NUMBERS: tuple[tuple[str, tuple[int, ...], Callable[[Mapping[str, Any]], Any]], ...] = (
    ("median s_opt", (0, 1), lambda s: s["minimum"]["s_opt"]["median"]),
    ("median r = s_opt / ‖g‖", (0, 1), lambda s: s["minimum"]["ratio_s_opt_over_direction_norm"]["median"]),
    ("CV of r", (0, 1), lambda s: s["minimum"]["ratio_s_opt_over_direction_norm"]["cv"]),
    ("median update_step / s_opt", (0, 1), lambda s: s["minimum"]["update_step_over_s_opt"]["median"]),
    ("accumulated improvement of the step taken", (0,), lambda s: s["rules"]["taken"]["accumulated_improvement"]),
    ("mean |s_opt − update_step|", (0, 1), lambda s: s["rules"]["taken"]["abs_distance"]["mean"]),
    ("median PAL step", (3,), lambda s: _first_rule(s, "pal(")["step"]["median"]),
    ("median full-batch PAL step", (0, 3), lambda s: _first_rule(s, "fbpal(")["step"]["median"]),
    ("mean line-to-line distance D (all pairs)", (2,), lambda s: s["distances"]["mean_all"]),
    ("median consecutive distance D[t, t+1]", (2,), lambda s: s["distances"]["consecutive"]["median"]),
)


@dataclass(frozen=True)
class Comparison:
    """The same lines analysed with the default definitions, and the compat mode's pool weights."""

    default: AnalysisResult
    pool: PoolWeights


def _first_rule(summary: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    return next(v for k, v in summary["rules"].items() if k.startswith(prefix))


class CompatComparisonMetric(Metric):
    """In ``--compat original``: each changed number under both definitions, and why they differ."""

    name = "compat"
    stage = Stage.WHOLE
    reads = ()

    def plan(self, setup: Setup) -> Plan:
        if not is_original(setup):
            return Plan(setup, run=False)
        return Plan(setup, params=pool_weights(setup.source))

    def finish(self, plan: Plan, parts) -> MetricResult:
        from losslines.analysis.compute import compute
        from losslines.analysis.registry import get_metric

        setup = plan.setup
        options = replace(setup.options, compat="none",
                          metric_options={k: v for k, v in setup.options.metric_options.items() if k in AFFECTED})
        default = compute(setup.source, setup.lines, options, metrics=tuple(get_metric(n) for n in AFFECTED))
        return MetricResult(value=Comparison(default, plan.params))

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        comparison: Comparison = self.output(analysis).value
        original = _summaries(analysis)
        baseline = _summaries(comparison.default)
        weights = {"n_train": comparison.pool.n_train, "n_batch": comparison.pool.n_batch}
        numbers = [{"quantity": label, "original": _value(get, original), "default": _value(get, baseline),
                    "differences": [DIFFERENCES[i].quantity for i in uses]}
                   for label, uses, get in _NUMBERS]
        return {"compat": {
            "mode": "original", "pool": weights,
            "numbers": numbers,
            "definitions": [{"quantity": d.quantity, "original": d.original, "default": d.default, "why": d.why}
                            for d in DIFFERENCES],
        }}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        c = summary["compat"]
        lines = ["", "## Compatibility with the original analysis (--compat original)", "",
                 f"Every number in this report uses the original analysis code's definitions of the quantities "
                 f"below (the full-batch curve pools N = {c['pool']['n_train']} measured samples with the "
                 f"B = {c['pool']['n_batch']} of the direction batch). The same lines under the default "
                 "definitions:", "",
                 "| quantity | original definitions | default definitions |", "|---|---|---|"]
        lines += [f"| {_cell(n['quantity'])} | {fmt(n['original'])} | {fmt(n['default'])} |" for n in c["numbers"]]
        lines += ["", "| quantity | original | default | why the default is the better measurement |",
                  "|---|---|---|---|"]
        lines += ["| " + " | ".join(_cell(d[k]) for k in ("quantity", "original", "default", "why")) + " |"
                  for d in c["definitions"]]
        return ReportPart(headline=("| definitions | the original analysis code's (--compat original) |",),
                          section=tuple(lines))


def _cell(text: str) -> str:
    """``text`` safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def _summaries(res: AnalysisResult) -> dict[str, Any]:
    """The ``AFFECTED`` metrics' metrics.json entries of one analysis."""
    out: dict[str, Any] = {}
    for metric in res.metrics:
        if metric.name in AFFECTED and res.outputs[metric.name].computed:
            out.update(metric.summary(res))
    return out


def _value(get: Callable[[Mapping[str, Any]], Any], summary: Mapping[str, Any]) -> Any:
    """The number ``get`` picks from ``summary``; None where that metric did not compute it."""
    try:
        value = get(summary)
    except (KeyError, StopIteration, TypeError):
        return None
    return None if value is None else json_number(value)
