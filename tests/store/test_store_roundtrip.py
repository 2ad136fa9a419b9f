"""Hypothesis round-trip: whatever is appended is read back exactly, NaN/-1 where missing."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from losslines.store import StoreLayout, StoreWriter, open_store


@st.composite
def layouts(draw: st.DrawFn) -> StoreLayout:
    n_train = draw(st.integers(0, 5))
    n_val = draw(st.integers(0, 3))
    batch = draw(st.integers(0, 3))
    sizes = {"train": n_train, "val": n_val, "batch": batch}
    sample_losses = tuple(s for s in ("train", "val", "batch") if sizes[s] > 0 and draw(st.booleans()))
    return StoreLayout(
        n_points=draw(st.integers(1, 6)),
        n_train=n_train,
        n_val=n_val,
        batch_size=batch,
        sample_losses=sample_losses,
        sample_dtype=draw(st.sampled_from(["float16", "float32"])),
        n_directions=draw(st.integers(0, 2)),
        line_chunk=draw(st.integers(1, 4)),
        sample_block=draw(st.integers(1, 4)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(), n_lines=st.integers(0, 9), n_dir_lines=st.integers(0, 3),
       capacity=st.none() | st.integers(0, 5), flush_every=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_roundtrip_random_layouts(kit, layout, n_lines, n_dir_lines, capacity, flush_every, seed):
    rng = np.random.default_rng(seed)
    inputs = kit.make_inputs(layout, seed)
    oracle = kit.Oracle(layout)
    dir_oracle = kit.Oracle(layout, directions=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.zarr"
        with StoreWriter.create(path, layout, attrs={"config": {"name": "rt"}}, capacity=capacity,
                                max_queued_lines=3, **inputs) as writer:
            for i in range(n_lines):
                record = kit.random_line(layout, rng, step=10 * i)
                assert writer.append(record) == i
                oracle.append(record)
                if flush_every and i % flush_every == 0:
                    writer.flush()
                    assert writer.committed_lines == i + 1
            if layout.n_directions:
                for i in range(n_dir_lines):
                    record = kit.random_line(layout, rng, step=i, directions=True)
                    writer.append_directions(record)
                    dir_oracle.append(record)

        store = open_store(path)
        assert store.status == "complete"
        assert store.committed_lines == n_lines
        assert store.config == {"name": "rt"}
        np.testing.assert_array_equal(store.position, inputs["positions"])
        for split in ("train", "val"):
            expected = inputs["sample_ids"].get(split, np.empty(0, dtype=np.int64))
            np.testing.assert_array_equal(store.sample_ids(split), expected)
        expected_names = {s.name for s in kit.line_specs(layout)} | {s.name for s in kit.static_specs(layout)}
        assert set(store.names) == expected_names
        for name in oracle.specs:
            got = store[name].read()
            assert got.dtype == oracle.specs[name].dtype, name
            np.testing.assert_array_equal(got, oracle.array(name), err_msg=name)
        inferred = store.layout
        for spec in kit.line_specs(layout) + kit.static_specs(layout):
            assert inferred.chunks(spec) == layout.chunks(spec), spec.name
        assert inferred.dim_sizes() == layout.dim_sizes()
        assert (inferred.sample_losses, inferred.line_chunk) == (layout.sample_losses, layout.line_chunk)
        if layout.sample_losses:
            assert inferred.sample_dtype == layout.sample_dtype

        sub = store.directions
        assert (sub is not None) == (layout.n_directions > 0)
        if sub is not None:
            assert sub.committed_lines == n_dir_lines
            np.testing.assert_array_equal(sub.position, inputs["positions"])
            for name in dir_oracle.specs:
                np.testing.assert_array_equal(sub[name].read(), dir_oracle.array(name), err_msg=name)


def test_float16_overflow_is_stored_as_inf(tmp_path, kit):
    layout = StoreLayout(n_points=2, n_train=2, sample_losses=("train",), sample_dtype="float16")
    with StoreWriter.create(tmp_path / "s.zarr", layout, attrs={}, **kit.make_inputs(layout)) as w:
        w.append({"step": 0, "sample_loss_train": np.array([[1.0, 1e6], [2.0, 3.0]])})
    got = open_store(tmp_path / "s.zarr")["sample_loss_train"].read()
    np.testing.assert_array_equal(got[0], np.array([[1.0, np.inf], [2.0, 3.0]], dtype=np.float16))
