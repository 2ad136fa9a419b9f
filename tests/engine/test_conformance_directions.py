"""The conformance suite of direction sources: every source passes the same tests.

A direction source hooks one training step (``begin`` before it, ``end`` after it) and says
which ``Direction`` the step took. Each case below builds a source and the call that takes the
step; every case runs through the same tests. A new source (or a new optimizer behind
``OptimizerStepDirection``) is one more entry in ``CASES``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslines.engine import LineSampler, Schedule, make_grid
from losslines.engine.directions import DirectionSource, OptimizerStepDirection, SGDDirection, tensor_norm

LR = 0.05


def _sgd(**hyper):
    def make(model):
        source = SGDDirection(model, lr=LR, **hyper)
        return source, source.step, source
    return make


def _optimizer(build):
    def make(model):
        opt = build(model.parameters())
        return OptimizerStepDirection(opt, model), opt.step, opt
    return make


CASES = {
    "sgd": _sgd(),
    "sgd-momentum-nesterov": _sgd(momentum=0.9, nesterov=True),
    "sgd-dampening-decay": _sgd(momentum=0.8, dampening=0.3, weight_decay=5e-4),
    "torch-sgd-nesterov": _optimizer(lambda p: torch.optim.SGD(p, lr=LR, momentum=0.9, nesterov=True,
                                                               weight_decay=1e-3)),
    "torch-adam": _optimizer(lambda p: torch.optim.Adam(p, lr=LR)),
    "torch-adamw": _optimizer(lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=0.1)),
}


def backward(model, x, y):
    model.zero_grad()
    model.train()
    F.cross_entropy(model(x), y).backward()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_direction_is_the_step_taken(tiny, case):
    model = tiny.make_cnn()
    x, y = tiny.make_data(32)
    source, take_step, _ = CASES[case](model)
    assert isinstance(source, DirectionSource)
    for step in range(3):  # later steps: optimizer state (momentum, Adam moments) is non-trivial
        backward(model, x[8 * step:8 * step + 8], y[8 * step:8 * step + 8])
        theta_t = source.begin()
        for name, p in model.named_parameters():
            assert torch.equal(theta_t[name], p.detach()), name
        take_step()
        direction = source.end()
    assert set(direction.vector) == {n for n, p in model.named_parameters() if p.requires_grad}
    for name, p in model.named_parameters():
        moved = p.detach() - theta_t[name]
        assert direction.vector[name].dtype == p.dtype and direction.vector[name].shape == p.shape
        torch.testing.assert_close(direction.vector[name], moved, rtol=1e-5, atol=1e-7)
        assert not torch.equal(theta_t[name], p.detach()) or not moved.any(), name  # the snapshot is a copy
    assert direction.update_step == pytest.approx(tensor_norm(direction.vector.values()), rel=1e-6)
    assert direction.lr == LR
    assert direction.direction_norm == pytest.approx(direction.update_step / direction.lr, rel=1e-12)
    assert direction.update_step > 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_end_needs_a_begin_and_abort_forgets_it(tiny, case):
    model = tiny.make_cnn()
    source, _, _ = CASES[case](model)
    with pytest.raises(RuntimeError, match="without begin"):
        source.end()
    source.begin()
    source.abort()
    with pytest.raises(RuntimeError, match="without begin"):
        source.end()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_sampler_measures_the_line_of_the_step(tiny, case):
    model = tiny.make_cnn()
    x, y = tiny.make_data(24)
    source, take_step, _ = CASES[case](model)
    sampler = LineSampler(model, grid=make_grid(0.1, 0.2), schedule=Schedule.every(), train=(x, y),
                          bn="batch", bn_group=8)
    backward(model, x[:8], y[:8])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with sampler.measure(0, source, batch=(x[:8], y[:8])):
        take_step()
    (record,) = sampler.records
    moved = torch.sqrt(sum(((p.detach().double() - before[n].double()) ** 2).sum()
                           for n, p in model.named_parameters()))
    assert record.update_step == pytest.approx(float(moved), rel=1e-5)
    assert np.isfinite(record["train"].loss).all() and record.lr == LR


@pytest.mark.parametrize("case", sorted(CASES))
def test_state_round_trip_continues_bit_identically(tiny, case):
    x, y = tiny.make_data(24)
    model_a = tiny.make_cnn()
    source_a, step_a, state_a = CASES[case](model_a)
    for i in range(2):
        backward(model_a, x[8 * i:8 * i + 8], y[8 * i:8 * i + 8])
        source_a.begin(), step_a(), source_a.end()
    model_b = copy.deepcopy(model_a)
    source_b, step_b, state_b = CASES[case](model_b)
    state_b.load_state_dict(copy.deepcopy(state_a.state_dict()))
    for model, source, take_step in ((model_a, source_a, step_a), (model_b, source_b, step_b)):
        backward(model, x[16:], y[16:])
        source.begin(), take_step(), source.end()
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters()):
        assert torch.equal(pa, pb), name
