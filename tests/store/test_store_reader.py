"""The lazy reader: numpy-equivalent indexing, clear open errors, blocks, xarray, refresh."""

from __future__ import annotations

import json

import os

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from losslines.store import LineStore, StoreArray, StoreLayout, StoreWriter, open_store

LAYOUT = StoreLayout(n_points=5, n_train=6, n_val=3, batch_size=2, sample_losses=("train", "batch"),
                     sample_dtype="float32", n_directions=2, line_chunk=3, sample_block=4)
N_LINES = 7


@pytest.fixture(scope="module")
def written(tmp_path_factory, kit):
    """A complete store of N_LINES random lines (+2 direction lines) and its oracle."""
    path = tmp_path_factory.mktemp("reader") / "s.zarr"
    rng = np.random.default_rng(7)
    oracle, dir_oracle = kit.Oracle(LAYOUT), kit.Oracle(LAYOUT, directions=True)
    inputs = kit.make_inputs(LAYOUT)
    with StoreWriter.create(path, LAYOUT, attrs={"config": {"name": "r"}}, capacity=20, **inputs) as w:
        for i in range(N_LINES):
            record = kit.random_line(LAYOUT, rng, step=3 * i, p_present=0.9)
            w.append(record)
            oracle.append(record)
        for i in range(2):
            record = kit.random_line(LAYOUT, rng, step=i, directions=True)
            w.append_directions(record)
            dir_oracle.append(record)
    return path, oracle, dir_oracle, inputs


def _index(n: int) -> st.SearchStrategy:
    ints = st.integers(-n - 2, n + 1)
    bounds = st.none() | st.integers(-n - 3, n + 3)
    slices = st.builds(slice, bounds, bounds, st.none() | st.integers(-3, 3).filter(lambda s: s != 0))
    return ints | slices


@st.composite
def keys(draw: st.DrawFn, shape: tuple[int, ...]):
    parts = [draw(_index(n)) for n in shape[: draw(st.integers(0, len(shape)))]]
    if draw(st.booleans()):
        parts.insert(draw(st.integers(0, len(parts))), Ellipsis)
    return parts[0] if len(parts) == 1 and draw(st.booleans()) else tuple(parts)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), name=st.sampled_from(["step", "loss_train", "sample_loss_train", "batch_ids", "position"]))
def test_indexing_matches_numpy_on_committed_lines(written, data, name):
    path, oracle, _, inputs = written
    store = open_store(path)
    expected = inputs["positions"] if name == "position" else oracle.array(name)
    array = store[name]
    assert array.shape == expected.shape
    key = data.draw(keys(expected.shape))
    try:
        want = expected[key]
    except IndexError:
        with pytest.raises(IndexError):
            array[key]
        return
    got = array[key]
    assert np.shape(got) == np.shape(want)
    np.testing.assert_array_equal(got, want)


def test_unsupported_indices_are_clear_errors(written):
    array = open_store(written[0])["loss_train"]
    for key in ([0, 1], np.array([0]), None, True, (0, 0, 0), (..., ...)):
        with pytest.raises((TypeError, IndexError)):
            array[key]
    with pytest.raises(TypeError, match="ints, slices"):
        array[[0, 1]]


def test_store_api(written):
    path, oracle, _, inputs = written
    store = open_store(path)
    assert isinstance(store, LineStore)
    assert (store.format, store.status, store.committed_lines, store.n_lines) == (2, "complete", N_LINES, N_LINES)
    assert store.allocated_lines == N_LINES  # a complete store is trimmed to its committed lines
    assert store.config == {"name": "r"}
    assert "loss_train" in store and store.has("loss_train")
    assert "loss_nope" not in store and 3 not in store
    assert "directions" not in store.names
    with pytest.raises(KeyError, match="no array 'loss_nope'; present: .*loss_train"):
        store["loss_nope"]
    array = store["sample_loss_train"]
    assert isinstance(array, StoreArray)
    assert (array.name, array.dims, array.dtype) == ("sample_loss_train", ("line", "point", "sample_train"),
                                                     np.float32)
    assert (array.chunks, len(array), array.ndim) == ((1, 5, 4), N_LINES, 3)
    assert array.nbytes == N_LINES * 5 * 6 * 4
    assert "sample_loss_train" in repr(array) and "line=7" in repr(array)
    np.testing.assert_array_equal(store.sample_ids("train"), inputs["sample_ids"]["train"])
    with pytest.raises(ValueError, match="unknown split 'batch'"):
        store.sample_ids("batch")
    assert store.layout == LAYOUT


def test_directions_substore(written):
    path, _, dir_oracle, inputs = written
    sub = open_store(path).directions
    assert sub is not None and sub.directions is None
    assert sub.committed_lines == 2 and sub.status == "complete" and sub.config == {"name": "r"}
    np.testing.assert_array_equal(sub.position, inputs["positions"])
    np.testing.assert_array_equal(sub.sample_ids("val"), inputs["sample_ids"]["val"])
    assert sub["loss_train"].dims == ("direction_line", "direction", "point")
    np.testing.assert_array_equal(sub["sample_loss_batch"][-1, 1], dir_oracle.array("sample_loss_batch")[1, 1])
    assert 0 < sub.nbytes_stored() < open_store(path).nbytes_stored()
    ds = sub.to_xarray()
    assert ds["sample_loss_train"].dims == ("direction_line", "direction", "point", "sample_train")
    np.testing.assert_array_equal(ds["update_step"].values, dir_oracle.array("update_step"))


