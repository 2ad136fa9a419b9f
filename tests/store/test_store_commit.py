"""The commit protocol: nothing past committed_lines is visible; resume continues from it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from losslines.store import StoreLayout, StoreWriter, open_store
from losslines.store.schema import STATUS_ATTR


def _line(layout: StoreLayout, i: int) -> dict[str, np.ndarray]:
    """A line whose every value encodes its index ``i``."""
    return {
        "step": i,
        "lr": float(i),
        "loss_train": np.full(layout.n_points, float(i)),
        "sample_loss_train": np.full((layout.n_points, layout.n_train), float(i)),
    }


def test_data_beyond_committed_lines_is_invisible(tmp_path, kit):
    layout = StoreLayout(n_points=3, n_train=4, sample_losses=("train",), sample_dtype="float32", line_chunk=4)
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, layout, attrs={}, capacity=16, **kit.make_inputs(layout))
    for i in range(3):
        writer.append(_line(layout, i))
    writer.close()
    raw = zarr.open_group(str(path), mode="r+")  # a crashed writer left lines 3..5 on disk
    raw["step"][3:6] = [3, 4, 5]
    raw["loss_train"][3:6] = 99.0
    raw["sample_loss_train"][3:6] = 99.0

    store = open_store(path)
    assert store.committed_lines == store.n_lines == 3
    for name in ("step", "loss_train", "sample_loss_train"):
        array = store[name]
        assert array.shape[0] == len(array) == 3
        assert array.read().shape[0] == 3
        assert array[0:100].shape[0] == 3
        assert array[...].shape == array.shape
        np.testing.assert_array_equal(array[-1], array.read()[2])
        with pytest.raises(IndexError):
            array[3]
        with pytest.raises(IndexError):
            array[-4]
        assert sum(block.shape[0] for _, block in store.iter_blocks(name)) == 3
    assert not np.any(store["loss_train"].read() == 99.0)
    assert store.to_xarray().sizes["line"] == 3


@pytest.mark.parametrize("commit_every", [1, 2])
def test_lines_written_but_not_committed_stay_invisible(tmp_path, kit, monkeypatch, commit_every):
    """Pause the thread between the per-sample writes and the commit (every line by default, or
    every ``commit_every`` lines)."""
    layout = StoreLayout(n_points=3, n_train=4, sample_losses=("train",), sample_dtype="float32", line_chunk=4)
    path = tmp_path / "s.zarr"
    gate, reached = threading.Event(), threading.Event()
    original = StoreWriter._write_buffer

    def paused(self, st):
        if st.buffer:
            reached.set()
            assert gate.wait(10)
        original(self, st)

    monkeypatch.setattr(StoreWriter, "_write_buffer", paused)
    writer = StoreWriter.create(path, layout, attrs={}, commit_every=commit_every, **kit.make_inputs(layout))
    for step in range(1, commit_every + 1):  # the last one reaches the commit: the thread stops before it
        writer.append(_line(layout, step))
    assert reached.wait(10)
    raw = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(raw["sample_loss_train"][commit_every - 1], float(commit_every))  # on disk already
    store = open_store(path)
    assert store.committed_lines == 0
    assert store["sample_loss_train"].read().shape == (0, 3, 4)
    assert store["step"].read().shape == (0,)
    gate.set()
    writer.close()
    store.refresh()
    assert store.committed_lines == commit_every
    np.testing.assert_array_equal(store["step"].read(), np.arange(1, commit_every + 1))


def test_concurrent_reader_sees_only_complete_lines_monotonically(tmp_path, kit):
    layout = StoreLayout(n_points=4, n_train=3, sample_losses=("train",), sample_dtype="float32", line_chunk=3)
    path = tmp_path / "s.zarr"
    n_lines = 40
    writer = StoreWriter.create(path, layout, attrs={}, capacity=2, **kit.make_inputs(layout))
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        try:
            store = open_store(path)
            while True:
                finished = done.is_set()
                store.refresh()
                n = store.committed_lines
                assert not seen or n >= seen[-1], f"committed_lines went back: {seen[-1]} -> {n}"
                seen.append(n)
                expected = np.arange(n)
                np.testing.assert_array_equal(store["step"].read(), expected)
                np.testing.assert_array_equal(store["lr"][:], expected.astype(np.float32))
                np.testing.assert_array_equal(store["loss_train"].read(), np.repeat(expected[:, None], 4, 1))
                samples = store["sample_loss_train"].read()
                assert samples.shape == (n, 4, 3)
                np.testing.assert_array_equal(samples.reshape(n, 12).max(axis=1), expected)
                np.testing.assert_array_equal(samples.reshape(n, 12).min(axis=1), expected)
                if finished:
                    return
        except BaseException as err:  # noqa: BLE001 - reported in the main thread
            errors.append(err)

    reader = threading.Thread(target=poll)
    reader.start()
    for i in range(n_lines):
        writer.append(_line(layout, i))
        if i % 7 == 0:
            writer.flush()
    writer.close()
    done.set()
    reader.join(30)
    assert not reader.is_alive()
    assert not errors, errors[0]
    assert seen[-1] == n_lines


@pytest.mark.parametrize("first", [0, 4, 5])
def test_resume_equals_uninterrupted_write(tmp_path, kit, small_layout, first):
    rng = np.random.default_rng(first)
    records = [kit.random_line(small_layout, rng, step=i) for i in range(11)]
    dir_records = [kit.random_line(small_layout, rng, step=i, directions=True) for i in range(3)]
    inputs = kit.make_inputs(small_layout)

    with StoreWriter.create(tmp_path / "full.zarr", small_layout, attrs={}, **inputs) as writer:
        for record in records:
            writer.append(record)
        for record in dir_records:
            writer.append_directions(record)

    path = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        with StoreWriter.create(path, small_layout, attrs={}, **inputs) as writer:
            for record in records[:first]:
                writer.append(record)
            writer.append_directions(dir_records[0])
            raise KeyboardInterrupt  # the run dies; what was appended is committed
    store = open_store(path)
    assert (store.status, store.committed_lines, store.directions.committed_lines) == ("failed", first, 1)
    raw = zarr.open_group(str(path), mode="r+")  # plus garbage from a half-written chunk
    raw["step"].resize((first + 8,))
    raw["step"][first:first + 3] = 777
    raw["sample_loss_train"].resize((first + 8,) + raw["sample_loss_train"].shape[1:])
    raw["sample_loss_train"][first:first + 3] = 777.0

    writer = StoreWriter.resume(path)
    assert writer.committed_lines == first
    assert open_store(path).status == "running"
    for record in records[first:]:
        writer.append(record)
    for record in dir_records[1:]:
        writer.append_directions(record)
    writer.close()

    full, resumed = open_store(tmp_path / "full.zarr"), open_store(path)
    assert resumed.status == "complete"
    assert resumed.names == full.names
    for name in full.names:
        np.testing.assert_array_equal(resumed[name].read(), full[name].read(), err_msg=name)
    for name in full.directions.names:
        np.testing.assert_array_equal(resumed.directions[name].read(), full.directions[name].read(), err_msg=name)


def test_resume_refuses_complete_foreign_and_newer_stores(tmp_path, kit):
    layout = StoreLayout(n_points=2, n_train=2)
    path = tmp_path / "s.zarr"
    StoreWriter.create(path, layout, attrs={}, **kit.make_inputs(layout)).close()
    with pytest.raises(ValueError, match="status 'complete'"):
        StoreWriter.resume(path)
    raw = zarr.open_group(str(path), mode="r+")
    raw.update_attributes({STATUS_ATTR: "running", "losslines_format": 3})
    with pytest.raises(ValueError, match="losslines_format=3"):
        StoreWriter.resume(path)
    with pytest.raises(FileNotFoundError):
        StoreWriter.resume(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a losslines store"):
        StoreWriter.resume(tmp_path / "plain")


def test_flush_commits_a_partial_chunk_and_later_lines_complete_it(tmp_path, kit):
    layout = StoreLayout(n_points=2, n_train=2, line_chunk=8)
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, layout, attrs={}, **kit.make_inputs(layout))
    for i in range(3):
        writer.append({"step": i})
    assert open_store(path).committed_lines == 0  # a chunk is not full yet
    writer.flush()
    assert writer.committed_lines == open_store(path).committed_lines == 3
    writer.flush()  # nothing new: idempotent
    for i in range(3, 10):
        writer.append({"step": i})
    writer.flush()
    writer.close()
    np.testing.assert_array_equal(open_store(path)["step"].read(), np.arange(10))


def test_resume_at_a_checkpoint_line_rolls_back_and_overwrites(tmp_path, kit, small_layout):
    """The driver resumes from a checkpoint taken before the last committed lines."""
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, small_layout, attrs={}, **kit.make_inputs(small_layout))
    for i in range(7):
        writer.append({"step": i, "lr": 1.0, "loss_train": np.full(5, 1.0)})
    for i in range(3):
        writer.append_directions({"step": i})
    writer.close("failed", reason="interrupted before step 7; continue with --resume")
    store = open_store(path)
    assert store.attrs["status_reason"] == "interrupted before step 7; continue with --resume"

    with pytest.raises(ValueError, match=r"at_line=8 is outside \[0, 7\]"):
        StoreWriter.resume(path, at_line=8)
    with pytest.raises(ValueError, match=r"at_direction_line=-1 is outside \[0, 3\]"):
        StoreWriter.resume(path, at_line=2, at_direction_line=-1)
    assert open_store(path).committed_lines == 7  # a refused resume changes nothing

    writer = StoreWriter.resume(path, at_line=5, at_direction_line=1)
    assert (writer.committed_lines, writer.committed_direction_lines, writer.pending_lines) == (5, 1, 0)
    store = open_store(path)
    assert (store.committed_lines, store.directions.committed_lines) == (5, 1)
    assert store.attrs["status_reason"] is None
    writer.append({"step": 50})  # lr and loss_train not measured: NaN, not the old line's values
    assert writer.pending_lines in (0, 1)
    writer.close()
    store = open_store(path)
    np.testing.assert_array_equal(store["step"].read(), [0, 1, 2, 3, 4, 50])
    assert np.isnan(store["lr"][-1]) and np.all(np.isnan(store["loss_train"][-1]))
    assert store.directions.committed_lines == 1


def test_pending_lines_counts_appended_but_uncommitted(tmp_path, kit):
    layout = StoreLayout(n_points=2, n_train=2, line_chunk=100)
    writer = StoreWriter.create(tmp_path / "s.zarr", layout, attrs={}, **kit.make_inputs(layout))
    for i in range(5):
        writer.append({"step": i})
    assert writer.committed_lines + writer.pending_lines == 5
    writer.flush()
    assert (writer.committed_lines, writer.pending_lines) == (5, 0)
    writer.close()


def test_a_resumed_store_is_not_finished_while_it_runs(tmp_path, kit):
    """Regression: resume cleared the status reason but kept the old 'finished' time, so a running
    store claimed to have finished (docs/store-format.md, "Group attributes")."""
    layout = StoreLayout(n_points=2, n_train=2)
    path = tmp_path / "s.zarr"
    StoreWriter.create(path, layout, attrs={}, **kit.make_inputs(layout)).close("failed", reason="stopped")
    assert open_store(path).attrs["finished"] is not None
    writer = StoreWriter.resume(path)
    store = open_store(path)
    assert store.status == "running" and store.attrs["finished"] is None and store.attrs["status_reason"] is None
    writer.close()
    assert open_store(path).attrs["finished"] is not None
