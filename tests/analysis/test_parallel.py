"""The analysis on dask: blocks of lines and distance tiles as tasks, the same numbers bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from losslines.analysis.compute import compute
from losslines.analysis.distances import blockwise_distances, dense_distances, shifted_window
from losslines.analysis.parallel import SERIAL, make_executor
from losslines.analysis.results import AnalysisOptions
from losslines.analysis.source import LineRange, LineSource, block_spans
from losslines.cli import main
from losslines.store import open_store

from analysis_stores import GRID, write_parabola_store

pytest.importorskip("dask")

# small blocks and tiles: many tasks in every stage, uneven last blocks
OPTIONS = AnalysisOptions(sgd_lrs=(0.1, 0.05), n_draws=4, distance_block=7, sample_block_bytes=3 * 167 * 80 * 4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("parallel") / "store.zarr"
    write_parabola_store(path, n_lines=60, n_train=64, batch=16, sample_losses=("train", "batch"), seed=4)
    return path


def _compute(store, scheduler):
    source = LineSource.open(store)
    return compute(source, LineRange(0, source.committed_lines), OPTIONS, lines_per_block=6, scheduler=scheduler)


def assert_same_result(a, b) -> None:
    assert a.per_line.keys() == b.per_line.keys()
    for key in a.per_line:
        np.testing.assert_array_equal(b.per_line[key], a.per_line[key], err_msg=key)
    assert a.outputs.keys() == b.outputs.keys()
    for name, out in a.outputs.items():
        assert b.outputs[name].computed == out.computed, name
        for key, value in out.arrays.items():
            np.testing.assert_array_equal(b.outputs[name].arrays[key], value, err_msg=f"{name}: {key}")
    d, e = a.outputs["distances"].value.summary, b.outputs["distances"].value.summary
    for field in ("row_mean", "view", "consecutive", "first"):
        np.testing.assert_array_equal(getattr(e, field), getattr(d, field), err_msg=field)
    np.testing.assert_array_equal([e.mean_all, e.mean_first, e.mean_rest], [d.mean_all, d.mean_first, d.mean_rest])
    assert np.isfinite([d.mean_all, d.mean_first, d.mean_rest]).all()
    np.testing.assert_array_equal(b.batch_study.slopes, a.batch_study.slopes)


def test_spans_cover_the_selection_in_order():
    spans = block_spans(LineRange(3, 40, 2), 5)
    rows = [r for s in spans for r in range(s.start, s.stop, 2)]
    assert rows == list(range(3, 40, 2)) and [s.offset for s in spans] == [0, 5, 10, 15]


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_schedulers_give_the_serial_numbers(store, scheduler):
    serial = _compute(store, None)
    assert len(block_spans(LineRange(0, 60), 6)) == 10  # the LINES stage really is split
    assert_same_result(serial, _compute(store, scheduler))


def test_a_dask_cluster_gives_the_serial_numbers(store):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert_same_result(_compute(store, None), _compute(store, client))
        assert_same_result(_compute(store, None), _compute(store, cluster.scheduler_address))


def test_tiles_on_an_executor_equal_the_serial_walk_and_the_dense_oracle():
    rng = np.random.default_rng(1)
    losses = rng.uniform(0, 1, (23, GRID.size)) + GRID**2
    shifted, _ = shifted_window(GRID, losses, 0.3)
    serial = blockwise_distances(shifted, block=5, view_size=9)
    threads = blockwise_distances(shifted, block=5, view_size=9, map_tiles=make_executor("threads").map)
    np.testing.assert_array_equal(threads.row_mean, serial.row_mean)
    np.testing.assert_array_equal(threads.view, serial.view)
    dense = dense_distances(shifted)
    np.testing.assert_allclose(serial.row_mean, dense.sum(1) / 22, rtol=1e-12)
    np.testing.assert_allclose(serial.view, dense[np.ix_(serial.view_lines, serial.view_lines)], rtol=1e-12)


def test_the_command_line_takes_a_scheduler(store, tmp_path):
    assert main(["analyze", str(store), "--out", str(tmp_path / "a"), "--no-figures", "--scheduler", "threads"]) == 0
    assert main(["analyze", str(store), "--out", str(tmp_path / "b"), "--no-figures"]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
    a.pop("timing_s"), b.pop("timing_s")
    assert a == b and a["analysed_lines"] == 60


def test_unknown_schedulers_are_refused():
    assert make_executor(None) is SERIAL and make_executor("serial") is SERIAL
    with pytest.raises(ValueError, match="scheduler must be None"):
        make_executor(42)


def test_to_xarray_stays_lazy(store):
    ds = open_store(store).to_xarray()
    assert ds["sample_loss_train"].chunks is not None  # dask-backed: nothing read yet
    assert float(ds["loss_train"].isel(line=0).max()) > 0
