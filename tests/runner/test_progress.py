"""The progress display: log lines off a terminal, a refresh-bounded loss read, a time left that
weighs measured steps by what they cost."""

from __future__ import annotations

import io

import pytest

from losslines.runner.progress import Progress, format_duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class CountingLoss:
    """A loss whose reads are counted (a read of a CUDA tensor waits for the GPU)."""

    def __init__(self):
        self.reads = 0

    def __float__(self):
        self.reads += 1
        return 0.5


def test_off_a_terminal_progress_is_periodic_log_lines():
    out, clock = io.StringIO(), Clock()
    progress = Progress(True, total=100, initial=0, desc="run", stream=out, interval=30.0, clock=clock)
    for step in range(100):
        clock.now += 1.0
        progress.step(measured=step % 10 == 0, lines=step // 10 + 1, loss=0.25)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 4  # at 30 s, 60 s, 90 s and the last step
    assert lines[-1].startswith("losslines: run: step 100/100, 10 lines,") and lines[-1].endswith("0s left")


def test_the_loss_is_read_only_when_the_display_refreshes():
    clock, loss = Clock(), CountingLoss()
    progress = Progress(True, total=1000, initial=0, desc="run", stream=io.StringIO(), interval=30.0, clock=clock)
    for _ in range(999):
        clock.now += 0.01
        progress.step(measured=False, lines=0, loss=loss)
    assert loss.reads == 0  # 9.99 s: no refresh, no read
    clock.now += 30
    progress.step(measured=False, lines=0, loss=loss)
    assert loss.reads == 1


def test_time_left_weighs_measured_steps_by_their_cost():
    clock = Clock()
    progress = Progress(False, total=20, initial=0, desc="run", total_measured=5, clock=clock)
    assert progress.eta() is None
    for step in range(10):  # 2 measured steps of 10 s, 8 plain ones of 1 s
        measured = step in (0, 5)
        clock.now += 10.0 if measured else 1.0
        progress.step(measured=measured, lines=0, loss=0.0)
    assert progress.eta() == pytest.approx(3 * 10.0 + 7 * 1.0)  # 3 measured and 7 plain steps left
    resumed = Progress(False, total=20, initial=10, desc="run", total_measured=5, initial_measured=2, clock=clock)
    clock.now += 1.0
    resumed.step(measured=False, lines=2, loss=0.0)
    assert resumed.eta() is None  # no measured step timed yet in this invocation


def test_lines_count_as_measured_units():
    clock = Clock()
    progress = Progress(False, total=10, initial=4, desc="measure", unit="line", clock=clock)
    clock.now += 2.0
    progress.step(measured=True, lines=5, loss=0.0)
    assert progress.eta() == pytest.approx(5 * 2.0)


@pytest.mark.parametrize("seconds,text", [(9.4, "9s"), (75, "1m15s"), (3725, "1h02m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
