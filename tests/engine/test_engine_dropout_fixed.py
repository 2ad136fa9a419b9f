"""dropout="fixed": the training-mode function of one dropout mask per line, the same at every point."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine import LineSampler, Schedule, make_grid, measure_line
from losslines.engine.sampler import line_dropout_seed

POSITIONS = np.array([-0.3, 0.0, 0.1, 0.4])


class DropoutMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


def oracle(model, x, y, direction, positions, seed):
    """By hand: for every point, the parameters set on a copy, the generator reset to ``seed``,
    dropout in train mode: the same mask at every point if and only if the seed is reset."""
    ref = copy.deepcopy(model).double()
    norm = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
    theta = {n: p.detach().double().clone() for n, p in ref.named_parameters()}
    out = []
    for s in positions:
        with torch.no_grad():
            for n, p in ref.named_parameters():
                p.copy_(theta[n] + float(s) * direction[n].double() / norm)
            ref.eval()
            ref.net[2].train()
            torch.manual_seed(seed)
            out.append(F.cross_entropy(ref(x.double()), y, reduction="none"))
    return torch.stack(out).numpy()


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = DropoutMLP()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 6, generator=g), torch.randint(0, 3, (20,), generator=g)
    direction = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    return model, x, y, direction


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_one_mask_for_every_point_of_a_line(setup, strategy):
    model, x, y, direction = setup
    rng = torch.get_rng_state()
    m = measure_line(copy.deepcopy(model).double(), x, y, direction, POSITIONS, dropout="fixed", dropout_seed=7,
                     strategy=strategy)
    assert m.dropout_seed == 7 and torch.equal(torch.get_rng_state(), rng)  # the caller's generator is untouched
    np.testing.assert_allclose(m.sample_loss, oracle(model, x, y, direction, POSITIONS, 7), rtol=1e-10, atol=1e-12)
    other = measure_line(copy.deepcopy(model).double(), x, y, direction, POSITIONS, dropout="fixed", dropout_seed=8,
                         strategy=strategy)
    assert not np.allclose(other.sample_loss, m.sample_loss)  # another line, another mask
    off = measure_line(copy.deepcopy(model).double(), x, y, direction, POSITIONS, strategy=strategy)
    assert not np.allclose(off.sample_loss, m.sample_loss)  # and not the dropout-free function


def test_the_exact_slope_is_that_of_the_fixed_mask_function(setup):
    model, x, y, direction = setup
    m = measure_line(copy.deepcopy(model).double(), x, y, direction, [-1e-6, 0.0, 1e-6], dropout="fixed",
                     dropout_seed=3)
    assert m.slope0 == pytest.approx((m.loss[2] - m.loss[0]) / 2e-6, rel=1e-6)


def test_a_seed_is_required_exactly_when_the_mask_is_fixed(setup):
    model, x, y, direction = setup
    with pytest.raises(ValueError, match="needs the line's mask seed"):
        measure_line(model, x, y, direction, POSITIONS, dropout="fixed")
    with pytest.raises(ValueError, match="take none"):
        measure_line(model, x, y, direction, POSITIONS, dropout_seed=3)


def test_the_sampler_draws_a_recorded_mask_per_line(setup):
    model, x, y, _ = setup
    sampler = LineSampler(model, grid=make_grid(0.1, 0.2), schedule=Schedule.every(), train=(x, y), bn="running",
                          dropout="fixed", dropout_seed=5, check_sgd_slope=False, measure_batch=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with sampler.measure(step, opt):
            opt.step()
    seeds = [r.dropout_seed for r in sampler.records]
    assert seeds == [line_dropout_seed(5, 0), line_dropout_seed(5, 1)] and seeds[0] != seeds[1]
