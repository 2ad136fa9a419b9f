"""StoreSink: the store is created when a sampler opens it (after validation), with the records' layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslines.engine import LineSampler, Schedule, make_grid
from losslines.records import LineShape
from losslines.store import StoreLayout, StoreSink, open_store

GRID = make_grid(0.1, 0.3)


def make_sampler(tiny, sink, **kwargs):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    defaults = dict(grid=GRID, schedule=Schedule.every(), train=(x, y), bn="batch", bn_group=8, batch_size=8)
    return model, x, y, LineSampler(model, sink=sink, **{**defaults, **kwargs})


def one_step(model, sampler, x, y, step=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    F.cross_entropy(model(x[:8]), y[:8]).backward()
    with sampler.measure(step, opt, batch=(x[:8], y[:8]), batch_ids=np.arange(8)):
        opt.step()


def test_the_store_appears_when_the_sampler_opens_the_sink_with_its_layout(tmp_path, tiny):
    path = tmp_path / "s.zarr"
    sink = StoreSink.create(path, sample_ids={"train": np.arange(16)}, attrs={"note": "x"}, sample_dtype="float32",
                            line_chunk=2)
    assert not path.exists()
    with pytest.raises(RuntimeError, match="not open yet"):
        sink.writer
    model, x, y, sampler = make_sampler(tiny, sink)
    assert path.exists() and sink.writer.layout == StoreLayout.from_shape(sampler.shape, sample_dtype="float32",
                                                                         line_chunk=2)
    with sink.writer:
        one_step(model, sampler, x, y)
    store = open_store(path)
    assert store.committed_lines == 1 and store.attrs["note"] == "x"
    assert sampler.records == []  # the sampler kept nothing itself: the sink got the record
    np.testing.assert_array_equal(store.position, GRID.positions)
    np.testing.assert_array_equal(store["batch_ids"][0], np.arange(8))
    assert np.isfinite(store["loss_train"][0]).all() and store["sample_loss_train"].shape == (1, GRID.n_points, 16)


def test_a_refused_setting_leaves_no_store_behind(tmp_path, tiny):
    path = tmp_path / "s.zarr"
    sink = StoreSink.create(path, sample_ids={"train": np.arange(16)}, attrs={})
    with pytest.raises(ValueError, match="valid modes"):
        make_sampler(tiny, sink, bn="sometimes")
    assert not path.exists()
    with pytest.raises(ValueError, match="batch_size"):  # the shape must be known to open the sink
        make_sampler(tiny, sink, batch_size=None)
    assert not path.exists()


def test_create_refuses_an_existing_path_before_anything_is_measured(tmp_path):
    (tmp_path / "s.zarr").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        StoreSink.create(tmp_path / "s.zarr", sample_ids={}, attrs={})


def test_resume_continues_a_store_of_the_same_shape_and_refuses_another(tmp_path, tiny):
    path = tmp_path / "s.zarr"
    sink = StoreSink.create(path, sample_ids={"train": np.arange(16)}, attrs={}, line_chunk=1)
    model, x, y, sampler = make_sampler(tiny, sink)
    one_step(model, sampler, x, y)
    sink.writer.close("failed", reason="stopped")
    # another grid: refused before the store is touched (status and lines stay as they were)
    with pytest.raises(ValueError, match="another measurement shape"):
        make_sampler(tiny, StoreSink.resume(path), grid=make_grid(0.05, 0.3))
    assert open_store(path).status == "failed" and open_store(path).committed_lines == 1
    sink = StoreSink.resume(path)
    model, x, y, sampler = make_sampler(tiny, sink)
    with sink.writer:
        one_step(model, sampler, x, y, step=1)
    store = open_store(path)
    assert store.status == "complete" and store["step"][...].tolist() == [0, 1]


def test_a_sink_is_opened_once(tmp_path):
    sink = StoreSink.create(tmp_path / "s.zarr", sample_ids={"train": np.arange(4)}, attrs={})
    shape = LineShape(positions=np.linspace(-1, 1, 3), n_samples={"train": 4}, sample_losses=("train",))
    sink.open(shape)
    with pytest.raises(RuntimeError, match="already open"):
        sink.open(shape)
    sink.writer.close()


def test_any_callable_is_a_sink_and_other_objects_are_refused(tiny):
    got = []
    model, x, y, sampler = make_sampler(tiny, got.append)
    one_step(model, sampler, x, y)
    assert len(got) == 1 and got[0].step == 0 and sampler.records == []
    with pytest.raises(ValueError, match="sink must be a LineSink"):
        make_sampler(tiny, 42)
