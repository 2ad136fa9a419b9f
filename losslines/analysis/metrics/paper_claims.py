"""Metric ``claims``: the paper's four claims, re-measured on this store, each with a verdict.

It computes nothing of its own: it reads the results of ``shape``, ``minimum`` and
``batch_size`` once they are all done and states, per claim, its number, its spread and a
one-line verdict against a threshold named here (docs/analysis.md, "The paper's claims"):

1. **Lines are nearly parabolic**: the degree-2 fit's MAE on the window; holds when the median
   MAE_2 is at most :data:`MAE2_PARABOLIC` nats (the paper's level).
2. **s_opt / ‖g‖ is roughly constant within a phase of training**: phases are the runs of one
   learning rate, each cut into ``phases`` consecutive parts of equal length; holds when the
   median within-phase coefficient of variation of r is at most :data:`CV_CONSTANT`.
3. **update_step / s_opt**: > 1 is an overshoot of the full-batch minimum; within
   ±:data:`EXACT_BAND` of 1 SGD performs an almost exact line search.
4. **Batch size versus learning rate**: for super-batches (b > n_B) the slope ratio
   L_S'(0) / L_B'(0) measured against the expected n_B / b; holds when every size's median
   is within :data:`RATIO_TOLERANCE` (relative) of the expected one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from losslines.analysis.metric import Metric, MetricResult, Plan, ReportPart, Setup, Stage
from losslines.analysis.summary_stats import distribution, fmt, json_number

if TYPE_CHECKING:
    from losslines.analysis.results import AnalysisResult

MAE2_PARABOLIC = 1e-3  # nats: the paper's "close to a parabola"
CV_CONSTANT = 0.25  # within-phase coefficient of variation of r called "roughly constant"
EXACT_BAND = 0.1  # |update_step / s_opt - 1| <= this: an almost exact line search
RATIO_TOLERANCE = 0.2  # relative deviation of a measured slope ratio from n_B / b that still agrees


@dataclass(frozen=True)
class ClaimsOptions:
    """Knobs of the claims section."""

    phases: int = field(default=4, metadata={"help": "parts each constant-learning-rate run of lines is cut into "
                                                     "for the 'r roughly constant within a phase' claim"})


class PaperClaimsMetric(Metric):
    """The paper's four claims with their numbers, spreads and verdicts on the analysed lines."""

    name = "claims"
    stage = Stage.WHOLE
    reads = ()
    options_type = ClaimsOptions

    def plan(self, setup: Setup) -> Plan:
        if self.own_options(setup.options).phases < 1:
            raise ValueError(f"claims phases must be >= 1, got {self.own_options(setup.options).phases}")
        return Plan(setup)

    def finish(self, plan: Plan, parts) -> MetricResult:
        return MetricResult()

    def summary(self, analysis: AnalysisResult) -> dict[str, Any]:
        outputs = analysis.outputs
        computed = {name for name, out in outputs.items() if out.computed}
        claims = {
            "parabolic": _parabolic(analysis) if "shape" in computed else _missing("shape"),
            "constant_ratio": _constant_ratio(analysis, self.own_options(analysis.options).phases)
            if "minimum" in computed else _missing("minimum"),
            "step_versus_optimum": _overshoot(analysis) if "minimum" in computed else _missing("minimum"),
            "batch_size_learning_rate": _batch_size(analysis) if "batch_size" in computed else _missing("batch_size"),
        }
        return {"claims": {**claims, "phases_per_run": self.own_options(analysis.options).phases}}

    def report(self, summary: Mapping[str, Any]) -> ReportPart:
        c = summary["claims"]
        titles = {"parabolic": "1. lines are nearly parabolic",
                  "constant_ratio": "2. s_opt / ‖g‖ is roughly constant within a phase",
                  "step_versus_optimum": "3. the step taken versus s_opt",
                  "batch_size_learning_rate": "4. batch size k× acts like learning rate ÷k"}
        lines = ["", "## The paper's claims, re-measured", "",
                 "| claim | number | spread | verdict |", "|---|---|---|---|"]
        for key, title in titles.items():
            v = c[key]
            lines.append(f"| {title} | {v['number']} | {v['spread']} | {v['verdict']} |")
        lines += ["", f"Thresholds: MAE_2 ≤ {MAE2_PARABOLIC:g} nats; within-phase CV of r ≤ {CV_CONSTANT:g} "
                  f"(phases: runs of one learning rate, each cut into {c['phases_per_run']} parts); "
                  f"|update_step / s_opt − 1| ≤ {EXACT_BAND:g} is an exact line search; slope ratios within "
                  f"{RATIO_TOLERANCE:.0%} of n_B / b."]
        return ReportPart(section=tuple(lines))


