"""losslines.analysis: the paper's quantities computed from stores, out of core; no torch.

Entry points: :func:`analyze_store` (``losslines analyze``) writes report.md, metrics.json,
per_line.npz and the figures; :func:`compute` (a notebook's) returns the same results and writes
nothing — ``.to_dataframe()``, ``.to_xarray()``, ``.summary()``, and the figure functions of
:mod:`losslines.analysis.figures` draw them (each takes ``ax=`` or returns a Figure);
:func:`plot_line` draws one stored line with its batch bands. The pure maths is usable on plain
arrays:

* minimum and shape: :func:`find_minimum`, :func:`fit_polynomials`, :func:`nonparabolic`
* step rules: :func:`sgd_step`, :func:`pal_step`, :func:`judge_step`
* distances: :func:`shifted_window`, :func:`blockwise_distances`
* batch size: :func:`slope_stencil`, :func:`draw_sample_batches`, :func:`batch_slopes`
* all directions: :func:`direction_stats`

Every metric of the report implements one protocol, :class:`Metric` (a per-block computation,
its summary for metrics.json and report.md, optional figures); :func:`register_metric` adds one
to every later ``analyze_store`` / ``losslines analyze`` run, :func:`registered_metrics` lists them.

For your own out-of-core analysis, ``losslines.open_store(path).to_xarray()`` gives a lazy,
dask-backed Dataset with the store's dimension names (``line``, ``point``, ``sample_train``...).
"""

from losslines.analysis.analyze import (AnalysisReport, add_analyze_arguments, analyze_store, compute_store,
                                        run_analyze, watch_store)
from losslines.analysis.batchsize import batch_slopes, draw_sample_batches
from losslines.analysis.direction_stats import DirectionStats, direction_stats
from losslines.analysis.distances import blockwise_distances, shifted_window
from losslines.analysis.metric import Block, FigureSpec, Metric, MetricResult, Plan, ReportPart, Setup, Stage
from losslines.analysis.minimum import LineMinimum, find_minimum
from losslines.analysis.polyfit import PolyFits, fit_polynomials, nonparabolic
from losslines.analysis.registry import get_metric, register_metric, registered_metrics, unregister_metric
from losslines.analysis.results import AnalysisOptions, AnalysisResult
from losslines.analysis.slopes import slope_stencil
from losslines.analysis.steprules import StepRule, judge_step, pal_step, sgd_step

draw_batches = draw_sample_batches  # the former name, kept for callers of losslines.analysis
compute = compute_store  # the notebook entry (the module losslines.analysis.compute stays importable)


def plot_line(store, line: int, *, ax=None, options: AnalysisOptions | None = None):
    """:func:`losslines.analysis.figures.plot_line` (matplotlib is imported on the first call)."""
    from losslines.analysis.figures import plot_line as draw

    return draw(store, line, ax=ax, options=options)

__all__ = [
    # report
    "analyze_store", "watch_store", "compute", "compute_store", "plot_line",
    "AnalysisOptions", "AnalysisReport", "AnalysisResult",
    "add_analyze_arguments", "run_analyze",
    # metrics: the protocol and the registry
    "Metric", "Stage", "Setup", "Plan", "Block", "MetricResult", "ReportPart", "FigureSpec",
    "register_metric", "unregister_metric", "get_metric", "registered_metrics",
    # per-line maths
    "find_minimum", "LineMinimum", "fit_polynomials", "PolyFits", "nonparabolic",
    "StepRule", "sgd_step", "pal_step", "judge_step",
    # distances and batch size
    "shifted_window", "blockwise_distances", "slope_stencil", "draw_sample_batches", "batch_slopes",
    "draw_batches", "direction_stats", "DirectionStats",
]
