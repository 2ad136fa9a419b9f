"""The conformance suite of evaluation strategies: every registered strategy passes the same tests.

A new strategy registered in ``engine.strategies.STRATEGIES`` runs through all of them with no
edit here (STYLE §9): the float64 oracle on a BatchNorm CNN in every BatchNorm mode, the
``outputs`` contract, independence of the point chunking, no side effects on the model or the
random generators, and a JSON-ready report of what computed the values.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from losslines.engine.evaluator import LineEvaluator, measure_line
from losslines.engine.line import LinePoints
from losslines.engine.memory import ForwardProfile
from losslines.engine.strategies import STRATEGIES, make_strategy

NAMES = sorted(STRATEGIES)
BN_CASES = [("running", None), ("batch", 16), ("batch", 20)]  # 20: a last, smaller group of 8


def test_the_registry_is_what_the_suite_runs():
    assert NAMES and set(NAMES) >= {"loop", "vmap", "compiled", "auto"}


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("bn, bn_group", BN_CASES)
def test_equals_the_float64_oracle_on_a_batchnorm_cnn(tiny, bn, bn_group, strategy):
    model = tiny.make_cnn()
    x, y = tiny.make_data(48)
    direction = tiny.random_direction(model)
    positions = np.linspace(-0.5, 0.5, 11)
    expected, slope = tiny.float64_line(model, x, y, direction, positions, bn, bn_group)

    m64 = measure_line(copy.deepcopy(model).double(), x, y, direction, positions, bn=bn, bn_group=bn_group,
                       strategy=strategy)
    assert m64.sample_loss.dtype == np.float64 and m64.sample_loss.shape == (11, 48)
    np.testing.assert_allclose(m64.sample_loss, expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(m64.loss, expected.mean(axis=1), rtol=1e-6)
    assert m64.slope0 == pytest.approx(slope, rel=1e-6)

    m32 = measure_line(model, x, y, direction, positions, bn=bn, bn_group=bn_group, strategy=strategy)
    assert m32.sample_loss.dtype == np.float32
    np.testing.assert_allclose(m32.loss, expected.mean(axis=1), rtol=1e-4)
    np.testing.assert_allclose(m32.sample_loss, expected, rtol=1e-3, atol=1e-4)
    assert m32.slope0 == pytest.approx(slope, rel=1e-3, abs=1e-5)
    assert ((0 <= m32.accuracy) & (m32.accuracy <= 1)).all()
    np.testing.assert_array_equal(m32.positions, positions)


@pytest.mark.parametrize("strategy", NAMES)
def test_outputs_are_the_models_outputs_at_each_point(tiny, strategy):
    """The one method a strategy implements: ``outputs(line, positions, x) -> [k, n, ...]``."""
    model = tiny.make_cnn().double()
    x, _ = tiny.make_data(8)
    x = x.double()
    line = LinePoints(model, tiny.random_direction(model))
    positions = np.array([-0.2, 0.0, 0.35])
    impl = make_strategy(strategy)
    model.eval()
    with torch.no_grad():
        impl.prepare(line, positions, x, lambda name: 2)  # auto decides here; the others ignore it
        out = impl.outputs(line, positions, x)
        assert out.shape == (3, 8, 5)
        for j, s in enumerate(positions):
            torch.testing.assert_close(out[j], line.forward(float(s), x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_results_do_not_depend_on_the_point_chunk(tiny, strategy, bn):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(24)
    direction = tiny.random_direction(model)
    positions = np.linspace(-0.4, 0.4, 7)
    kwargs = dict(bn=bn, bn_group=8 if bn == "batch" else None, strategy=strategy)
    one = measure_line(model, x, y, direction, positions, point_chunk=1, **kwargs)
    many = measure_line(model, x, y, direction, positions, point_chunk=5, **kwargs)
    np.testing.assert_allclose(many.sample_loss, one.sample_loss, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(many.accuracy, one.accuracy)


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("bn, training", [("batch", True), ("running", True), ("batch", False)])
def test_measuring_leaves_the_model_and_the_generators_bit_identical(tiny, strategy, bn, training):
    model = tiny.make_cnn()
    model.train(training)
    x, y = tiny.make_data(24)
    model.head.weight.grad = torch.ones_like(model.head.weight)
    before = tiny.snapshot(model)
    m = measure_line(model, x, y, tiny.random_direction(model), np.array([-0.3, 0.0, 0.2]), bn=bn,
                     bn_group=8 if bn == "batch" else None, strategy=strategy, point_chunk=2)
    assert np.isfinite(m.loss).all()
    tiny.assert_same(before, tiny.snapshot(model))


@pytest.mark.parametrize("strategy", NAMES)
def test_the_report_says_what_computed_the_values(tiny, strategy):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    ev = LineEvaluator(model, x, y, bn="batch", bn_group=8, strategy=strategy)
    m = ev.measure(tiny.random_direction(model), np.array([0.0, 0.1]))
    report = ev.strategy_report
    assert report.requested == strategy and report.chosen in set(STRATEGIES) - {"auto"} and m.strategy == report.chosen
    assert json.loads(json.dumps(report.as_attrs()))["chosen"] == report.chosen


@pytest.mark.parametrize("strategy", NAMES)
def test_point_chunks_stay_within_the_line_and_take_at_least_one_point(tiny, strategy):
    impl = make_strategy(strategy)
    model = tiny.make_cnn()
    x, _ = tiny.make_data(8)
    model.eval()
    impl.prepare(LinePoints(model, tiny.random_direction(model)), np.array([0.0, 0.1]), x, lambda name: 2)
    profile = ForwardProfile(sum_bytes=10_000, max_bytes=4_000, peak_bytes=6_000, param_bytes=1_000, largest_param=400)
    kwargs = dict(rows=16, outputs_per_row=10, element_size=4, k_total=167)
    assert impl.point_chunk(profile, budget=1, **kwargs) == 1
    assert impl.point_chunk(profile, budget=1 << 40, **kwargs) == 167
    middle = impl.point_chunk(profile, budget=1 << 20, **kwargs)
    assert 1 <= middle <= 167


def test_a_registered_strategy_is_one_call_away_from_configs_and_evaluators(tiny, tiny_config, tmp_path, monkeypatch):
    from losslines.engine import strategies
    from losslines.engine.strategies import LoopStrategy, register_strategy
    from losslines.runner.config import ConfigError

    class Backwards(LoopStrategy):
        """The loop over the points in reverse order: the same values, another implementation."""

        name = "backwards"

        def outputs(self, line, positions, x):
            return super().outputs(line, positions[::-1], x).flip(0)

    monkeypatch.setattr(strategies, "STRATEGIES", dict(strategies.STRATEGIES))
    with pytest.raises(ConfigError, match="'measure.strategy': 'backwards' is not one of"):
        tiny_config(tmp_path, "measure.strategy=backwards")
    register_strategy("backwards", Backwards)
    assert tiny_config(tmp_path, "measure.strategy=backwards").measure.strategy == "backwards"
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(16)
    direction, positions = tiny.random_direction(model), np.linspace(-0.3, 0.3, 5)
    ours = measure_line(model, x, y, direction, positions, bn="batch", bn_group=8, strategy="backwards")
    loop = measure_line(model, x, y, direction, positions, bn="batch", bn_group=8, strategy="loop")
    np.testing.assert_allclose(ours.sample_loss, loop.sample_loss, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="Strategy subclass"):
        register_strategy("nope", object)