def _missing(metric: str) -> dict[str, Any]:
    return {"number": "n/a", "spread": "n/a", "verdict": f"not measured: the metric {metric!r} did not run",
            "holds": None}


def _parabolic(analysis: AnalysisResult) -> dict[str, Any]:
    mae2 = analysis.per_line.get("mae2")
    d = distribution(mae2) if mae2 is not None else {"n": 0}
    if not d["n"]:
        return _missing("shape") | {"verdict": "not measured: no line has a degree-2 fit"}
    below = float(np.mean(mae2[np.isfinite(mae2)] <= MAE2_PARABOLIC))
    holds = d["median"] <= MAE2_PARABOLIC
    verdict = (f"holds: median MAE_2 {d['median']:.4g} ≤ {MAE2_PARABOLIC:g} nats; {below:.0%} of lines at or below"
               if holds else f"does not hold: median MAE_2 {d['median']:.4g} > {MAE2_PARABOLIC:g} nats; only "
                             f"{below:.0%} of lines at or below")
    return {"number": f"median MAE_2 = {d['median']:.4g}", "spread": f"q25–q75 {d['q25']:.3g}–{d['q75']:.3g}",
            "verdict": verdict, "holds": bool(holds), "mae2": d, "fraction_at_or_below": below,
            "threshold": MAE2_PARABOLIC}


