"""The writer's safeguards: bad records, thread failures, back-pressure, overwrite, status."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from losslines.store import StoreLayout, StoreWriter, WriterError, open_store

LAYOUT = StoreLayout(n_points=3, n_train=4, batch_size=2, sample_losses=("train",), sample_dtype="float32",
                     line_chunk=2)


@pytest.fixture
def writer(tmp_path, kit):
    w = StoreWriter.create(tmp_path / "s.zarr", LAYOUT, attrs={"config": {}}, **kit.make_inputs(LAYOUT))
    yield w
    if not w._closed:
        try:
            w.close()
        except WriterError:
            pass


def test_unknown_key_names_it_and_lists_the_valid_ones(writer):
    with pytest.raises(ValueError, match=r"unknown array name\(s\) \['loss_tarin'\]; valid names: .*loss_train"):
        writer.append({"step": 0, "loss_tarin": np.zeros(3)})


def test_wrong_shape_names_array_got_and_expected(writer):
    with pytest.raises(ValueError, match=r"'sample_loss_train' has shape \(4, 3\), expected \(3, 4\)"):
        writer.append({"step": 0, "sample_loss_train": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"'batch_ids' has shape \(\), expected \(2,\)"):
        writer.append({"step": 0, "batch_ids": 3})


def test_missing_step_and_uncastable_dtype_are_errors(writer):
    with pytest.raises(ValueError, match="no 'step'"):
        writer.append({"loss_train": np.zeros(3)})
    with pytest.raises(ValueError, match="'step' has dtype float64"):
        writer.append({"step": 1.5})
    with pytest.raises(ValueError, match="'batch_ids' has dtype float64"):
        writer.append({"step": 1, "batch_ids": np.array([0.5, 1.0])})
    with pytest.raises(TypeError, match="mapping"):
        writer.append([("step", 1)])  # type: ignore[arg-type]


def test_a_rejected_record_keeps_committed_data_and_the_writer_usable(writer):
    for i in range(3):
        writer.append({"step": i, "loss_train": np.full(3, i)})
    with pytest.raises(ValueError):
        writer.append({"step": 3, "loss_train": np.zeros(4)})
    assert writer.append({"step": 3, "loss_train": np.full(3, 3)}) == 3
    writer.close()
    store = open_store(writer.path)
    np.testing.assert_array_equal(store["step"].read(), [0, 1, 2, 3])
    np.testing.assert_array_equal(store["loss_train"][:, 0], [0, 1, 2, 3])


def test_append_copies_the_callers_buffers(writer):
    buffer = np.zeros((3, 4))
    for i in range(4):
        buffer[:] = i
        writer.append({"step": i, "sample_loss_train": buffer})
    writer.close()
    got = open_store(writer.path)["sample_loss_train"].read()
    np.testing.assert_array_equal(got[:, 0, 0], [0, 1, 2, 3])


def test_writer_thread_exception_surfaces_in_the_caller(writer, monkeypatch):
    original = StoreWriter._write_line

    def failing(self, st, index, record):
        if index == 3:
            raise OSError("disk full (simulated)")
        original(self, st, index, record)

    monkeypatch.setattr(StoreWriter, "_write_line", failing)
    for i in range(4):
        writer.append({"step": i})
    with pytest.raises(WriterError, match="disk full") as info:
        writer.flush()
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(WriterError, match=r"lines \[0, 3\) are committed"):
        writer.append({"step": 4})
    with pytest.raises(WriterError):
        writer.close()
    store = open_store(writer.path)
    assert (store.status, store.committed_lines) == ("failed", 3)  # every line is committed as it is written
    assert "disk full" in store.attrs["status_reason"]
    np.testing.assert_array_equal(store["step"].read(), [0, 1, 2])


def test_bounded_queue_blocks_append(tmp_path, kit, monkeypatch):
    gate = threading.Event()
    original = StoreWriter._write_line

    def slow(self, st, index, record):
        assert gate.wait(20)
        original(self, st, index, record)

    monkeypatch.setattr(StoreWriter, "_write_line", slow)
    writer = StoreWriter.create(tmp_path / "s.zarr", LAYOUT, attrs={}, max_queued_lines=2,
                                **kit.make_inputs(LAYOUT))
    appended: list[int] = []

    def produce() -> None:
        for i in range(8):
            appended.append(writer.append({"step": i}))

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 10
    while len(appended) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    # one line held by the (gated) thread, two queued; the fourth append must be blocked
    assert len(appended) == 3
    assert producer.is_alive()
    gate.set()
    producer.join(20)
    assert not producer.is_alive()
    writer.close()
    np.testing.assert_array_equal(open_store(writer.path)["step"].read(), np.arange(8))


def test_exception_in_with_block_marks_failed_and_keeps_lines(tmp_path, kit):
    path = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter.create(path, LAYOUT, attrs={}, **kit.make_inputs(LAYOUT)) as w:
            for i in range(3):
                w.append({"step": i})
            raise RuntimeError("boom")
    store = open_store(path)
    assert (store.status, store.committed_lines) == ("failed", 3)
    assert "finished" in store.attrs
    assert store.attrs["status_reason"] == "RuntimeError: boom"


def test_create_refuses_existing_paths_unless_overwrite(tmp_path, kit):
    path = tmp_path / "s.zarr"
    StoreWriter.create(path, LAYOUT, attrs={}, **kit.make_inputs(LAYOUT)).close()
    with pytest.raises(FileExistsError, match="overwrite=True.*resume"):
        StoreWriter.create(path, LAYOUT, attrs={}, **kit.make_inputs(LAYOUT))
    with StoreWriter.create(path, LAYOUT, attrs={"run": 2}, overwrite=True, **kit.make_inputs(LAYOUT)) as w:
        w.append({"step": 0})
    store = open_store(path)
    assert (store.attrs["run"], store.committed_lines) == (2, 1)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "important.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a zarr store"):
        StoreWriter.create(other, LAYOUT, attrs={}, overwrite=True, **kit.make_inputs(LAYOUT))
    assert (other / "important.txt").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attrs": {"config": {"lr": np.float32(0.1)}}}, "JSON-serialisable"),
        ({"attrs": {"status": "complete"}}, "may not set"),
        ({"positions": np.zeros(4)}, r"shape \(3,\)"),
        ({"positions": np.array([0.0, np.nan, 1.0])}, "finite"),
        ({"sample_ids": {}}, r"sample_ids\['train'\] is required"),
        ({"sample_ids": {"train": np.arange(4), "test": np.arange(2)}}, "unknown split"),
        ({"sample_ids": {"train": np.arange(5)}}, r"shape \(4,\)"),
        ({"capacity": -1}, "capacity"),
    ],
)
def test_create_validates_its_inputs(tmp_path, kit, kwargs, match):
    args = {"attrs": {}, **kit.make_inputs(LAYOUT), **kwargs}
    with pytest.raises(ValueError, match=match):
        StoreWriter.create(tmp_path / "s.zarr", LAYOUT, **args)
    assert not (tmp_path / "s.zarr").exists()


def test_closed_writer_and_missing_directions_group_are_errors(writer):
    with pytest.raises(ValueError, match="no directions/ group"):
        writer.append_directions({"step": 0})
    with pytest.raises(ValueError, match="'complete' or 'failed'"):
        writer.close("running")
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.append({"step": 0})


def test_update_attrs_is_written_with_the_lines(writer):
    writer.append({"step": 0})
    writer.update_attrs({"strategy": "loop"})
    with pytest.raises(ValueError, match="may not set"):
        writer.update_attrs({"committed_lines": 5})
    writer.close()
    store = open_store(writer.path)
    assert (store.attrs["strategy"], store.status, store.committed_lines) == ("loop", "complete", 1)


def test_several_producer_threads_get_distinct_consecutive_lines(writer):
    def produce(offset: int) -> None:
        for i in range(10):
            writer.append({"step": offset + i})

    threads = [threading.Thread(target=produce, args=(1000 * t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    writer.close()
    steps = open_store(writer.path)["step"].read()
    assert sorted(steps.tolist()) == sorted(1000 * t + i for t in range(3) for i in range(10))
