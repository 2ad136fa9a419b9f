"""Metric figures over training (paper Figs. 3, 4, 6, 7, 8), drawn from an AnalysisResult.

Curves are smoothed with a moving average (``options.smoothing`` lines, the paper's 25) over
the raw values drawn faintly underneath. Built on :class:`matplotlib.figure.Figure` directly:
headless, no LaTeX.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from losslines.analysis.results import AnalysisResult
from losslines.analysis.smoothing import moving_average


def _curve(ax, x: np.ndarray, y: np.ndarray, width: int, label: str, color: str | None = None) -> None:
    line = ax.plot(x, y, lw=0.5, alpha=0.25, color=color)[0]
    ax.plot(x, moving_average(y, width), lw=1.5, color=line.get_color(), label=label)


def shape_figure(res: AnalysisResult) -> Figure:
    """Fig. 4: fit MAE per degree over lines, and the degree-2 coefficients over lines."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    x, w = res.per_line["step"] if "step" in res.per_line else res.lines, res.options.smoothing
    for k in res.options.degrees:
        mae = res.per_line[f"mae{k}"]
        _curve(ax, x, np.where(mae > 0, mae, np.nan), w, f"degree {k}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"fit MAE on |s| ≤ {res.options.window:g} (nats)")
    ax.set_title("polynomial fits of the full-batch line")
    ax.legend(fontsize=8, loc="upper right")
    if 2 in res.coef:
        names = ("curvature a (s²)", "slope b (s¹)", "offset c (s⁰)")
        for j, name in enumerate(names):
            _curve(bx, x, res.coef[2][:, j], w, name)
        bx.set_title("degree-2 coefficients over training")
        bx.set_xlabel("training step")
        bx.legend(fontsize=8, loc="upper right")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    return fig


def distance_figure(res: AnalysisResult) -> Figure:
    """Fig. 3: min-shifted distance matrices (subsampled full view, first 50, the rest) and
    consecutive-line distances."""
    d = res.distances
    if d is None or res.distance_lines is None:
        raise ValueError("the result has no distance matrices to draw")
    lines = res.distance_lines
    views = [(d.view, lines[d.view_lines], f"all {d.n_lines} lines")]
    if d.first.shape[0] < d.n_lines:  # with 50 lines or fewer, "the first 50" is "all" again
        views.append((d.first, lines[: d.first.shape[0]], f"first {d.first.shape[0]} lines"))
    rest = d.view_lines >= d.first.shape[0]
    if rest.sum() >= 2:
        views.append((d.view[np.ix_(rest, rest)], lines[d.view_lines[rest]], "the rest"))
    fig = Figure(figsize=(3.3 * (len(views) + 1), 3.8), layout="constrained")
    axes = fig.subplots(1, len(views) + 1)
    for ax, (m, idx, title) in zip(axes, views):
        im = ax.imshow(m, origin="lower", cmap="viridis", interpolation="nearest",
                       extent=(idx[0] - 0.5, idx[-1] + 0.5, idx[0] - 0.5, idx[-1] + 0.5))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("line")
        fig.colorbar(im, ax=ax, shrink=0.8, label="D (nats)")
    cx = axes[-1]
    _curve(cx, lines[1:], d.consecutive, res.options.smoothing, "D[t, t+1]")
    cx.set_yscale("log")
    cx.set_xlabel("line")
    cx.set_title("consecutive-line distance", fontsize=9)
    cx.grid(alpha=0.3)
    return fig


def metrics_figure(res: AnalysisResult) -> Figure:
    """Fig. 6: r = s_opt/‖g‖, step lengths per rule, improvements and distances per rule."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    (ax, bx), (cx, dx) = fig.subplots(2, 2)
    x, w = res.per_line["step"] if "step" in res.per_line else res.lines, res.options.smoothing
    _curve(ax, x, res.per_line["ratio"], w, r"$s_{opt}$ / direction_norm", "black")
    if "lr" in res.per_line and np.isfinite(res.per_line["lr"]).any():
        ax.plot(x, res.per_line["lr"], color="tab:green", lw=1, ls="--", label="λ of the run")
    ax.set_title("key ratio r (constant r ⇔ SGD with λ = r is a line search)")
    for key, o in res.rules.items():
        _curve(bx, x, o.step, w, key)
        _curve(cx, x, res.accumulated[key]["improvement"], 1, key)
        _curve(dx, x, o.distance, w, key)
    bx.set_title("step size per rule")
    bx.set_ylabel("s")
    cx.set_title("accumulated improvement Σ L(0) − L(s)")
    cx.set_ylabel("nats")
    dx.set_title(r"signed distance $s_{opt} - s$")
    dx.axhline(0, color="grey", lw=0.8)
    for a in (ax, bx, cx, dx):
        a.set_xlabel("training step")
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="upper left")
    return fig


def batchsize_figure(res: AnalysisResult) -> Figure:
    """Fig. 7: measured slope ratio L_S'(0)/L_B'(0) against the expected n_B/b, and SGD steps."""
    st = res.batch_study
    if st is None:
        raise ValueError("the result has no batch-size study to draw")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = st.slopes / st.batch_slope[:, None, None]
    data = [r[np.isfinite(r)] for r in np.moveaxis(ratio, 1, 0).reshape(len(st.batch_sizes), -1)]
    pos = np.log2(st.batch_sizes)
    ax.boxplot(data, positions=pos, widths=0.35, showfliers=False)
    ax.plot(pos, st.expected_ratio, "o--", color="tab:red", label="expected: 1 (b ≤ n_B), n_B/b (b > n_B)")
    ax.set_xticks(pos, [str(b) for b in st.batch_sizes])
    ax.set_yscale("log")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("slope ratio $L_S'(0) / L_B'(0)$")
    ax.set_title(f"random sub-/super-batches (n_B = {st.n_batch}), all lines and draws")
    ax.legend(fontsize=8, loc="lower left")
    x = res.per_line["step"] if "step" in res.per_line else res.lines
    for j, b in enumerate(st.batch_sizes):
        _curve(bx, x, st.sgd_steps[:, j], res.options.smoothing, f"b = {b}")
    bx.set_yscale("log")
    bx.set_xlabel("training step")
    bx.set_ylabel(r"SGD step $-\lambda L_S'(0)$")
    bx.set_title("the step each batch size's SGD would take")
    bx.legend(fontsize=7, ncol=2, loc="upper right")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    return fig


def directions_figure(res: AnalysisResult) -> Figure:
    """Fig. 8: spread of s_opt, r and MAE_2 over the M directions at each position."""
    st = res.directions
    if st is None:
        raise ValueError("the result has no all-directions statistics to draw")
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    labels = [str(int(s)) for s in res.direction_steps] if res.direction_steps is not None else None
    for ax, (values, title) in zip(axes, ((st.s_opt, r"$s_{opt}$"), (st.ratio, r"$s_{opt}$ / direction_norm"),
                                          (st.mae2, "degree-2 fit MAE (nats)"))):
        ax.boxplot([v[np.isfinite(v)] for v in values], tick_labels=labels)
        ax.set_title(f"{title} over {values.shape[1]} directions", fontsize=9)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    return fig
