"""The direction batch's losses gathered from the measured training set (issue 13, item 2a):
no forwards of its own, the same values as measuring it (the oracle: the batch measured by its own
forwards), and only where no sample's loss depends on the others."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine import sampler as sampler_module
from losslines.engine.directions import SGDDirection
from losslines.engine.grid import make_grid
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import Schedule

GRID = make_grid(0.1, 0.5)
IDS = np.arange(500, 540)  # dataset ids of the 40 measured training rows
ROWS = np.array([3, 17, 0, 39, 8, 21, 30, 12])  # the direction batch, in its own order


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))


def _measure(model, *, train_ids, x, y, batch=None, bn="running", train_mode=True, **kwargs):
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), bn=bn, bn_group=8,
                          batch_size=len(ROWS), train_ids=train_ids, **kwargs)
    xb, yb = batch if batch is not None else (x[ROWS], y[ROWS])
    source = SGDDirection(model, lr=0.1)
    model.train(train_mode)
    F.cross_entropy(model(xb), yb).backward()
    with sampler.measure(0, source, batch=(xb, yb), batch_ids=IDS[ROWS]):
        source.step()
    model.zero_grad()
    return sampler


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(40, 6, generator=g), torch.randint(0, 4, (40,), generator=g)


def _count_batch_evaluations(monkeypatch):
    calls = []
    real = sampler_module.LineSampler._batch_evaluator

    def counted(self, batch, trained_bn):
        calls.append(1)
        return real(self, batch, trained_bn)

    monkeypatch.setattr(sampler_module.LineSampler, "_batch_evaluator", counted)
    return calls


def test_a_model_without_batchnorm_gathers_the_batch_and_matches_measuring_it(monkeypatch):
    x, y = _data()
    measured = _measure(_mlp(), train_ids=None, x=x, y=y)  # the oracle: the batch's own forwards
    calls = _count_batch_evaluations(monkeypatch)
    gathered = _measure(_mlp(), train_ids=IDS, x=x, y=y)
    assert calls == [] and gathered.batch_gathered == 1 and measured.batch_gathered == 0
    a, b = measured.records[0]["batch"], gathered.records[0]["batch"]
    np.testing.assert_allclose(b.sample_loss, a.sample_loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-6)
    np.testing.assert_allclose(b.sample_slope0, a.sample_slope0, rtol=1e-5, atol=1e-7)
    assert b.slope0 == pytest.approx(a.slope0, rel=1e-5)
    assert b.loss_at_update == pytest.approx(a.loss_at_update, rel=1e-6)
    assert np.isnan(b.accuracy).all()  # not measured (the store keeps no batch accuracy)
    # the plain-SGD check passed on the gathered slope: slope0_batch = -direction_norm
    assert b.slope0 == pytest.approx(-gathered.records[0].direction_norm, rel=1e-5)
    np.testing.assert_array_equal(gathered.records[0].batch_ids, IDS[ROWS])


def test_batchnorm_in_train_mode_measures_the_batch(monkeypatch, tiny):
    x, y = tiny.make_data(40)
    calls = _count_batch_evaluations(monkeypatch)
    sampler = _measure(tiny.make_cnn(), train_ids=IDS, x=x, y=y, bn="batch")
    assert calls == [1] and sampler.batch_gathered == 0


def test_batchnorm_on_running_statistics_throughout_gathers(monkeypatch, tiny):
    x, y = tiny.make_data(40)
    oracle = _measure(tiny.make_cnn(), train_ids=None, x=x, y=y, train_mode=False)
    calls = _count_batch_evaluations(monkeypatch)
    sampler = _measure(tiny.make_cnn(), train_ids=IDS, x=x, y=y, train_mode=False)
    assert calls == [] and sampler.batch_gathered == 1
    np.testing.assert_allclose(sampler.records[0]["batch"].sample_loss, oracle.records[0]["batch"].sample_loss,
                               rtol=1e-5, atol=1e-6)


def test_an_augmented_batch_is_not_the_measured_samples(monkeypatch):
    x, y = _data()
    calls = _count_batch_evaluations(monkeypatch)
    flipped = (x[ROWS].flip(1), y[ROWS])  # same ids, other inputs
    sampler = _measure(_mlp(), train_ids=IDS, x=x, y=y, batch=flipped)
    assert calls == [1] and sampler.batch_gathered == 0


def test_ids_outside_the_measured_set_are_measured(monkeypatch):
    x, y = _data()
    calls = _count_batch_evaluations(monkeypatch)
    sampler = _measure(_mlp(), train_ids=IDS + 1000, x=x, y=y)
    assert calls == [1] and sampler.batch_gathered == 0


def test_train_ids_of_the_wrong_length_are_refused():
    x, y = _data()
    with pytest.raises(ValueError, match="train_ids has 3 ids for 40 training rows"):
        LineSampler(_mlp(), grid=GRID, schedule=Schedule.every(), train=(x, y), train_ids=[1, 2, 3])
