"""The writer's stall counters (store.stall): a slow writer thread shows up as queue waits and
flush waits of the caller, a fast one as a small fraction; close() stores them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from losslines.store import StoreLayout, StoreWriter, open_store
from losslines.store.stall import StallClock, WriterStall

LAYOUT = StoreLayout(n_points=3, n_train=4, batch_size=2, sample_losses=("train",), sample_dtype="float32",
                     line_chunk=2)
DELAY_S = 0.05


def _line(step: int) -> dict:
    return {"step": step, "loss_train": np.arange(3.0) + step, "sample_loss_train": np.ones((3, 4))}


def test_a_slow_writer_thread_is_counted_as_queue_and_flush_waits(tmp_path, kit, monkeypatch):
    original = StoreWriter._write_line

    def slow(self, *args):
        time.sleep(DELAY_S)
        return original(self, *args)

    monkeypatch.setattr(StoreWriter, "_write_line", slow)
    w = StoreWriter.create(tmp_path / "s.zarr", LAYOUT, attrs={}, max_queued_lines=1, **kit.make_inputs(LAYOUT))
    for step in range(6):
        w.append(_line(step))
    w.flush()
    st = w.stall
    # 6 lines of >= 50 ms each through a queue of one: the caller waited for most of them
    assert st.lines == 6 and st.write_s >= 6 * DELAY_S
    assert st.queue_wait_s >= 3 * DELAY_S and st.flush_wait_s > 0
    assert st.queue_wait_s + st.flush_wait_s <= st.caller_s <= st.open_s
    w.close()
    stored = open_store(tmp_path / "s.zarr").attrs["writer_stall"]
    assert stored["lines"] == 6 and stored["caller_s"] >= stored["queue_wait_s"] > 0
    assert stored["fraction"] == pytest.approx(stored["caller_s"] / stored["open_s"], rel=1e-3)


def test_a_fast_writer_with_room_in_its_queue_holds_the_caller_up_briefly(tmp_path, kit):
    w = StoreWriter.create(tmp_path / "s.zarr", LAYOUT, attrs={}, max_queued_lines=16, **kit.make_inputs(LAYOUT))
    for step in range(4):
        w.append(_line(step))
        time.sleep(0.05)  # "measuring": the writer thread keeps up
    w.close()
    st = w.stall
    assert st.lines == 4 and st.caller_s < st.open_s
    assert st.queue_wait_s < 0.05  # never waited for room (a put that does not block takes microseconds)


def test_nested_caller_calls_are_counted_once():
    clock = StallClock()
    with clock.caller():
        with clock.caller():
            time.sleep(0.02)
    assert 0.02 <= clock.read().caller_s < 0.04
    with pytest.raises(ValueError, match="unknown stall part 'wait_s'; valid: queue_wait_s, flush_wait_s, write_s"):
        with clock.part("wait_s"):
            pass


def test_stall_record_fraction_bound_and_attrs():
    st = WriterStall(open_s=10.0, caller_s=0.2, queue_wait_s=0.1, flush_wait_s=0.05, write_s=0.3, lines=7)
    assert st.fraction == pytest.approx(0.02) and st.bound == pytest.approx(0.05)
    assert st.as_attrs() == {"open_s": 10.0, "caller_s": 0.2, "queue_wait_s": 0.1, "flush_wait_s": 0.05,
                             "write_s": 0.3, "lines": 7, "fraction": 0.02, "bound": 0.05}
    assert WriterStall(0.0, 0.0, 0.0, 0.0, 0.0, 0).fraction == 0.0
