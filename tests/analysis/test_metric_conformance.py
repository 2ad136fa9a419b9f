"""One suite every registered metric passes (parametrized over the registry).

On a small parabola store each metric computes, its summary is JSON and lands in metrics.json
under its name and its report lines in report.md, its per-line arrays have one entry per
analysed line, a store lacking its arrays gives a skip reason instead of an error, its results
do not depend on the block size, and its figures are drawn only when it has data.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from losslines.analysis.analyze import analyze_store, figure_specs
from losslines.analysis.compute import compute
from losslines.analysis.metric import Setup
from losslines.analysis.registry import computation_order, registered_metrics
from losslines.analysis.report import summarize_analysis
from losslines.analysis.results import AnalysisOptions
from losslines.analysis.source import LineSource, parse_lines

from analysis_stores import write_parabola_store

METRICS = registered_metrics()
IDS = [m.name for m in METRICS]
OPTIONS = AnalysisOptions(n_draws=3, formats=("png",))
RTOL, ATOL = 1e-9, 1e-12  # block-size independence up to rounding (nats, units of s)
COMPAT_ONLY = {"compat"}  # metrics that run only under --compat original (they compare it with the default)


def _options(metric):
    return replace(OPTIONS, compat="original") if metric.name in COMPAT_ONLY else OPTIONS


class HidingSource:
    """A store that pretends not to have some arrays (``directions/NAME`` for the directions group)."""

    def __init__(self, inner: LineSource, hidden: set[str]) -> None:
        self._inner, self._hidden = inner, set(hidden)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def has(self, name: str) -> bool:
        return name not in self._hidden and self._inner.has(name)

    def directions(self):
        return self._group("directions")

    def steps(self):
        return self._group("steps")

    def _group(self, name):
        sub = getattr(self._inner, name)()
        inner = {h.split("/", 1)[1] for h in self._hidden if h.startswith(name + "/")}
        return HidingSource(sub, inner) if sub is not None and inner else sub


def _run(path, *, hidden=(), metrics=None, options=OPTIONS, lines_per_block=2048):
    source = LineSource.open(path)
    if hidden:
        source = HidingSource(source, set(hidden))
    return compute(source, parse_lines(None, source.committed_lines), options, metrics=metrics,
                   lines_per_block=lines_per_block)


def _with_needs(metric):
    """The metric and every metric it needs, transitively (registry order)."""
    names, todo = set(), [metric]
    while todo:
        m = todo.pop()
        names.add(m.name)
        todo += [x for x in METRICS if x.name in m.needs and x.name not in names]
    return tuple(m for m in METRICS if m.name in names)


def _optional_arrays():
    """Every array some metric reads or requires, but ``loss_train`` (the analysis needs it)."""
    names = set()
    for m in METRICS:
        names |= set(m.reads) | set(m.requires)
    return sorted(names - {"loss_train"})


def _setup(path):
    source = LineSource.open(path)
    return Setup(source, parse_lines(None, source.committed_lines), OPTIONS, source.position)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_parabola_store(tmp_path_factory.mktemp("conf") / "store.zarr", directions=4, n_lines=10,
                                per_step=30)["path"]


@pytest.fixture(scope="module")
def reports(store, tmp_path_factory):
    """The default analysis, and the one under --compat original (run when first asked for)."""
    made = {}

    def of(metric):
        options = _options(metric)
        if options.compat not in made:
            made[options.compat] = analyze_store(store, tmp_path_factory.mktemp("report"), options=options,
                                                 figures=False)
        return made[options.compat]

    return of


@pytest.fixture(scope="module")
def report(reports):
    return reports(METRICS[0])


@pytest.fixture(scope="module")
def degraded(tmp_path_factory):
    """One line, every optional array hidden: only the metrics that need nothing else compute."""
    path = write_parabola_store(tmp_path_factory.mktemp("one") / "one.zarr", n_lines=1, directions=3, per_step=1)["path"]
    return _run(path, hidden=_optional_arrays())


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_computes_and_its_summary_lands_in_metrics_json(metric, reports):
    report = reports(metric)
    out = report.result.outputs[metric.name]
    assert out.computed, out.skipped
    summary = metric.summary(report.result)
    text = json.dumps(summary, allow_nan=False)  # JSON types only, NaN written as null
    written = json.loads(report.metrics.read_text())
    assert metric.name in summary
    for key, value in json.loads(text).items():
        assert written[key] == value, key


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_its_report_lines_land_in_report_md(metric, reports):
    report = reports(metric)
    part = metric.report(report.summary)
    text = report.report.read_text()
    lines = [x for x in part.headline + part.section if x]
    assert all(isinstance(x, str) for x in part.headline + part.section)
    assert all(x.startswith("|") and x.endswith("|") for x in part.headline)
    assert lines and all(x in text for x in lines)


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_per_line_arrays_have_one_entry_per_analysed_line(metric, reports):
    report = reports(metric)
    out = report.result.outputs[metric.name]
    n_lines = report.result.lines.size
    saved = np.load(report.out_dir / "per_line.npz")
    expected = {f"line_{k}" for k in out.per_line} | set(out.arrays)
    assert expected <= set(saved.files)
    for key, values in {**{f"line_{k}": v for k, v in out.per_line.items()}, **out.arrays}.items():
        assert values.shape[0] == n_lines, key
        np.testing.assert_array_equal(saved[key], values)
    for label, steps in out.marks.items():
        assert steps.shape == (n_lines,), label


@pytest.mark.parametrize("metric", [m for m in METRICS if m.requires], ids=[m.name for m in METRICS if m.requires])
def test_a_store_lacking_its_required_arrays_gives_a_skip_reason(metric, store):
    res = _run(store, hidden=metric.requires, metrics=_with_needs(metric))
    out = res.outputs[metric.name]
    assert not out.computed
    assert out.skipped and all(reason in res.skipped for reason in out.skipped)
    assert metric.name not in summarize_analysis(res)


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_hiding_any_array_it_reads_is_not_an_error(metric, store):
    plan = metric.plan(_setup(store))
    hideable = [n for n in plan.reads if n != "loss_train"] + list(metric.requires)
    for name in dict.fromkeys(hideable):
        res = _run(store, hidden=(name,), metrics=_with_needs(metric))
        out = res.outputs[metric.name]
        assert out.computed or out.skipped, name
        if out.computed:
            json.dumps(metric.summary(res), allow_nan=False)


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_results_do_not_depend_on_the_block_size(metric, store):
    big = _run(store, metrics=_with_needs(metric), options=_options(metric))
    tiny = _run(store, metrics=_with_needs(metric), options=replace(_options(metric), sample_block_bytes=1),
                lines_per_block=3)
    a, b = big.outputs[metric.name], tiny.outputs[metric.name]
    assert a.computed and b.computed
    assert a.per_line.keys() == b.per_line.keys() and a.arrays.keys() == b.arrays.keys()
    for key in a.per_line:  # matrix products over more or fewer lines may round differently
        np.testing.assert_allclose(b.per_line[key], a.per_line[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for key in a.arrays:
        np.testing.assert_allclose(b.arrays[key], a.arrays[key], rtol=RTOL, atol=ATOL, err_msg=key)
    sa, sb = metric.summary(big), metric.summary(tiny)
    assert sa.keys() == sb.keys()
    _assert_close(sa, sb)


def _assert_close(a, b, path="summary"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=RTOL, abs=ATOL), path
    else:
        assert a == b, path


@pytest.mark.parametrize("metric", METRICS, ids=IDS)
def test_figures_are_drawn_only_with_data(metric, report, degraded):
    for res in (report.result, degraded):
        stems = {spec.stem for spec in figure_specs(res)}
        own = metric.figures(res) if res.outputs[metric.name].computed else ()
        if not res.outputs[metric.name].computed:
            assert not {s.stem for s in metric.figures(report.result)} & stems  # a skipped metric draws nothing
            continue
        assert {s.stem for s in own} <= stems
        for spec in own:
            fig = spec.draw(res)
            assert fig.axes and any(ax.has_data() for ax in fig.axes), spec.stem


def test_the_degraded_store_skips_and_computes_some_metrics(degraded):
    """The figure test above sees both cases."""
    computed = {name for name, out in degraded.outputs.items() if out.computed}
    assert computed and computed != set(IDS)


def test_computation_order_puts_needed_metrics_first():
    order = [m.name for m in computation_order(METRICS)]
    for m in METRICS:
        for need in m.needs:
            assert order.index(need) < order.index(m.name)
