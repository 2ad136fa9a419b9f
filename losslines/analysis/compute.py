"""Orchestration: read a store block by block, once, and drive every registered metric on it.

The blocks of a stage are independent: they run on the current executor
(:mod:`losslines.analysis.parallel`: here in order, or as dask tasks), and their results are
combined in block order, so every executor gives the same numbers. Memory stays bounded: the small per-line arrays are read in blocks of ``lines_per_block`` lines
(each ``[L, K]`` row costs K floats), the per-sample arrays in blocks sized by
``options.sample_block_bytes``, and each metric keeps only what its ``block`` returns (O(L)
values per line for most; the ``[L', W]`` windows compared for distances; the ``[L, S, D]``
batch-size slopes). Every array a stage needs is read once per block and handed to all its
metrics (:class:`~losslines.analysis.metric.Metric`, stages in
:class:`~losslines.analysis.metric.Stage` order).

Non-finite lines (:func:`losslines.records.nonfinite_line`: a diverging run's NaN or ±inf at
s = 0, stored as measured) are found first, marked (``per_line["nonfinite"]``) and left out of
every metric: their rows reach the metrics as lines never measured (NaN), so the metrics are those
of the finite lines.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from losslines.analysis.line_views import chosen_lines, line_views
from losslines.analysis.metric import Block, Metric, MetricResult, Plan, Setup, Stage
from losslines.analysis.metric_options import check_metric_options
from losslines.analysis.registry import computation_order, registered_metrics
from losslines.analysis.results import AnalysisOptions, AnalysisResult
from losslines.analysis.parallel import current_executor, make_executor, using
from losslines.analysis.source import BlockSpan, LineRange, LineSource, block_spans
from losslines.records import SPLITS, nonfinite_line

LINES_PER_BLOCK = 2048
# a block's count of the lines left out for ±inf per-sample losses (a key no metric's name can be)
_OVERFLOWED = "(per-sample overflow)"
STORE_SCALARS = ("lr", "direction_norm", "update_step")  # copied into per_line as float64


def compute(
    source: LineSource,
    lines: LineRange,
    options: AnalysisOptions,
    *,
    out_dir: Path | None = None,
    metrics: tuple[Metric, ...] | None = None,
    lines_per_block: int = LINES_PER_BLOCK,
    scheduler=None,
) -> AnalysisResult:
    """Run every metric that the store's arrays allow; record what was skipped and why.

    Args:
        source: the store; lines: the analysed lines; options: every knob.
        out_dir: the report folder (a metric may write large outputs there); None: nowhere.
        metrics: the metrics to run, in presentation order (default: the registered ones).
        lines_per_block: rows of the per-line arrays read at once.
        scheduler: where the blocks and the distance tiles run (``analysis.parallel``): None
            (here, in order), ``"threads"`` / ``"processes"`` (dask), a dask scheduler address
            or a ``distributed.Client``. The results are the same, bit for bit.

    Raises:
        ValueError: no ``loss_train``, bad options, or a metric's own check.
    """
    if not source.has("loss_train"):
        raise ValueError(f"{source.path} has no 'loss_train' (no training measurement); nothing to analyse")
    if lines_per_block < 1:
        raise ValueError(f"lines_per_block must be >= 1, got {lines_per_block}")
    metrics = registered_metrics() if metrics is None else tuple(metrics)
    check_metric_options(options, metrics)
    chosen_lines(lines, options.plot_lines, source.committed_lines)  # a bad plot line fails before the work
    res = AnalysisResult(source.path, source.status, source.committed_lines, lines.indices, source.position, options,
                         metrics=metrics)
    res.per_line.update({n: source.read(n, lines).astype(np.float64) for n in STORE_SCALARS if source.has(n)})
    res.per_line["step"] = source.read("step", lines).astype(np.int64)
    res.per_line["nonfinite"] = nonfinite = _nonfinite(source, lines, res.per_line)
    setup = Setup(source, lines, options, source.position, out_dir, nonfinite=nonfinite if nonfinite.any() else None)
    order = computation_order(metrics)
    plans = {m.name: m.plan(setup) for m in order}
    results: dict[str, MetricResult] = {}
    with using(make_executor(scheduler)):
        for stage in Stage:
            staged = [m for m in order if m.stage is stage]
            rows = lines_per_block if stage is Stage.LINES else None
            results.update(_run_stage(staged, plans, setup, rows))
    _collect(res, metrics, plans, results)
    marks = {k: v for m in metrics for k, v in res.outputs[m.name].marks.items()}
    res.views = line_views(source, lines, options, res.per_line.get("step"), marks, nonfinite)
    return res


def _nonfinite(source: LineSource, lines: LineRange, per_line: dict[str, np.ndarray]) -> np.ndarray:
    """``[L]`` bool: :func:`losslines.records.nonfinite_line` of the analysed lines, from the stored
    norms and the losses at s = 0 (a store without some of them is judged on the rest)."""
    n = len(lines)
    at_zero = np.flatnonzero(source.position == 0.0)
    loss0 = {s: source.read_point(f"loss_{s}", lines, int(at_zero[0])) for s in SPLITS
             if at_zero.size and source.has(f"loss_{s}")}
    return nonfinite_line(per_line.get("direction_norm", np.zeros(n)), per_line.get("update_step", np.zeros(n)),
                          loss0)


def _run_stage(metrics: list[Metric], plans: dict[str, Plan], setup: Setup,
               rows_per_block: int | None) -> dict[str, MetricResult]:
    """Run one stage's metrics over blocks read once for all of them."""
    results: dict[str, MetricResult] = {}
    active: list[Metric] = []
    for m in metrics:  # in computation order: the metrics a metric needs come first
        plan = plans[m.name]
        missing = [n for n in m.needs if n not in {a.name for a in active}]
        if not plan.run:
            results[m.name] = MetricResult(computed=False)
        elif missing:
            results[m.name] = MetricResult(computed=False, skipped=(f"{m.name}: needs {missing}, which did not run",))
        else:
            active.append(m)
    if not active:
        return results
    if metrics[0].stage is Stage.WHOLE:
        results.update({m.name: m.finish(plans[m.name], {}) for m in active})
        return results
    source, lines = setup.source, setup.lines
    names = list(dict.fromkeys(n for m in active for n in plans[m.name].reads if source.has(n)))
    if rows_per_block is None:  # per-sample arrays: as many lines as the memory budget holds
        per_line = sum(source.bytes_per_line(n) for n in names)
        rows_per_block = max(1, setup.options.sample_block_bytes // max(per_line, 1))
    task = partial(_block_task, source=source, lines=lines, names=names, active=tuple(active), plans=plans,
                   nonfinite=setup.nonfinite)
    per_block = current_executor().map(task, block_spans(lines, rows_per_block))  # in order, on any executor
    overflowed = sum(int(done[_OVERFLOWED]) for done in per_block)
    note = (f"{overflowed} line(s) whose stored per-sample losses hold ±inf (a loss beyond the sample dtype: "
            "float16 holds up to 65504 nats) are left out of the per-sample metrics",) if overflowed else ()
    for m in active:
        keys = dict.fromkeys(k for done in per_block for k in done[m.name])
        parts = {k: np.concatenate([done[m.name][k] for done in per_block if k in done[m.name]]) for k in keys}
        result = m.finish(plans[m.name], parts)
        results[m.name] = replace(result, notes=result.notes + note)
    return results


def _block_task(span: BlockSpan, *, source: LineSource, lines: LineRange, names: list[str],
                active: tuple[Metric, ...], plans: dict[str, Plan],
                nonfinite: np.ndarray | None = None) -> dict[str, Any]:
    """Every active metric's ``block`` on one block of lines, its arrays read once (here, or in
    a dask worker): ``{metric name: parts}`` and the count of lines left out for per-sample
    overflow. The rows of non-finite lines, and of lines whose per-sample losses hold ±inf, are
    NaN in every floating-point array."""
    arrays = {n: source.read_span(n, lines, span) for n in names}
    n = next(iter(arrays.values())).shape[0] if arrays else len(range(span.start, span.stop, lines.step))
    indices = lines.indices[span.offset:span.offset + n]
    left_out = nonfinite[span.offset:span.offset + n].copy() if nonfinite is not None else np.zeros(n, dtype=bool)
    # a finite line whose per-sample losses overflowed the store's sample dtype (±inf; NaN = not measured)
    overflowed = np.zeros(n, dtype=bool)
    for name in names:
        if name.startswith("sample_loss_"):
            overflowed |= np.isinf(arrays[name]).reshape(n, -1).any(axis=1) & ~left_out
    left_out |= overflowed
    if left_out.any():
        arrays = {k: _without(a, left_out) for k, a in arrays.items()}
    done: dict[str, Any] = {_OVERFLOWED: int(overflowed.sum())}
    for m in active:
        plan = plans[m.name]
        block = Block(span.offset, indices, {k: arrays[k] for k in plan.reads if k in arrays},
                      {need: done[need] for need in m.needs})
        done[m.name] = dict(m.block(plan, block))
    return done


def _without(rows: np.ndarray, left_out: np.ndarray) -> np.ndarray:
    """``rows`` with NaN in the rows ``left_out`` (floating-point arrays; others as they are)."""
    if not np.issubdtype(rows.dtype, np.floating):
        return rows
    out = rows.copy()
    out[left_out] = np.nan
    return out


def _collect(res: AnalysisResult, metrics: tuple[Metric, ...], plans: dict[str, Plan],
             results: dict[str, MetricResult]) -> None:
    """Merge the results into ``res`` in presentation order; a name two metrics claim is an error."""
    owner = {k: "the store" for k in res.per_line}
    arrays_owner: dict[str, str] = {}
    for m in metrics:
        plan, out = plans[m.name], results[m.name]
        out = replace(out, skipped=plan.skipped + out.skipped, notes=plan.notes + out.notes)
        res.outputs[m.name] = out
        for key, values in out.per_line.items():
            if key in owner:
                raise ValueError(f"metric {m.name!r} writes per-line {key!r}, which {owner[key]} already wrote")
            owner[key] = f"metric {m.name!r}"
            res.per_line[key] = values
        for key in out.arrays:
            if key in arrays_owner or key == "lines" or key.startswith("line_"):
                raise ValueError(f"metric {m.name!r} writes per_line.npz key {key!r}, which is taken")
            arrays_owner[key] = m.name
        res.skipped += [s for s in out.skipped if s not in res.skipped]
        res.notes += [s for s in out.notes if s not in res.notes]
