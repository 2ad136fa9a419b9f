"""Schedules: every N with offset, log-spaced, explicit lists, validation."""

import pytest

from losslines.engine.schedule import Schedule, log_spaced_steps, make_schedule


def test_every_step_and_every_n_with_offset():
    assert Schedule.every().steps(5) == [0, 1, 2, 3, 4]
    s = Schedule.every(3, offset=2)
    assert s.steps(12) == [2, 5, 8, 11]
    assert [t for t in range(12) if s.should_measure(t)] == [2, 5, 8, 11]


@pytest.mark.parametrize("n, total", [(10, 10000), (50, 100), (7, 7), (20, 5), (1, 1), (30, 31)])
def test_log_spaced_steps_are_unique_in_range_and_start_at_zero(n, total):
    steps = log_spaced_steps(n, total)
    assert len(steps) == min(n, total) == len(set(steps))
    assert list(steps) == sorted(steps) and steps[0] == 0 and steps[-1] <= total - 1
    if n <= total // 4:
        assert steps[-1] == total - 1
    s = Schedule.log_spaced(n, total)
    assert s.steps(total) == list(steps)
    assert [t for t in range(total) if s.should_measure(t)] == list(steps)


def test_log_spacing_is_dense_early_and_sparse_late():
    steps = log_spaced_steps(20, 10000)
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert gaps == sorted(gaps) and gaps[0] == 1 and gaps[-1] > 1000


def test_explicit_list_and_make_schedule():
    s = Schedule.explicit([9, 0, 4])
    assert s.steps(100) == [0, 4, 9] and s.steps(5) == [0, 4]
    assert s.should_measure(4) and not s.should_measure(5)
    assert make_schedule("every", period=2).steps(5) == [0, 2, 4]
    assert make_schedule("list", steps=[3]).steps(10) == [3]


@pytest.mark.parametrize("build, match", [
    (lambda: Schedule.every(0), "period"),
    (lambda: Schedule.every(2, offset=-1), "offset"),
    (lambda: Schedule.log_spaced(0, 10), "n must be"),
    (lambda: Schedule.explicit([1, 1]), "duplicates"),
    (lambda: Schedule.explicit([]), "at least one"),
    (lambda: Schedule.explicit([-2]), "step"),
    (lambda: Schedule("weekly"), "valid kinds: every, log, list"),
    (lambda: make_schedule("weekly"), "valid kinds"),
    (lambda: make_schedule("every", n=3), "bad arguments"),
    (lambda: Schedule.every().should_measure(-1), "step"),
])
def test_bad_schedules_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()
