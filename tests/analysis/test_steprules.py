"""Replayed step rules: SGD with the store's λ reproduces the step, PAL finds parabola vertices."""

import numpy as np
import pytest

from losslines.analysis.steprules import StepRule, judge_step, pal_on_line, pal_step, rule_key, sgd_step

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def test_sgd_with_the_store_lr_reproduces_the_update_step():
    rng = np.random.default_rng(0)
    lr = np.full(20, 0.1, dtype=np.float32)
    g = rng.uniform(0.5, 3.0, 20).astype(np.float32)
    update = (lr * g).astype(np.float32)  # what a plain-SGD writer stores
    np.testing.assert_allclose(sgd_step(lr, g), update, rtol=1e-6)


def test_pal_on_exact_parabola_lands_on_the_vertex():
    a, vertex, c = 3.0, 0.17, 1.0
    line = a * (GRID - vertex) ** 2 + c
    slope0 = np.array([-2 * a * vertex])
    for mu in (0.05, 0.1, 0.1234):
        np.testing.assert_allclose(pal_on_line(GRID, line[None], slope0, mu), [vertex], atol=1e-12)


def test_pal_rule_cases():
    # concave: step mu; non-descending: 0; convex descending: vertex
    got = pal_step(np.array([1.0, 1.0, 1.0]), np.array([0.5, 1.2, 0.9]), np.array([-1.0, 1.0, -1.0]), 0.1)
    assert got[0] == 0.1 and got[1] == 0.0
    a = (0.9 - 1.0 + 0.1) / 0.01
    assert got[2] == pytest.approx(1.0 / (2 * a))
    with pytest.raises(ValueError, match="mu"):
        pal_step(np.ones(1), np.ones(1), -np.ones(1), 0.0)


def test_judge_step_improvement_and_distance_and_exact_override():
    line = 2.0 * (GRID - 0.1) ** 2 + 1.0
    steps = np.array([0.1, 0.05, 0.7])
    out = judge_step(GRID, np.tile(line, (3, 1)), np.full(3, 0.1), steps)
    np.testing.assert_allclose(out.improvement[:2], [0.02, 0.02 - 2 * 0.05**2], atol=1e-12)
    assert np.isnan(out.improvement[2])  # outside the measured range: never extrapolated
    np.testing.assert_allclose(out.distance, [0.0, 0.05, -0.6])
    exact = judge_step(GRID, np.tile(line, (3, 1)), np.full(3, 0.1), steps, loss_at_step=np.array([np.nan, 0.0, 0.5]))
    np.testing.assert_allclose(exact.improvement[1:], [1.02, 0.52])


def test_rule_names_and_errors():
    assert rule_key("sgd", 0.05) == "sgd(lr=0.05)"
    assert rule_key(StepRule.PAL, 0.1) == "pal(mu=0.1)"
    assert rule_key("taken") == "taken"
    with pytest.raises(ValueError, match="valid"):
        rule_key("adam")
    with pytest.raises(ValueError, match="needs"):
        rule_key("fbpal")


def test_step_quality_of_exact_parabolas():
    """improvement = L(0) - L(s_t), predicted = -L'(0) s_t; on a parabola efficiency = 1 - s_t / (2 s_opt)."""
    from losslines.analysis.step_quality import step_quality

    a, b, c = np.array([1.0, 2.0, 0.5]), np.array([-1.0, -2.0, -0.2]), np.array([3.0, 1.0, 2.0])
    s_opt = -b / (2 * a)
    steps = np.array([0.5, 1.0, 2.0]) * s_opt  # half the optimal step, the optimum, twice it
    q = step_quality(c, a * steps**2 + b * steps + c, b, steps)
    np.testing.assert_allclose(q.improvement, c - (a * steps**2 + b * steps + c))
    np.testing.assert_allclose(q.predicted, -b * steps)
    np.testing.assert_allclose(q.efficiency, 1 - steps / (2 * s_opt))
    assert q.efficiency[2] == 0.0  # twice the optimum: back to the starting loss
    assert np.isnan(step_quality([1.0], [1.0], [0.0], [0.3]).efficiency[0])
