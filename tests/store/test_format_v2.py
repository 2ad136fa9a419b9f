"""Store format 2 as users without losslines see it: plain xarray and zarr, netCDF export,
checksums; format 1 stores still read and upgrade to equal format 2 stores."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from losslines.cli import main
from losslines.runner.driver import run
from losslines.store.reader import open_store
from losslines.store.schema import StoreLayout
from losslines.store.upgrade import upgrade_store
from losslines.store.writer import StoreWriter

V1_STORE = Path(__file__).parent / "data" / "v1_store.zarr"  # written by the format 1 writer (data/README.md)


@pytest.fixture(scope="module")
def measured(tmp_path_factory, tiny_config) -> Path:
    """A complete run with every kind of array: per-sample losses of three splits, directions/, steps/."""
    tmp = tmp_path_factory.mktemp("v2")
    cfg = tiny_config(tmp, "measure.n_directions=2", "measure.directions_at=[0, 6]", "measure.per_step=true",
                      "train.steps=10", "train.checkpoint_every=0")
    assert run(cfg).status == "complete"
    return Path(cfg.store.path)


def test_plain_xarray_opens_a_complete_store_with_coordinates_and_exactly_its_lines(measured):
    store = open_store(measured)
    n = store.committed_lines
    assert (store.format, store.status, n) == (2, "complete", 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated metadata: no fallback warning
        ds = xr.open_zarr(measured)
    assert {"step", "epoch", "position", "sample_ids_train", "sample_ids_val"} <= set(ds.coords)
    assert ds.coords["position"].dims == ("point",) and ds.coords["step"].dims == ("line",)
    assert ds.coords["sample_ids_train"].dims == ("sample_train",)
    assert ds.sizes["line"] == n  # trimmed: no preallocated rows
    assert ds["step"].dtype == np.int64  # a complete store has no unwritten rows to mask
    np.testing.assert_array_equal(ds["step"].values, store["step"].read())
    np.testing.assert_array_equal(ds["loss_train"].values, store["loss_train"].read())
    np.testing.assert_array_equal(ds["position"].values, store.position)
    assert json.loads(ds.attrs["config"]) == store.config and ds.attrs["losslines_format"] == 2
    # the one-request open: every node's metadata is in the root document
    meta = json.loads((measured / "zarr.json").read_text())
    assert {"loss_train", "directions", "directions/loss_train", "steps/step"} <= set(meta["consolidated_metadata"]["metadata"])


def test_plain_datatree_opens_every_group_with_its_own_dimensions(measured):
    tree = xr.open_datatree(measured, engine="zarr")
    directions, steps = tree["directions"].to_dataset(), tree["steps"].to_dataset()
    assert directions["loss_train"].dims == ("direction_line", "direction", "point")
    assert directions.sizes["direction_line"] == 2 and directions.sizes["direction"] == 2
    assert directions.coords["step"].dims == ("direction_line",)
    np.testing.assert_array_equal(directions["step"].values, [0, 6])
    assert steps.sizes["step"] == 10 and "step" in steps.indexes  # one entry per training step
    np.testing.assert_array_equal(steps["step"].values, np.arange(10))


def test_netcdf_export_of_plain_and_losslines_views(measured, tmp_path):
    for i, ds in enumerate([xr.open_zarr(measured), open_store(measured).to_xarray()]):
        # netCDF 3 (scipy, the engine installed here) has no float16: the per-sample losses are float16
        ds = ds.drop_vars([v for v in ds.variables if ds[v].dtype == np.float16])
        ds.to_netcdf(tmp_path / f"{i}.nc")
        back = xr.open_dataset(tmp_path / f"{i}.nc")
        np.testing.assert_array_equal(back["loss_train"].values, ds["loss_train"].values)
        assert json.loads(back.attrs["semantics"]) == open_store(measured).attrs["semantics"]


def test_per_sample_slopes_at_zero_average_to_the_split_slope(measured):
    store = open_store(measured)
    for split in ("train", "val", "batch"):
        samples = store[f"sample_slope0_{split}"].read().astype(np.float64)
        assert samples.shape[:1] == (store.committed_lines,) and np.isfinite(samples[:, 0]).all()
        np.testing.assert_allclose(np.nanmean(samples, axis=1), store[f"slope0_{split}"].read(), rtol=1e-5, atol=1e-6)
    assert store.directions["sample_slope0_train"].dims == ("direction_line", "direction", "sample_train")


def test_a_running_store_shows_unwritten_rows_as_nan_and_commits_every_line(tmp_path, kit):
    layout = StoreLayout(n_points=3, n_train=4, sample_losses=("train",), sample_dtype="float32", line_chunk=4)
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, layout, attrs={"config": {"name": "r"}}, capacity=8, **kit.make_inputs(layout))
    for step in (10, 20, 30):
        writer.append({"step": step, "loss_train": np.full(3, step / 10)})
    writer.flush()
    ds = xr.open_zarr(path, consolidated=False)
    assert ds.attrs["committed_lines"] == 3 and ds.attrs["status"] == "running"
    assert ds.sizes["line"] == 8
    np.testing.assert_array_equal(ds["step"].values, [10, 20, 30] + [np.nan] * 5)  # NaN past committed_lines
    assert np.isnan(ds["loss_train"].values[3:]).all()
    writer.close()
    ds = xr.open_zarr(path)
    assert ds.sizes["line"] == 3 and ds["step"].dtype == np.int64


def test_a_flipped_byte_fails_its_chunks_checksum(measured, tmp_path):
    copy = tmp_path / "s.zarr"
    shutil.copytree(measured, copy)
    chunk = copy / "loss_train" / "c" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        open_store(copy)["loss_train"].read()
    open_store(copy)["loss_val"].read()  # other arrays still read


def test_resume_after_a_rollback_clears_the_rows_to_measure_again(tmp_path, kit):
    layout = StoreLayout(n_points=3, n_train=4, sample_losses=("train",), sample_dtype="float32", line_chunk=4)
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, layout, attrs={}, **kit.make_inputs(layout))
    for step in range(6):
        writer.append({"step": step, "loss_train": np.full(3, 1.0), "sample_loss_train": np.ones((3, 4))})
    writer.close("failed", reason="interrupted")
    leftover = path / "loss_train" / "zarr.0123456789abcdef0123456789abcdef.partial"  # a write a kill cut short
    leftover.write_bytes(b"{")
    StoreWriter.resume(path, at_line=3).close("failed")  # (zarr's listing would warn about it: an error here)
    assert not leftover.exists()
    raw = zarr.open_group(str(path), mode="r")
    assert raw.attrs["committed_lines"] == 3 and raw["step"].shape[0] == 8  # allocation kept
    np.testing.assert_array_equal(raw["step"][:], [0, 1, 2, -1, -1, -1, -1, -1])
    assert np.isnan(raw["loss_train"][3:]).all() and np.isnan(raw["sample_loss_train"][3:]).all()
    assert not np.isnan(raw["sample_loss_train"][:3]).any()


def test_a_format_1_store_reads_and_upgrades_to_an_equal_format_2_store(tmp_path):
    v1 = open_store(V1_STORE)
    assert (v1.format, v1.committed_lines, v1.status) == (1, 5, "complete")
    assert v1.directions["loss_train"].dims == ("line", "direction", "point")
    out = upgrade_store(V1_STORE, tmp_path / "v2.zarr")
    v2 = open_store(out.path)
    assert (v2.format, v2.status, v2.committed_lines, v2.allocated_lines) == (2, "complete", 5, 5)
    for old, new in [(v1, v2), (v1.directions, v2.directions), (v1.steps, v2.steps)]:
        assert old.committed_lines == new.committed_lines
        for name in old.names:
            np.testing.assert_array_equal(old[name].read(), new[name].read(), err_msg=name)
        for name in set(new.names) - set(old.names):  # sample_slope0_*: format 1 did not keep them
            assert name.startswith("sample_slope0_") and np.isnan(new[name].read()).all()
    assert {k: v for k, v in v2.attrs.items() if k not in ("losslines_format", "upgraded")} == \
        {k: v for k, v in v1.attrs.items() if k != "losslines_format"}
    assert v2.attrs["upgraded"]["from_format"] == 1
    assert xr.open_zarr(out.path).sizes["line"] == 5
    assert V1_STORE.exists() and open_store(V1_STORE).format == 1  # --out leaves the source alone


def test_upgrade_in_place_from_the_command_line(tmp_path, capsys):
    copy = tmp_path / "run.zarr"
    shutil.copytree(V1_STORE, copy)
    assert main(["upgrade", str(copy)]) == 0
    assert "store format 2" in capsys.readouterr().out
    upgraded, original = open_store(copy), open_store(V1_STORE)
    assert upgraded.format == 2
    np.testing.assert_array_equal(upgraded["sample_loss_train"].read(), original["sample_loss_train"].read())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]  # no temporary or backup left
    assert main(["upgrade", str(copy)]) == 2  # format 2 already
    assert "nothing to upgrade" in capsys.readouterr().err
