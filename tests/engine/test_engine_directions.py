"""What only SGDDirection promises: torch.optim.SGD's trajectory bit for bit, ‖g‖ computed directly.
(The contract every direction source keeps: test_conformance_directions.py.)"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from losslines.engine.directions import OptimizerStepDirection, SGDDirection, tensor_norm


def loss_on(model, x, y):
    return F.cross_entropy(model(x), y)


@pytest.mark.parametrize("hyper", [
    dict(momentum=0.0),
    dict(momentum=0.9),
    dict(momentum=0.9, nesterov=True),
    dict(momentum=0.8, dampening=0.3, weight_decay=5e-4),
    dict(momentum=0.0, weight_decay=1e-2),
])
def test_sgd_direction_follows_the_torch_sgd_trajectory(tiny, hyper):
    model_a = tiny.make_cnn()
    model_b = copy.deepcopy(model_a)
    x, y = tiny.make_data(32)
    source = SGDDirection(model_a, lr=0.05, **hyper)
    opt = torch.optim.SGD(model_b.parameters(), lr=0.05, **hyper)
    for step in range(4):
        xb, yb = x[8 * step: 8 * step + 8], y[8 * step: 8 * step + 8]
        for model in (model_a, model_b):
            model.zero_grad()
            loss_on(model, xb, yb).backward()
        theta = {n: p.detach().clone() for n, p in model_a.named_parameters()}
        direction = source.step()
        opt.step()
        for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters()):
            assert torch.equal(pa, pb), name  # bit-identical trajectory
        # u = -lr * v, direction_norm = ‖v‖ exactly, update_step = lr ‖v‖
        assert direction.direction_norm == pytest.approx(tensor_norm(direction.vector.values()) / 0.05, rel=1e-6)
        assert direction.update_step == pytest.approx(0.05 * direction.direction_norm, rel=1e-15)
        for name, u in direction.vector.items():
            torch.testing.assert_close(u, model_a.get_parameter(name).detach() - theta[name], rtol=1e-5, atol=1e-7)


def test_plain_sgd_direction_norm_is_the_gradient_norm(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    loss_on(model, x, y).backward()
    grad_norm = math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters()))
    direction = SGDDirection(model, lr=0.1).step()
    assert direction.direction_norm == pytest.approx(grad_norm, rel=1e-12)
    assert direction.lr == 0.1


def test_sgd_direction_state_dict_round_trip_continues_identically(tiny):
    x, y = tiny.make_data(24)
    model_a = tiny.make_cnn()
    model_b = copy.deepcopy(model_a)
    a = SGDDirection(model_a, lr=0.05, momentum=0.9)
    for step in range(2):
        model_a.zero_grad(), loss_on(model_a, x[:8], y[:8]).backward(), a.step()
    model_b.load_state_dict(model_a.state_dict())
    b = SGDDirection(model_b, lr=1.0)
    b.load_state_dict(a.state_dict())
    assert b.lr == 0.05 and b.momentum == 0.9 and b.steps_taken == 2
    for model, source in ((model_a, a), (model_b, b)):
        model.zero_grad(), loss_on(model, x[8:16], y[8:16]).backward(), source.step()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


def test_sgd_direction_lr_is_settable_and_validated(tiny):
    source = SGDDirection(tiny.make_cnn(), lr=0.1)
    source.lr = 0.02
    assert source.lr == 0.02
    with pytest.raises(ValueError, match="learning rate"):
        source.lr = -1.0
    with pytest.raises(ValueError, match="Nesterov"):
        SGDDirection(tiny.make_cnn(), lr=0.1, nesterov=True)


def test_sgd_step_without_grad_is_an_error(tiny):
    with pytest.raises(RuntimeError, match="backward"):
        SGDDirection(tiny.make_cnn(), lr=0.1).step()


def test_sgd_source_requires_exactly_one_step_in_the_block(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    loss_on(model, x, y).backward()
    source = SGDDirection(model, lr=0.1)
    source.begin()
    with pytest.raises(RuntimeError, match="exactly one step"):
        source.end()
    source.begin()
    source.step()
    assert source.end() is source.last_direction


def test_optimizer_step_direction_needs_an_optimizer(tiny):
    model = tiny.make_cnn()
    with pytest.raises(ValueError, match="torch.optim.Optimizer"):
        OptimizerStepDirection("adam", model)
