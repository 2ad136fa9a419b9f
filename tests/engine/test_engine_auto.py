"""strategy="auto": times loop and vmap on the first line, keeps the faster, logs and reports it."""

import json
import logging
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslines.engine.directions import SGDDirection
from losslines.engine.evaluator import LineEvaluator, measure_line
from losslines.engine.grid import make_grid
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import Schedule
from losslines.engine.strategies import AutoStrategy, LoopStrategy, StrategyReport, VmapStrategy, make_strategy

POSITIONS = np.linspace(-0.5, 0.5, 9)


class Slow:
    """Mixin: a strategy that sleeps before computing, to make the other one the faster."""

    delay = 0.03

    def outputs(self, line, positions, x):
        time.sleep(self.delay)
        return super().outputs(line, positions, x)


class SlowLoop(Slow, LoopStrategy):
    pass


class SlowVmap(Slow, VmapStrategy):
    pass


class CountingLoop(LoopStrategy):
    def __init__(self):
        self.calls = 0

    def outputs(self, line, positions, x):
        self.calls += 1
        return super().outputs(line, positions, x)


def test_auto_picks_a_strategy_and_records_it(tiny, caplog):
    model = tiny.make_cnn()
    x, y = tiny.make_data(24)
    ev = LineEvaluator(model, x, y, strategy="auto")
    assert ev.strategy_report is None  # undecided before the first line
    with caplog.at_level(logging.DEBUG, logger="losslines.engine"):  # a debug line (the run logs its own)
        m = ev.measure(tiny.random_direction(model), POSITIONS)
    report = ev.strategy_report
    assert isinstance(report, StrategyReport) and report.requested == "auto"
    assert report.chosen in ("loop", "vmap") and m.strategy == report.chosen
    assert set(report.seconds_per_point) == {"loop", "vmap"}
    assert all(np.isfinite(v) and v > 0 for v in report.seconds_per_point.values())
    assert report.chosen == min(report.seconds_per_point, key=report.seconds_per_point.get)
    assert report.points == 8 and report.rows == 24 and report.device == "cpu"
    attrs = json.loads(json.dumps(report.as_attrs()))  # JSON for the store attributes
    assert attrs["chosen"] == report.chosen and attrs["seconds_per_point"].keys() == {"loop", "vmap"}
    (record,) = [r for r in caplog.records if "strategy auto" in r.getMessage()]
    assert f"chose {report.chosen}" in record.getMessage() and "loop" in record.getMessage()
    # the values are those of the chosen strategy, which equal the loop's
    loop = measure_line(model, x, y, tiny.random_direction(model), POSITIONS)
    np.testing.assert_allclose(m.sample_loss, loop.sample_loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("slow, expected", [("loop", "vmap"), ("vmap", "loop")])
def test_auto_keeps_the_faster_strategy(tiny, slow, expected):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    auto = AutoStrategy(points=2, repeats=1)
    auto.candidates[slow] = SlowLoop() if slow == "loop" else SlowVmap()
    m = LineEvaluator(model, x, y, strategy=auto).measure(tiny.random_direction(model), POSITIONS, slope=False)
    assert auto.report.chosen == expected and m.strategy == expected
    assert auto.report.seconds_per_point[slow] >= Slow.delay / 2


def test_auto_times_once_and_a_shared_instance_decides_for_every_evaluator(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    auto = AutoStrategy(points=2, repeats=1)
    counting = CountingLoop()
    auto.candidates["loop"] = counting
    first = LineEvaluator(model, x, y, strategy=auto)
    first.measure(tiny.random_direction(model), POSITIONS, slope=False)
    timing_calls = 1 + 1  # warm-up + one timed call
    after_first = counting.calls
    report = auto.report
    second = LineEvaluator(model, *tiny.make_data(12, seed=4), bn="batch", bn_group=6, strategy=auto)
    second.measure(tiny.random_direction(model, seed=3), POSITIONS, slope=False)
    first.measure(tiny.random_direction(model, seed=5), POSITIONS, slope=False)
    assert auto.report is report and second.strategy_report is report
    if report.chosen == "vmap":  # the loop was only ever called to time it
        assert counting.calls == after_first == timing_calls
    else:
        assert after_first > timing_calls and counting.calls > after_first


def test_auto_refuses_strategies_that_disagree(tiny):
    class Wrong(VmapStrategy):
        def outputs(self, line, positions, x):
            return super().outputs(line, positions, x) + 1.0

    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    auto = AutoStrategy(points=2, repeats=1)
    auto.candidates["vmap"] = Wrong()
    with pytest.raises(RuntimeError, match="'loop' and 'vmap' disagree"):
        LineEvaluator(model, x, y, strategy=auto).measure(tiny.random_direction(model), POSITIONS)


def test_undecided_auto_and_bad_settings_are_loud_errors(tiny):
    with pytest.raises(RuntimeError, match="has not timed the strategies yet"):
        AutoStrategy().outputs(None, POSITIONS, torch.zeros(1))
    with pytest.raises(ValueError, match="points >= 1"):
        AutoStrategy(points=0)
    assert make_strategy("loop").report == StrategyReport(requested="loop", chosen="loop")
    shared = make_strategy("auto")
    assert make_strategy(shared) is shared


def test_sampler_with_auto_reports_one_decision_for_all_splits(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(32)
    xv, yv = tiny.make_data(16, seed=9)
    sampler = LineSampler(model, grid=make_grid(0.1, 0.3), schedule=Schedule.every(), train=(x, y),
                          val=(xv, yv), bn="batch", bn_group=16, strategy="auto")
    assert sampler.strategy_report is None
    source = SGDDirection(model, lr=0.1)
    model.train()
    F.cross_entropy(model(x[:16]), y[:16]).backward()
    with sampler.measure(0, source, batch=(x[:16], y[:16])):
        source.step()
    report = sampler.strategy_report
    assert report is not None and report.requested == "auto" and report.chosen in ("loop", "vmap")
    assert report.rows == 16  # timed on the train split's first BatchNorm group
    assert all(ev.strategy_report is report for ev in sampler.evaluators.values())
    (record,) = sampler.records
    assert np.isfinite(record["batch"].loss).all() and np.isfinite(record["val"].loss).all()