@pytest.mark.parametrize("block", [None, 1, 2, 5, 100])
def test_iter_blocks_covers_committed_lines_in_order(written, block):
    path, oracle, _, _ = written
    store = open_store(path)
    blocks = list(store.iter_blocks("sample_loss_train", block))
    size = block or 1  # the chunk along line of per-sample arrays is one line
    assert [s for s, _ in blocks] == list(range(0, N_LINES, size))
    assert all(b.shape[0] <= size for _, b in blocks)
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), oracle.array("sample_loss_train"))
    assert [s for s, _ in store.iter_blocks("loss_val")] == [0, 3, 6]  # chunk of small arrays
    with pytest.raises(ValueError, match="per-line"):
        next(store.iter_blocks("position"))
    with pytest.raises(ValueError, match=">= 1"):
        next(store.iter_blocks("step", 0))


def test_to_xarray_dims_coords_and_values(written):
    path, oracle, _, inputs = written
    ds = open_store(path).to_xarray()
    assert dict(ds.sizes) == {"line": N_LINES, "point": 5, "sample_train": 6, "sample_val": 3, "batch_slot": 2}
    np.testing.assert_array_equal(ds["position"].values, inputs["positions"])
    assert ds["position"].dims == ("point",) and "position" in ds.coords
    assert ds["sample_loss_batch"].dims == ("line", "point", "batch_slot")
    assert ds["loss_train"].attrs["description"] == "mean train loss in nats"
    for name in ("step", "loss_train", "sample_loss_train", "batch_ids", "slope0_val"):
        np.testing.assert_array_equal(ds[name].values, oracle.array(name), err_msg=name)
    np.testing.assert_array_equal(ds["sample_ids_val"].values, inputs["sample_ids"]["val"])
    assert json.loads(ds.attrs["config"]) == {"name": "r"} and "config" in ds.attrs["json_attrs"].split()  # netCDF-safe


def test_to_xarray_of_an_empty_store(tmp_path, kit):
    layout = StoreLayout(n_points=2, n_train=2, sample_losses=("train",))
    StoreWriter.create(tmp_path / "s.zarr", layout, attrs={}, **kit.make_inputs(layout)).close()
    ds = open_store(tmp_path / "s.zarr").to_xarray()
    assert ds.sizes["line"] == 0
    assert ds["sample_loss_train"].values.shape == (0, 2, 2)


def test_nbytes_stored_counts_every_file(written):
    path = written[0]
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    assert open_store(path).nbytes_stored() == total


def test_refresh_sees_new_lines_and_grown_arrays(tmp_path, kit):
    layout = StoreLayout(n_points=2, n_train=2, line_chunk=2)
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, layout, attrs={}, capacity=1, **kit.make_inputs(layout))
    writer.append({"step": 0})
    writer.flush()
    store = open_store(path)
    assert store["step"].read().tolist() == [0]
    for i in range(1, 9):
        writer.append({"step": i})
    writer.flush()
    assert store.committed_lines == 1 and store["step"].read().tolist() == [0]  # snapshot
    assert store.refresh() is store
    assert store.committed_lines == 9 and store.status == "running"
    assert store["step"].read().tolist() == list(range(9))
    writer.close()
    assert store.refresh().status == "complete"


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a losslines store .no zarr.json"):
        open_store(tmp_path / "plain")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(ValueError, match="not a losslines store .no 'losslines_format'"):
        open_store(tmp_path / "other.zarr")
    zarr.open_array(str(tmp_path / "array.zarr"), mode="w", shape=(2,), dtype="f4")
    with pytest.raises(ValueError, match="not a losslines store"):
        open_store(tmp_path / "array.zarr")
    group = zarr.open_group(str(tmp_path / "future.zarr"), mode="w")
    group.update_attributes({"losslines_format": 3})
    with pytest.raises(ValueError, match=r"losslines_format=3; this losslines reads format\(s\) \[1, 2\]"):
        open_store(tmp_path / "future.zarr")


def test_store_modules_do_not_import_torch():
    """The analysis reads stores on machines without torch: the store package must not need it."""
    import subprocess
    import sys

    code = ("import sys, losslines.store, losslines.store.info; "
            "assert 'torch' not in sys.modules, 'losslines.store imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reader_ignores_a_writers_temporary_metadata_files(written):
    """Regression: zarr's member listing warns on the `zarr.<uuid>.partial` file that a
    concurrent writer keeps for an instant while it atomically replaces zarr.json."""
    path = written[0]
    stray = path / "zarr.0123abcd.partial"
    stray.write_text("{")
    try:
        store = open_store(path)
        assert "loss_train" in store.names and store.directions is not None
        assert store.layout == LAYOUT
        assert store.refresh().committed_lines == N_LINES
    finally:
        stray.unlink()
