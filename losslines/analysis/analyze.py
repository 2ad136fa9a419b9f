"""``losslines analyze``: store in, report folder out (report.md, metrics.json, figures).

:func:`analyze_store` is the library entry point; :func:`add_analyze_arguments` and
:func:`run_analyze` are the thin argparse layer the CLI calls. A store that is still being
written is analysed up to its committed lines.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from losslines.analysis.compute import compute
from losslines.analysis.metric import FigureSpec
from losslines.analysis.metric_options import (
    add_metric_arguments,
    comma_floats,
    comma_ints,
    metric_options_from_args,
)
from losslines.analysis.registry import registered_metrics
from losslines.analysis.report import write_outputs
from losslines.analysis.results import AnalysisOptions, AnalysisResult
from losslines.analysis.source import LineSource, parse_lines
from losslines.store.reader import LineStore


@dataclass(frozen=True)
class AnalysisReport:
    """What :func:`analyze_store` produced.

    Attributes:
        out_dir: the report folder; ``report``: its report.md; ``metrics``: its metrics.json.
        summary: the content of metrics.json.
        figures: ``{figure name: [files]}``.
        result: the full in-memory result (per-line arrays).
    """

    out_dir: Path
    report: Path
    metrics: Path
    summary: dict[str, Any]
    figures: dict[str, list[Path]]
    result: AnalysisResult


def default_report_dir(store: str | os.PathLike[str]) -> Path:
    """``<store>.analysis`` beside a local store; for a store behind a URL (``s3://...``), a local
    folder ``<store name>.analysis`` in the working directory (reports are read locally)."""
    text = os.fspath(store).rstrip("/")
    if "://" in text and not text.startswith("file://"):
        return Path(text.rsplit("/", 1)[-1] + ".analysis")
    return Path(text.removeprefix("file://") + ".analysis")


def analyze_store(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    lines: str | slice | None = None,
    window: float | None = None,
    options: AnalysisOptions | None = None,
    figures: bool = True,
    scheduler=None,
) -> AnalysisReport:
    """Analyse a losslines store and write the report folder.

    Args:
        path: the store (format 1 or 2).
        out_dir: report folder (created; default ``<store>.analysis`` next to the store).
        lines: analysed committed lines, ``"START:STOP[:STEP]"`` or a slice; default all.
        window: fit / distance window half-width (overrides ``options.window``).
        options: every other knob (:class:`AnalysisOptions`).
        figures: draw the figures (PNG + PDF by default).
        scheduler: where the heavy work runs: None (here), ``"threads"``, ``"processes"``, a
            dask scheduler address or a ``distributed.Client`` (``analysis.parallel``); the
            results do not depend on it.

    Raises:
        FileNotFoundError: no store at ``path``.
        ValueError: not a store, no committed line, bad options.
    """
    out = Path(out_dir) if out_dir is not None else default_report_dir(path)
    t0 = time.perf_counter()
    result = compute_store(path, lines=lines, window=window, options=options, scheduler=scheduler, out_dir=out)
    t1 = time.perf_counter()
    drawn = _draw(result, out) if figures else {}
    result.timing.update(compute_s=round(t1 - t0, 3), figures_s=round(time.perf_counter() - t1, 3))
    summary = write_outputs(result, out, drawn)
    return AnalysisReport(out, out / "report.md", out / "metrics.json", summary, drawn, result)


def watch_store(path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
                every: float = 30.0, on_report: Callable[[AnalysisReport], None] | None = None,
                sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> AnalysisReport | None:
    """Re-analyse a store whenever its committed lines grow, until it is no longer running.

    Polls the store every ``every`` seconds (reading only its commit mark, cheap on any store
    layer), rewrites the report folder as :func:`analyze_store` would (``kwargs`` are its
    arguments) when lines were committed since the last report, and returns the last report once
    the store is ``complete`` or ``failed`` (after a final report of every committed line). A
    writer killed without closing leaves its store ``running``: stop watching with Ctrl-C.

    Returns:
        The last report, or None if no line was ever committed.
    """
    from losslines.store.reader import open_store

    reported, report = (-1, None), None
    while True:
        store = open_store(path)
        now = (store.committed_lines, store.status)
        if now[0] > 0 and now != reported:  # new lines, or the run ended since the last report
            report = analyze_store(path, out_dir, **kwargs)
            reported = (report.result.committed_lines, report.result.status)
            if on_report is not None:
                on_report(report)
            if reported != now:  # it changed meanwhile: report again before sleeping
                continue
        if now[1] != "running":
            return report
        sleep(every)


def compute_store(
    store,
    *,
    lines: str | slice | None = None,
    window: float | None = None,
    options: AnalysisOptions | None = None,
    scheduler=None,
    out_dir: str | os.PathLike[str] | None = None,
) -> AnalysisResult:
    """Every metric of the report on a store, returned — nothing is written (the notebook entry,
    ``losslines.analysis.compute``; :func:`analyze_store` is this plus the files).

    Args:
        store: a store path or URL, or an open ``LineStore``.
        lines, window, options, scheduler: as in :func:`analyze_store`.
        out_dir: where a metric may write large outputs of its own (``save_distance_matrix``);
            created if given. None: nowhere.

    Returns:
        The :class:`AnalysisResult`: ``.to_dataframe()`` (one row per line), ``.to_xarray()``,
        ``.summary()`` (the content of metrics.json), the figure functions of
        ``losslines.analysis.figures``.

    Raises:
        FileNotFoundError / ValueError: no store, no committed line, bad options.
    """
    options = options or AnalysisOptions()
    if window is not None:
        options = replace(options, window=float(window))
    source = LineSource(store) if isinstance(store, LineStore) else LineSource.open(store)
    if source.committed_lines == 0:
        raise ValueError(f"{source.path} has no committed line yet (status {source.status!r}); nothing to analyse")
    selection = parse_lines(lines, source.committed_lines)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return compute(source, selection, options, out_dir=out, scheduler=scheduler)


def figure_specs(res: AnalysisResult) -> list[FigureSpec]:
    """The figures of every computed metric, in registration order (a skipped metric draws none)."""
    return [spec for metric in res.metrics if res.outputs[metric.name].computed for spec in metric.figures(res)]


def _draw(res: AnalysisResult, out: Path) -> dict[str, list[Path]]:
    """Every computed metric's figures, then the line plots."""
    # matplotlib only when figures are drawn: every `losslines` command imports this module.
    from losslines.analysis.figures_lines import line_figure

    figs = {spec.title: (spec.stem, spec.draw(res)) for spec in figure_specs(res)}
    for view in res.views:
        figs[f"line {view.line} (Figs. 2, 5)"] = (f"line_{view.line:06d}", line_figure(res.position, view))
    written: dict[str, list[Path]] = {}
    for title, (stem, fig) in figs.items():
        paths = []
        for fmt in res.options.formats:
            target = out / f"{stem}.{fmt}"
            fig.savefig(target, dpi=120)
            paths.append(target)
        written[title] = paths
    return written


def add_analyze_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the arguments of ``losslines analyze`` to ``parser``."""
    d = AnalysisOptions()
    parser.add_argument("store", help="path of the losslines store")
    parser.add_argument("--out", default=None, help="report folder (default: STORE.analysis)")
    parser.add_argument("--lines", default=None, metavar="START:STOP[:STEP]",
                        help="analysed committed lines, Python slice syntax (default: all)")
    parser.add_argument("--window", type=float, default=d.window, help="fit/distance window half-width |s| <= W")
    parser.add_argument("--plot-lines", type=comma_ints, default=None, metavar="I,J,...",
                        help="committed lines to draw as line plots (default: 4 spread out)")
    parser.add_argument("--sgd-lrs", type=comma_floats, default=None, metavar="LR,...",
                        help="learning rates of the replayed SGD rules (default: 1/4..2 x the run's lr)")
    parser.add_argument("--pal-mus", type=comma_floats, default=d.pal_mus, metavar="MU,...",
                        help="measuring steps of the replayed PAL rules")
    parser.add_argument("--batch-sizes", type=comma_ints, default=None, metavar="B,...",
                        help="batch sizes of the batch-size study (default: n_B/8 .. 8 n_B)")
    parser.add_argument("--draws", type=int, default=d.n_draws, help="random batches per size and line")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the random batches")
    parser.add_argument("--smoothing", type=int, default=d.smoothing, help="moving-average width (lines)")
    parser.add_argument("--save-distance-matrix", action="store_true",
                        help="also write the full distance matrix to OUT/distances.zarr")
    parser.add_argument("--scheduler", default=None, metavar="threads|processes|ADDRESS",
                        help="run the blocks of lines and the distance tiles on dask: its threads or processes "
                             "scheduler, or a cluster at ADDRESS (tcp://host:8786); same results (default: this "
                             "process)")
    parser.add_argument("--watch", type=float, nargs="?", const=30.0, default=None, metavar="SECONDS",
                        help="keep watching a running store: rewrite the report whenever lines are committed "
                             "(checked every SECONDS, default 30) until the run ends")
    parser.add_argument("--compat", choices=("none", "original"), default=d.compat,
                        help="'original': the original analysis code's definitions (full-batch curve pooled with "
                             "the direction batch, unrefined grid argmin, 66-point distance window, PAL's l(mu) at "
                             "the nearest grid point), with the default numbers side by side in the report "
                             "(default: none)")
    parser.add_argument("--no-figures", action="store_true", help="write report.md and metrics.json only")
    parser.add_argument("--formats", default="png,pdf", help="figure formats (png, pdf, svg)")
    add_metric_arguments(parser, registered_metrics())
    return parser


def run_analyze(args: argparse.Namespace) -> AnalysisReport:
    """Run ``losslines analyze`` from parsed arguments (errors: ValueError / FileNotFoundError)."""
    options = AnalysisOptions(
        window=args.window, plot_lines=args.plot_lines, sgd_lrs=args.sgd_lrs, pal_mus=tuple(args.pal_mus),
        batch_sizes=args.batch_sizes, n_draws=args.draws, seed=args.seed, smoothing=args.smoothing,
        save_distance_matrix=args.save_distance_matrix,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        metric_options=metric_options_from_args(args, registered_metrics()), compat=args.compat,
    )
    kwargs = dict(lines=args.lines, options=options, figures=not args.no_figures, scheduler=args.scheduler)

    def said(report: AnalysisReport) -> None:
        print(f"wrote {report.report} ({report.summary['analysed_lines']} lines; "
              f"{len(report.summary['skipped'])} item(s) skipped, see report.md)", flush=True)

    if args.watch is None:
        report = analyze_store(args.store, args.out, **kwargs)
        said(report)
        return report
    report = watch_store(args.store, args.out, every=args.watch, on_report=said, **kwargs)
    if report is None:
        raise ValueError(f"{args.store} stopped without a committed line; nothing to analyse")
    return report
