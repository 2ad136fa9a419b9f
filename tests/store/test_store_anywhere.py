"""Stores anywhere: local paths, file:// URLs and fsspec URLs (memory:// here) through zarr's store layer."""

from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pytest

from losslines.analysis import analyze_store
from losslines.runner.driver import run
from losslines.store import StoreLayout, StoreWriter, open_store
from losslines.store.location import location
from losslines.store.verify import verify_store


@pytest.fixture
def memory_url():
    url = f"memory://losslines-tests/{uuid.uuid4().hex}/store.zarr"
    yield url
    fs = fsspec.filesystem("memory")
    root = url.split("://", 1)[1].rsplit("/", 1)[0]
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_a_memory_store_round_trips(memory_url, kit):
    layout = StoreLayout(n_points=5, n_train=6, batch_size=3, sample_losses=("train",), line_chunk=2)
    rng = np.random.default_rng(0)
    records = [kit.random_line(layout, rng, step=i) for i in range(5)]
    with StoreWriter.create(memory_url, layout, attrs={"config": {"x": 1}}, **kit.make_inputs(layout)) as writer:
        for record in records:
            writer.append(record)
    store = open_store(memory_url)
    assert store.status == "complete" and store.committed_lines == 5 and str(store.path) == memory_url
    oracle = kit.Oracle(layout)
    for record in records:
        oracle.append(record)
    for name in ("loss_train", "sample_loss_train", "step", "batch_ids"):
        np.testing.assert_array_equal(store[name][...], oracle.array(name), err_msg=name)
    assert store.nbytes_stored() > 0
    with pytest.raises(FileExistsError, match="already exists"):
        StoreWriter.create(memory_url, layout, attrs={}, **kit.make_inputs(layout))


def test_a_run_resumes_and_is_analysed_on_a_memory_store(memory_url, tiny_config, tmp_path):
    local = tiny_config(tmp_path, "train.steps=6", name="local")
    run(local, progress=False)
    remote = tiny_config(tmp_path, "train.steps=6", f"store.path='{memory_url}'", name="remote")
    assert remote.store_path == memory_url
    run(remote, progress=False, stop_at_step=3)  # the checkpoint goes beside it: memory://.../store.zarr.ckpt
    assert location(memory_url).sibling(".ckpt").exists()
    run(remote, resume=True, progress=False)
    a, b = open_store(local.store_path), open_store(memory_url)
    assert b.status == "complete" and b.committed_lines == a.committed_lines
    for name in a.names:
        np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
    assert verify_store(memory_url) == []
    report = analyze_store(memory_url, tmp_path / "report", figures=False)
    assert report.summary["analysed_lines"] == a.committed_lines


def test_local_only_checks_stay_local(tmp_path):
    with pytest.raises(ValueError, match="storage_options apply to URLs"):
        location(tmp_path / "x.zarr", {"anon": True})
    assert location(f"file://{tmp_path}/x.zarr").path == tmp_path / "x.zarr"
    assert not location("memory://nowhere/x.zarr").is_local
    with pytest.raises(FileNotFoundError, match="no losslines store at memory://nowhere"):
        open_store("memory://nowhere/x.zarr")
