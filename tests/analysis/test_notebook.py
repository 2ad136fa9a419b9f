"""The analysis in a notebook: results returned, not written; tables; figures into a given ax."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

import losslines
from losslines.analysis import AnalysisOptions, analyze_store, compute
from losslines.analysis.figures import plot_per_line


def test_compute_writes_nothing_and_equals_what_analyze_writes(parabola_store, tmp_path):
    store = parabola_store["path"]
    before = sorted(p.name for p in tmp_path.iterdir())
    options = AnalysisOptions(sgd_lrs=(0.1,), n_draws=4)
    res = compute(store, options=options)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no report folder, nothing beside the store
    written = json.loads(analyze_store(store, tmp_path / "report", options=options, figures=False).metrics.read_text())
    written.pop("figures"), written.pop("timing_s")
    assert json.loads(json.dumps(res.summary())) == written
    assert losslines.compute is compute


def test_results_as_a_table_and_a_dataset(parabola_store):
    res = compute(parabola_store["path"], lines="2:10")
    table = res.to_dataframe()
    assert list(table.index) == list(range(2, 10)) and table.index.name == "line"
    np.testing.assert_allclose(table["s_opt"], parabola_store["s_opt"][2:10], atol=2e-5)
    assert {"step", "lr", "update_step", "s_opt", "mae2"} <= set(table.columns)
    ds = res.to_xarray()
    assert ds["s_opt"].dims == ("line",) and list(ds["step"].values) == list(table["step"])
    np.testing.assert_array_equal(ds["mae2"].values, table["mae2"].values)
    text = repr(res)
    assert text.startswith("<AnalysisResult of") and "8 lines (2..9) of 12 committed" in text


def test_figure_functions_draw_into_a_given_ax(parabola_store):
    fig = Figure()
    left, right = fig.subplots(1, 2)
    res = compute(parabola_store["path"])
    assert losslines.plot_line(parabola_store["path"], 3, ax=left) is left
    assert "line 3" in left.get_title() and len(left.get_lines()) >= 2
    assert plot_per_line(res, "s_opt", ax=right) is right
    raw, smoothed = right.get_lines()[:2]
    np.testing.assert_array_equal(raw.get_ydata(), res.per_line["s_opt"])
    assert losslines.plot_line(parabola_store["path"], 0).figure is not fig  # no ax: a new figure
    with pytest.raises(KeyError, match="not a per-line result; there are: .*s_opt"):
        plot_per_line(res, "no_such_column")
    with pytest.raises(ValueError, match="selects no line"):
        losslines.plot_line(parabola_store["path"], 99)


def test_watch_reports_as_lines_commit_and_stops_when_the_run_ends(tmp_path, capsys):
    import zarr
    from analysis_stores import write_parabola_store

    from losslines.cli import main

    path = tmp_path / "store.zarr"
    write_parabola_store(path, n_lines=8)
    root = zarr.open_group(str(path), mode="r+")
    root.update_attributes({"status": "running", "committed_lines": 4})  # a run that has committed 4 lines

    polls = []

    def writer_meanwhile(seconds):  # what the run does between two polls
        polls.append(seconds)
        if len(polls) == 2:
            root.update_attributes({"committed_lines": 8})
        if len(polls) == 3:
            root.update_attributes({"status": "complete"})

    reports = []
    from losslines.analysis import watch_store

    last = watch_store(path, tmp_path / "report", every=5.0, sleep=writer_meanwhile, figures=False,
                       on_report=lambda r: reports.append(r.summary["analysed_lines"]))
    # no new analysis while nothing was committed; a last one when the run ended (its status)
    assert reports == [4, 8, 8] and polls == [5.0, 5.0, 5.0]
    assert last.summary["analysed_lines"] == 8 and last.summary["status"] == "complete"
    assert main(["analyze", str(path), "--out", str(tmp_path / "cli"), "--no-figures", "--watch", "0.01"]) == 0
    assert capsys.readouterr().out.count("wrote ") == 1  # a finished store: one report, then done
