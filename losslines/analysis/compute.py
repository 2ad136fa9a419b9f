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
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from losslines.analysis.line_views import chosen_lines, line_views
from losslines.analysis.metric import Block, Metric, MetricResult, Plan, Setup, Stage
from losslines.analysis.metric_options import check_metric_options
from losslines.analysis.registry import computation_order, registered_metrics
from losslines.analysis.results import AnalysisOptions, AnalysisResult
from losslines.analysis.parallel import current_executor, make_executor, using
from losslines.analysis.source import BlockSpan, LineRange, LineSource, block_spans

LINES_PER_BLOCK = 2048
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
    setup = Setup(source, lines, options, source.position, out_dir)
    res = AnalysisResult(source.path, source.status, source.committed_lines, lines.indices, setup.position, options,
                         metrics=metrics)
    res.per_line.update({n: source.read(n, lines).astype(np.float64) for n in STORE_SCALARS if source.has(n)})
    res.per_line["step"] = source.read("step", lines).astype(np.int64)
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
    res.views = line_views(source, lines, options, res.per_line.get("step"), marks)
    return res


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
    task = partial(_block_task, source=source, lines=lines, names=names, active=tuple(active), plans=plans)
    per_block = current_executor().map(task, block_spans(lines, rows_per_block))  # in order, on any executor
    for m in active:
        keys = dict.fromkeys(k for done in per_block for k in done[m.name])
        parts = {k: np.concatenate([done[m.name][k] for done in per_block if k in done[m.name]]) for k in keys}
        results[m.name] = m.finish(plans[m.name], parts)
    return results


def _block_task(span: BlockSpan, *, source: LineSource, lines: LineRange, names: list[str],
                active: tuple[Metric, ...], plans: dict[str, Plan]) -> dict[str, dict[str, np.ndarray]]:
    """Every active metric's ``block`` on one block of lines, its arrays read once (here, or in
    a dask worker)."""
    arrays = {n: source.read_span(n, lines, span) for n in names}
    n = next(iter(arrays.values())).shape[0] if arrays else len(range(span.start, span.stop, lines.step))
    indices = lines.indices[span.offset:span.offset + n]
    done: dict[str, dict[str, np.ndarray]] = {}
    for m in active:
        plan = plans[m.name]
        block = Block(span.offset, indices, {k: arrays[k] for k in plan.reads if k in arrays},
                      {need: done[need] for need in m.needs})
        done[m.name] = dict(m.block(plan, block))
    return done


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
