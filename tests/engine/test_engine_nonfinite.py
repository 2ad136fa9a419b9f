"""Non-finite values in the engine (a diverging run): measured and emitted as they are, no crash.

A step whose update holds NaN or ±inf has no direction: its line is measured at s = 0 only (θ_t,
the same point along any direction), the rest NaN (not measured). A model whose parameters are
NaN is measured like any other: its losses are NaN, and the safeguards (the double evaluation of
s = 0, loop against vmap under ``auto``) do not mistake that for randomness.
"""

import math

import numpy as np
import pytest
import torch

from losslines import batched
from losslines.engine.directions import Direction, SGDDirection
from losslines.engine.grid import make_grid
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import Schedule
from losslines.engine.strategies import _require_agreement

GRID = make_grid(0.1, 0.3)  # 7 points, s = 0 at index 3


def _sampler(tiny, model, **kwargs):
    x, y = tiny.make_data(24)
    xv, yv = tiny.make_data(16, seed=9)
    return LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), val=(xv, yv), bn="batch",
                       bn_group=8, batch_size=8, **kwargs), (x[:8], y[:8])


def _theta(model):
    return ({n: p.detach().clone() for n, p in model.named_parameters()},
            {n: b.detach().clone() for n, b in model.named_buffers()})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_step_without_a_finite_direction_is_measured_at_s0_only(tiny, bad):
    model = tiny.make_cnn()
    sampler, batch = _sampler(tiny, model)
    theta, buffers = _theta(model)
    u = tiny.random_direction(model)
    finite = sampler.measure_direction(4, Direction(u, update_step=0.2, direction_norm=2.0, lr=0.1), theta=theta,
                                       buffers=buffers, batch=batch)
    first = next(iter(u))
    u_bad = {n: v.clone() for n, v in u.items()}
    u_bad[first].view(-1)[0] = bad
    # the update's norm is as measured (NaN or inf), or finite although u overflowed (λ·buf beyond float32)
    for update_step in (bad, 0.2):
        record = sampler.measure_direction(4, Direction(u_bad, update_step=update_step, direction_norm=update_step,
                                                        lr=0.1), theta=theta, buffers=buffers, batch=batch)
        assert record.update_step == update_step or math.isnan(update_step) and math.isnan(record.update_step)
        zero = GRID.zero_index
        for split, line in record.splits.items():
            # s = 0 is θ_t's own loss, bit for bit the finite line's; nothing else was measured
            assert line.loss[zero] == finite[split].loss[zero] and np.isfinite(line.loss[zero]), split
            np.testing.assert_array_equal(line.sample_loss[zero], finite[split].sample_loss[zero])
            assert np.isnan(np.delete(line.loss, zero)).all() and np.isnan(np.delete(line.sample_loss, zero, 0)).all()
            assert math.isnan(line.slope0) and np.isnan(line.sample_slope0).all()
            assert math.isnan(line.loss_at_update), split


def test_a_nan_model_is_measured_as_it_is_by_every_strategy(tiny):
    model = tiny.make_cnn()
    with torch.no_grad():
        model.head.weight.view(-1)[0] = float("nan")  # a diverged model: NaN outputs, the same at every evaluation
    for strategy in ("loop", "vmap", "auto"):
        sampler, batch = _sampler(tiny, model, strategy=strategy)
        theta, buffers = _theta(model)
        u = tiny.random_direction(model)
        record = sampler.measure_direction(0, Direction(u, update_step=0.2, direction_norm=2.0, lr=0.1), theta=theta,
                                           buffers=buffers, batch=batch)
        for split, line in record.splits.items():
            assert np.isnan(line.loss).all() and np.isnan(line.sample_loss).all(), (strategy, split)
            assert math.isnan(line.slope0) and math.isnan(line.loss_at_update), (strategy, split)


def test_a_diverged_sgd_step_in_measure_and_per_step_mode(tiny):
    """Inside a training step: NaN gradients (a NaN model) give a NaN update; the scheduled line
    and the per-step values off the schedule are emitted, NaN stored as NaN, no slope check fires."""
    model = tiny.make_cnn()
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    x, y = tiny.make_data(24)
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.explicit([1]), train=(x, y), bn="batch", bn_group=8,
                          batch_size=8, per_step=True)
    source = SGDDirection(model, lr=0.1)
    model.train()
    for step in (0, 1):
        torch.nn.functional.cross_entropy(model(x[:8]), y[:8]).backward()
        with sampler.measure(step, source, batch=(x[:8], y[:8])):
            source.step()
        assert sampler.last_record.step == step
    (off, dense) = sampler.step_records
    (line,) = sampler.records
    assert sampler.last_record is line and math.isnan(line.update_step) and math.isnan(off.direction_norm)
    assert np.isnan(line["train"].loss[GRID.zero_index]) and math.isnan(off.splits["train"].loss0)
    assert math.isnan(off.splits["batch"].slope0) and math.isnan(off.splits["batch"].loss_at_update)


def test_equal_outputs_hold_nan_at_the_same_places():
    a = torch.tensor([1.0, float("nan"), float("inf")])
    assert batched.equal((a, {"k": a}), (a.clone(), {"k": a.clone()}))
    assert not batched.equal(a, torch.tensor([1.0, 2.0, float("inf")]))
    assert not batched.equal(a, torch.tensor([float("nan"), float("nan"), float("inf")]))
    _require_agreement(a, a.clone())
    with pytest.raises(RuntimeError, match="disagree"):
        _require_agreement(a, torch.tensor([1.0, float("nan"), -float("inf")]))
    with pytest.raises(RuntimeError, match="disagree"):
        _require_agreement(a, torch.tensor([float("nan"), float("nan"), float("inf")]))


def test_the_plain_sgd_check_is_not_applied_to_a_diverged_line():
    """Regression: lr 999 on the quickstart stopped with "plain-SGD check failed" (a 0.7 % float32
    mismatch at a batch loss of ~1e18) before any value was non-finite."""
    from losslines.engine.directions import SGDDirection
    from losslines.engine.sampler import LineSampler
    from losslines.records import SGD_CHECK_MAX_LOSS

    sampler = object.__new__(LineSampler)  # only the check's own state
    sampler.check_sgd_slope, sampler.slope, sampler._sgd_check_skipped = True, True, False
    source = SGDDirection(torch.nn.Linear(2, 1), lr=0.1)
    sampler._check_sgd(source, 7, -1.007, 1.0, loss0=10 * SGD_CHECK_MAX_LOSS)  # diverged: not judged
    assert sampler._sgd_check_skipped
    with pytest.raises(RuntimeError, match="plain-SGD check failed at step 7"):
        sampler._check_sgd(source, 7, -1.007, 1.0, loss0=2.3)  # a moderate loss: judged