def phase_bounds(lr: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` row ranges: the runs of one learning rate, each cut into ``parts`` equal parts
    (fewer for a run shorter than ``parts``); an unknown (NaN) learning rate counts as one value."""
    lr = np.asarray(lr, dtype=np.float64)
    key = np.where(np.isfinite(lr), lr, -1.0)
    cuts = np.flatnonzero(np.diff(key) != 0) + 1
    bounds = []
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, lr.size]):
        edges = np.unique(np.linspace(start, stop, min(parts, stop - start) + 1).round().astype(int))
        bounds += [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return bounds


def _constant_ratio(analysis: AnalysisResult, parts: int) -> dict[str, Any]:
    r = analysis.per_line.get("ratio")
    if r is None or not np.isfinite(r).any():
        return _missing("minimum") | {"verdict": "not measured: the store has no direction_norm"}
    lr = analysis.per_line.get("lr", np.full(r.size, np.nan))
    steps = analysis.per_line.get("step", np.arange(r.size))
    finite = ~np.asarray(analysis.per_line.get("nonfinite", np.zeros(r.size, dtype=bool)), dtype=bool)
    r, lr, steps = r[finite], lr[finite], steps[finite]  # a diverged run's lines are left out, phases included
    phases = []
    for a, b in phase_bounds(lr, parts):
        v = r[a:b][np.isfinite(r[a:b])]
        if v.size < 2:
            continue
        mean = float(v.mean())
        phases.append({"steps": [json_number(steps[a]), json_number(steps[b - 1])], "lr": json_number(lr[a]),
                       "lines": int(v.size), "median_r": json_number(np.median(v)),
                       "cv_r": json_number(v.std() / abs(mean)) if mean else None})
    cvs = np.array([p["cv_r"] for p in phases if p["cv_r"] is not None], dtype=np.float64)
    if cvs.size == 0:
        return _missing("minimum") | {"verdict": "not measured: no phase has two lines with a finite r"}
    cv = float(np.median(cvs))
    medians = np.array([p["median_r"] for p in phases if p["median_r"] is not None], dtype=np.float64)
    holds = cv <= CV_CONSTANT
    verdict = (f"holds: r varies by {cv:.0%} (median CV) within a phase" if holds else
               f"does not hold: r varies by {cv:.0%} (median CV) within a phase, more than {CV_CONSTANT:.0%}")
    return {"number": f"median within-phase CV of r = {cv:.3g}",
            "spread": f"phase medians of r {medians.min():.3g}–{medians.max():.3g} over {len(phases)} phases",
            "verdict": verdict, "holds": bool(holds), "median_cv": cv, "phases": phases, "threshold": CV_CONSTANT}


def _overshoot(analysis: AnalysisResult) -> dict[str, Any]:
    o = analysis.per_line.get("overshoot")
    d = distribution(o) if o is not None else {"n": 0}
    if not d["n"]:
        return _missing("minimum") | {"verdict": "not measured: the store has no update_step"}
    m = d["median"]
    above = float(np.mean(o[np.isfinite(o)] > 1))
    if abs(m - 1) <= EXACT_BAND:
        verdict = f"SGD performs an almost exact line search: median {m:.3g} within ±{EXACT_BAND:g} of 1"
    elif m > 1:
        verdict = f"SGD overshoots the full-batch minimum: median {m:.3g} > 1 ({above:.0%} of lines)"
    else:
        verdict = f"SGD undershoots the full-batch minimum: median {m:.3g} < 1 ({1 - above:.0%} of lines)"
    return {"number": f"median update_step / s_opt = {m:.3g}", "spread": f"q25–q75 {d['q25']:.3g}–{d['q75']:.3g}",
            "verdict": verdict, "holds": bool(abs(m - 1) <= EXACT_BAND), "update_step_over_s_opt": d,
            "fraction_above_1": above, "threshold": EXACT_BAND}


def _batch_size(analysis: AnalysisResult) -> dict[str, Any]:
    st = analysis.outputs["batch_size"].value
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = st.slopes / st.batch_slope[:, None, None]
    rows = []
    for j, b in enumerate(st.batch_sizes):
        if b <= st.n_batch:
            continue
        v = ratio[:, j, :]
        v = v[np.isfinite(v)]
        if v.size:
            expected = float(st.expected_ratio[j])
            med = float(np.median(v))
            rows.append({"b": int(b), "expected_ratio": expected, "measured_ratio": med,
                         "relative_deviation": abs(med / expected - 1),
                         "q25": float(np.quantile(v, 0.25)), "q75": float(np.quantile(v, 0.75))})
    if not rows:
        return _missing("batch_size") | {"verdict": "not measured: no super-batch size (b > n_B) has slopes"}
    dev = np.array([r["relative_deviation"] for r in rows])
    holds = bool(np.all(dev <= RATIO_TOLERANCE))
    worst = rows[int(np.argmax(dev))]
    verdict = (f"holds: every super-batch's slope ratio is within {RATIO_TOLERANCE:.0%} of n_B / b (worst "
               f"{worst['relative_deviation']:.0%} at b = {worst['b']})" if holds else
               f"does not hold: at b = {worst['b']} the slope ratio is {worst['measured_ratio']:.3g}, "
               f"{worst['relative_deviation']:.0%} off the expected {worst['expected_ratio']:.3g}")
    return {"number": f"median deviation from n_B / b = {np.median(dev):.1%} over {len(rows)} super-batch sizes",
            "spread": f"max {dev.max():.1%}", "verdict": verdict, "holds": holds, "sizes": rows,
            "threshold": RATIO_TOLERANCE}
