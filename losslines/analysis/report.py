"""The files that carry an analysis: metrics.json, per_line.npz and report.md.

``summarize_analysis`` turns an :class:`AnalysisResult` into a JSON-ready dict (NaN becomes
``null``): the run's header, then every computed metric's own section
(:meth:`~losslines.analysis.metric.Metric.summary`), then what was skipped and the notes.
``write_outputs`` writes ``metrics.json`` (that dict), ``per_line.npz`` (every per-line array,
for your own plots) and ``report.md`` (readable: the metrics' headline rows and sections, with
the figures embedded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from losslines.analysis.metric import ReportPart
from losslines.analysis.metric_options import metric_options_json
from losslines.analysis.results import AnalysisResult
from losslines.analysis.summary_stats import json_number

TRAILER = ("skipped", "notes", "figures", "timing_s")  # metrics.json keys after the metrics'


def summarize_analysis(res: AnalysisResult) -> dict[str, Any]:
    """The headline numbers (all JSON types).

    Raises:
        ValueError: a metric's summary lacks its own name or repeats a key already written.
    """
    out = _header(res)
    for metric in res.metrics:
        if not res.outputs[metric.name].computed:
            continue
        part = metric.summary(res)
        if metric.name not in part:
            raise ValueError(f"metric {metric.name!r}: its summary must have the key {metric.name!r}")
        taken = sorted(set(part) & (set(out) | set(TRAILER)))
        if taken:
            raise ValueError(f"metric {metric.name!r}: metrics.json already has {taken}")
        out.update(part)
    out["skipped"] = list(res.skipped)
    out["notes"] = list(res.notes)
    return out


def _header(res: AnalysisResult) -> dict[str, Any]:
    pl = res.per_line
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(res.options).items()
               if k != "metric_options"}
    if res.options.metric_options:
        options["metric_options"] = metric_options_json(res.options)
    return {
        "store": res.store, "status": res.status, "committed_lines": res.committed_lines,
        "analysed_lines": int(res.lines.size),
        "line_range": [int(res.lines[0]), int(res.lines[-1])],
        "steps": [json_number(pl["step"][0]), json_number(pl["step"][-1])] if "step" in pl else None,
        "grid": {"points": int(res.position.size), "min": json_number(np.nanmin(res.position)),
                 "max": json_number(np.nanmax(res.position))},
        "nonfinite": _nonfinite_summary(res),
        "options": options,
    }


def _nonfinite_summary(res: AnalysisResult) -> dict[str, Any]:
    """The non-finite lines (a diverging run): how many, which (committed indices and steps)."""
    flag = np.asarray(res.per_line.get("nonfinite", np.zeros(res.lines.size, dtype=bool)), dtype=bool)
    steps = res.per_line.get("step")
    return {"lines": int(flag.sum()), "line_indices": [int(i) for i in res.lines[flag]],
            "steps": [int(t) for t in steps[flag]] if steps is not None else None}


def write_outputs(res: AnalysisResult, out_dir: Path, figures: dict[str, list[Path]]) -> dict[str, Any]:
    """Write metrics.json, per_line.npz and report.md into ``out_dir``; return the summary."""
    summary = summarize_analysis(res)
    summary["figures"] = {k: [p.name for p in v] for k, v in figures.items()}
    summary["timing_s"] = dict(res.timing)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    arrays = {f"line_{k}": v for k, v in res.per_line.items()}
    for metric in res.metrics:
        arrays.update(res.outputs[metric.name].arrays)
    np.savez_compressed(out_dir / "per_line.npz", lines=res.lines, **arrays)
    parts = [m.report(summary) for m in res.metrics if res.outputs[m.name].computed]
    (out_dir / "report.md").write_text(_markdown(summary, parts, figures))
    return summary


def _nonfinite_markdown(nonfinite: dict[str, Any]) -> list[str]:
    n = nonfinite["lines"]
    if not n:
        return []
    steps = nonfinite["steps"] or nonfinite["line_indices"]
    shown = ", ".join(map(str, steps[:10])) + (f", … ({n - 10} more)" if n > 10 else "")
    what = "training steps" if nonfinite["steps"] is not None else "lines"
    return [f"**{n} non-finite line(s)** ({what} {shown}): NaN or ±inf at s = 0 — the run diverged. They are "
            "stored as measured, marked `nonfinite` in the per-line results and left out: every metric below is "
            "computed on the finite lines only.", ""]


def _markdown(s: dict[str, Any], parts: list[ReportPart], figures: dict[str, list[Path]]) -> str:
    lines = [
        "# losslines analysis", "",
        f"Store `{s['store']}` — status **{s['status']}**, {s['committed_lines']} committed line(s); "
        f"analysed {s['analysed_lines']} (lines {s['line_range'][0]}–{s['line_range'][1]}"
        + (f", training steps {s['steps'][0]}–{s['steps'][1]}" if s["steps"] else "") + ").",
        f"Grid: {s['grid']['points']} points on [{s['grid']['min']:.4g}, {s['grid']['max']:.4g}].", "",
        *_nonfinite_markdown(s["nonfinite"]),
        "## Headline numbers", "",
        "| quantity | value |", "|---|---|",
    ]
    for part in parts:
        lines += part.headline
    for part in parts:
        lines += part.section
    lines += ["", "## Skipped", ""] + ([f"- {x}" for x in s["skipped"]] or ["- nothing"])
    if s["notes"]:
        lines += ["", "## Notes", ""] + [f"- {x}" for x in s["notes"]]
    lines += ["", "## Figures", ""]
    for name, paths in figures.items():
        png = [p for p in paths if p.suffix == ".png"]
        others = ", ".join(f"[{p.suffix[1:]}]({p.name})" for p in paths if p.suffix != ".png")
        lines += [f"### {name}", "", (f"![{name}]({png[0].name})" if png else "") + (f" ({others})" if others else ""), ""]
    return "\n".join(lines) + "\n"
