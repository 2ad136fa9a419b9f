"""Headline numbers of an analysis, and the files that carry them: metrics.json, report.md.

``summarize_analysis`` turns an :class:`AnalysisResult` into a JSON-ready dict (NaN becomes ``null``);
``write_outputs`` writes ``metrics.json`` (that dict), ``per_line.npz`` (every per-line array,
for your own plots) and ``report.md`` (readable, with the figures embedded).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from losslines.analysis.results import AnalysisResult

MAE2_PARABOLIC = 1e-3  # paper, claim 1: MAE_2 of about 1e-3 or below


def _num(x: Any) -> Any:
    """JSON-safe scalar: NaN/inf -> None, numpy -> python."""
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    x = float(x)
    return x if math.isfinite(x) else None


def _stats(values: np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "median": None, "q25": None, "q75": None}
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"n": int(v.size), "mean": _num(v.mean()), "std": _num(v.std()), "median": _num(med),
            "q25": _num(q25), "q75": _num(q75)}


def summarize_analysis(res: AnalysisResult) -> dict[str, Any]:
    """The headline numbers (all JSON types)."""
    pl = res.per_line
    out: dict[str, Any] = {
        "store": res.store, "status": res.status, "committed_lines": res.committed_lines,
        "analysed_lines": int(res.lines.size),
        "line_range": [int(res.lines[0]), int(res.lines[-1])],
        "steps": [_num(pl["step"][0]), _num(pl["step"][-1])] if "step" in pl else None,
        "grid": {"points": int(res.position.size), "min": _num(np.nanmin(res.position)),
                 "max": _num(np.nanmax(res.position))},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(res.options).items()},
    }
    ratio = _stats(pl["ratio"])
    ratio["cv"] = _num(ratio["std"] / abs(ratio["mean"])) if ratio["n"] and ratio["mean"] else None
    out["minimum"] = {
        "s_opt": _stats(pl["s_opt"]), "s_opt_err": _stats(pl["s_opt_err"]),
        "refinement_shift": _stats(np.abs(pl["s_opt"] - pl["s_grid"])),
        "at_edge_lines": int(np.sum(pl["at_edge"])), "refined_lines": int(np.sum(pl["refined"])),
        "ratio_s_opt_over_direction_norm": ratio, "update_step_over_s_opt": _stats(pl["overshoot"]),
    }
    mae2 = pl.get("mae2")
    out["shape"] = {
        "window": res.options.window,
        "mae": {str(k): _stats(pl[f"mae{k}"]) for k in res.options.degrees},
        "fraction_mae2_below_1e-3": _num(np.mean(mae2[np.isfinite(mae2)] < MAE2_PARABOLIC))
        if mae2 is not None and np.isfinite(mae2).any() else None,
        "not_parabolic_lines": int(np.sum(pl["not_parabolic"])),
        "coef_deg2": {n: _stats(res.coef[2][:, j]) for j, n in enumerate(("a", "b", "c"))} if 2 in res.coef else None,
    }
    out["rules"] = {k: {"step": _stats(o.step), "improvement": _stats(o.improvement),
                        "accumulated_improvement": _num(res.accumulated[k]["improvement"][-1]),
                        "distance": _stats(o.distance), "abs_distance": _stats(np.abs(o.distance)),
                        "accumulated_distance": _num(res.accumulated[k]["distance"][-1])}
                    for k, o in res.rules.items()}
    out["slope_sources"] = res.slope_sources
    if "slope0_batch" in pl and "direction_norm" in pl:
        with np.errstate(invalid="ignore", divide="ignore"):
            out["batch_slope_plus_direction_norm_rel"] = _stats(
                np.abs(pl["slope0_batch"] + pl["direction_norm"]) / pl["direction_norm"])
    if res.distances is not None:
        d = res.distances
        out["distances"] = {"lines": d.n_lines, "window_points": d.n_points, "mean_all": _num(d.mean_all),
                            "mean_first_50": _num(d.mean_first), "mean_rest": _num(d.mean_rest),
                            "consecutive": _stats(d.consecutive)}
    if res.batch_study is not None:
        st = res.batch_study
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = st.slopes / st.batch_slope[:, None, None]
        out["batch_size"] = {
            "n_batch": st.n_batch, "method": st.method,
            "sizes": {str(int(b)): {"expected_ratio": _num(st.expected_ratio[j]),
                                    "measured_ratio": _stats(ratio[:, j, :]),
                                    "sgd_step": _stats(st.sgd_steps[:, j])}
                      for j, b in enumerate(st.batch_sizes)}}
    for split in ("train", "batch"):
        gap = pl.get(f"sample_mean_gap_{split}")
        if gap is not None:
            out.setdefault("per_sample_consistency", {})[split] = {
                "max_abs_gap_mean_of_samples_vs_stored_mean": _num(np.nanmax(gap)) if np.isfinite(gap).any()
                else None}
    if res.directions is not None:
        ds = res.directions
        out["directions"] = {"positions": int(ds.s_opt.shape[0]), "directions": int(ds.s_opt.shape[1]),
                             "s_opt_std_over_directions": _stats(np.nanstd(ds.s_opt, axis=1)),
                             "ratio_std_over_directions": _stats(np.nanstd(ds.ratio, axis=1)),
                             "mae2": _stats(ds.mae2), "mean_distance": _stats(ds.mean_distance)}
    out["skipped"] = list(res.skipped)
    out["notes"] = list(res.notes)
    return out


def _fmt(x: Any, spec: str = ".4g") -> str:
    return "n/a" if x is None else format(x, spec)


def write_outputs(res: AnalysisResult, out_dir: Path, figures: dict[str, list[Path]]) -> dict[str, Any]:
    """Write metrics.json, per_line.npz and report.md into ``out_dir``; return the summary."""
    summary = summarize_analysis(res)
    summary["figures"] = {k: [p.name for p in v] for k, v in figures.items()}
    summary["timing_s"] = dict(res.timing)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    arrays = {f"line_{k}": v for k, v in res.per_line.items()}
    arrays.update({f"rule_{p}|{k}": getattr(o, p) for k, o in res.rules.items() for p in ("step", "improvement", "distance")})
    arrays.update({f"coef_deg{k}": v for k, v in res.coef.items()})
    np.savez_compressed(out_dir / "per_line.npz", lines=res.lines, **arrays)
    (out_dir / "report.md").write_text(_markdown(summary, figures))
    return summary


def _markdown(s: dict[str, Any], figures: dict[str, list[Path]]) -> str:
    m, sh = s["minimum"], s["shape"]
    r = m["ratio_s_opt_over_direction_norm"]
    lines = [
        "# losslines analysis", "",
        f"Store `{s['store']}` — status **{s['status']}**, {s['committed_lines']} committed line(s); "
        f"analysed {s['analysed_lines']} (lines {s['line_range'][0]}–{s['line_range'][1]}"
        + (f", training steps {s['steps'][0]}–{s['steps'][1]}" if s["steps"] else "") + ").",
        f"Grid: {s['grid']['points']} points on [{s['grid']['min']:.4g}, {s['grid']['max']:.4g}].", "",
        "## Headline numbers", "",
        "| quantity | value |", "|---|---|",
        f"| median s_opt (refined) | {_fmt(m['s_opt']['median'])} |",
        f"| median refinement error of s_opt | {_fmt(m['s_opt_err']['median'])} |",
        f"| lines with the minimum on the grid edge | {m['at_edge_lines']} |",
        f"| r = s_opt / direction_norm: median (CV) | {_fmt(r['median'])} ({_fmt(r.get('cv'), '.3f')}) |",
        f"| update_step / s_opt: median (>1 overshoots) | {_fmt(m['update_step_over_s_opt']['median'])} |",
    ]
    for k, st in sh["mae"].items():
        lines.append(f"| median fit MAE, degree {k}, window ±{sh['window']:g} | {_fmt(st['median'])} |")
    lines += [f"| fraction of lines with MAE_2 < 1e-3 | {_fmt(sh['fraction_mae2_below_1e-3'], '.3f')} |",
              f"| lines flagged not parabolic (kink) | {sh['not_parabolic_lines']} |"]
    if "distances" in s:
        d = s["distances"]
        lines += [f"| mean line-to-line distance D: all / first 50 / rest | {_fmt(d['mean_all'])} / "
                  f"{_fmt(d['mean_first_50'])} / {_fmt(d['mean_rest'])} |"]
    lines += ["", "## Step rules on the full-batch line", "",
              "| rule | median step | mean improvement | accumulated improvement | mean distance s_opt − s "
              "| lines with the step off the measured grid |", "|---|---|---|---|---|---|"]
    for k, v in s["rules"].items():
        lines.append(f"| {k} | {_fmt(v['step']['median'])} | {_fmt(v['improvement']['mean'])} | "
                     f"{_fmt(v['accumulated_improvement'])} | {_fmt(v['distance']['mean'])} | "
                     f"{s['analysed_lines'] - v['improvement']['n']} |")
    lines += ["", "Improvements use the exact stored loss at the update step where present, else the "
              "parabola through the 3 nearest grid points; a step off the measured grid has no improvement "
              "(it counts as 0 in the accumulated sum).",
              "", f"Slope sources (exact jvp from the store vs grid estimate): `{json.dumps(s['slope_sources'])}`."]
    if "batch_size" in s:
        b = s["batch_size"]
        lines += ["", "## Batch size versus learning rate", "", f"Direction batch n_B = {b['n_batch']}. "
                  f"Slopes: {b['method']}.", "", "| b | expected ratio | measured ratio median [q25, q75] | median SGD step |",
                  "|---|---|---|---|"]
        for size, v in b["sizes"].items():
            mr = v["measured_ratio"]
            lines.append(f"| {size} | {_fmt(v['expected_ratio'])} | {_fmt(mr['median'])} "
                         f"[{_fmt(mr['q25'])}, {_fmt(mr['q75'])}] | {_fmt(v['sgd_step']['median'])} |")
    if "directions" in s:
        d = s["directions"]
        lines += ["", "## All directions", "", f"{d['positions']} position(s) × {d['directions']} directions; "
                  f"median std of s_opt over directions {_fmt(d['s_opt_std_over_directions']['median'])}, "
                  f"of r {_fmt(d['ratio_std_over_directions']['median'])}; median MAE_2 {_fmt(d['mae2']['median'])}."]
    if "per_sample_consistency" in s:
        lines += ["", "Per-sample check (mean of stored per-sample losses vs stored mean): " + ", ".join(
            f"{k}: max gap {_fmt(v['max_abs_gap_mean_of_samples_vs_stored_mean'])} nats"
            for k, v in s["per_sample_consistency"].items()) + "."]
    lines += ["", "## Skipped", ""] + ([f"- {x}" for x in s["skipped"]] or ["- nothing"])
    if s["notes"]:
        lines += ["", "## Notes", ""] + [f"- {x}" for x in s["notes"]]
    lines += ["", "## Figures", ""]
    for name, paths in figures.items():
        png = [p for p in paths if p.suffix == ".png"]
        others = ", ".join(f"[{p.suffix[1:]}]({p.name})" for p in paths if p.suffix != ".png")
        lines += [f"### {name}", "", (f"![{name}]({png[0].name})" if png else "") + (f" ({others})" if others else ""), ""]
    return "\n".join(lines) + "\n"

