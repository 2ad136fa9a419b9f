"""LineSampler: typed records of its shape that map onto the store schema; training is
bit-identical with and without it."""

import contextlib
import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine.directions import SGDDirection
from losslines.engine.evaluator import measure_line
from losslines.engine.grid import make_grid
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import Schedule
from losslines.records import LineRecord, LineShape
from losslines.store.schema import StoreLayout, line_specs, record_arrays

GRID = make_grid(0.1, 0.5)  # 11 points


def sgd_step_with_sampler(tiny, sampler_kwargs=None, *, momentum=0.0, loss_fn=F.cross_entropy, step=0):
    model = tiny.make_cnn()
    x, y = tiny.make_data(40)
    xv, yv = tiny.make_data(24, seed=9)
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), val=(xv, yv),
                          bn="batch", bn_group=16, **(sampler_kwargs or {}))
    source = SGDDirection(model, lr=0.1, momentum=momentum)
    xb, yb = x[:16], y[:16]
    model.train()
    loss_fn(model(xb), yb).backward()
    with sampler.measure(step, source, batch=(xb, yb), batch_ids=torch.arange(100, 116), epoch=3):
        source.step()
    return model, sampler, (x, y, xv, yv, xb, yb)


def test_record_has_the_sampler_shape_and_maps_onto_the_store_schema(tiny):
    model, sampler, _ = sgd_step_with_sampler(tiny)
    (record,) = sampler.records
    shape = sampler.shape
    assert isinstance(record, LineRecord) and isinstance(shape, LineShape)
    assert dict(shape.n_samples) == {"train": 40, "val": 24, "batch": 16} and shape.n_points == 11
    assert record.step == 0 and record.epoch == 3 and record.lr == 0.1
    np.testing.assert_array_equal(record.batch_ids, np.arange(100, 116))
    for split, n in shape.n_samples.items():
        line = record[split]
        assert line.loss.shape == line.accuracy.shape == (11,) and line.loss.dtype == np.float64, split
        assert line.sample_loss.shape == (11, n) and line.sample_loss.dtype == np.float32, split
        assert line.sample_slope0.shape == (n,) and np.isfinite(line.sample_slope0).all(), split
        np.testing.assert_allclose(line.sample_loss.mean(axis=1), line.loss, rtol=1e-5)
        assert line.slope0 == pytest.approx(line.sample_slope0.mean(), rel=1e-9, abs=1e-12)
    assert np.isfinite(record["train"].loss).all() and np.isfinite(record["val"].accuracy).all()
    # the store's mapping of this record is exactly the format's per-line arrays, in their shapes
    layout = StoreLayout.from_shape(shape, sample_dtype="float32")
    arrays = record_arrays(record, layout)
    specs = line_specs(layout)
    assert set(arrays) == {s.name for s in specs}
    sizes = layout.dim_sizes()
    for spec in specs:
        assert np.shape(arrays[spec.name]) == tuple(sizes[d] for d in spec.dims[1:]), spec.name
        assert np.can_cast(np.asarray(arrays[spec.name]).dtype, spec.dtype, "same_kind"), spec.name


def test_lines_are_measured_at_theta_t_along_the_step(tiny):
    """Independent check: the same line from measure_line at the pre-step parameters."""
    model = tiny.make_cnn()
    start = copy.deepcopy(model)
    model_after, sampler, (x, y, xv, yv, xb, yb) = sgd_step_with_sampler(tiny)
    (record,) = sampler.records
    u = {n: p.detach() - q.detach() for (n, p), q in zip(model_after.named_parameters(), start.parameters())}
    # θ_t's buffers are those after the training forward of step t
    start.train()
    with torch.no_grad():
        start(xb)
    pos = np.append(GRID.positions, record.update_step)
    m = measure_line(start, x, y, u, pos, bn="batch", bn_group=16)
    np.testing.assert_allclose(record["train"].loss, m.loss[:-1], rtol=1e-5)
    assert record["train"].loss_at_update == pytest.approx(m.loss[-1], rel=1e-5)
    assert record["train"].slope0 == pytest.approx(m.slope0, rel=1e-4, abs=1e-6)
    assert record.update_step == pytest.approx(0.1 * record.direction_norm, rel=1e-6)


def test_plain_sgd_batch_slope_is_minus_the_gradient_norm(tiny):
    _, sampler, _ = sgd_step_with_sampler(tiny, {"check_sgd_slope": False})
    (record,) = sampler.records
    assert record["batch"].slope0 == pytest.approx(-record.direction_norm, rel=1e-5)


def test_sgd_slope_check_fires_when_the_trained_loss_differs(tiny):
    smoothed = lambda logits, y: F.cross_entropy(logits, y, label_smoothing=0.5)
    with pytest.raises(RuntimeError, match="plain-SGD check failed.*check_sgd_slope=False"):
        sgd_step_with_sampler(tiny, loss_fn=smoothed)
    _, sampler, _ = sgd_step_with_sampler(tiny, {"check_sgd_slope": False}, loss_fn=smoothed)
    assert len(sampler.records) == 1


def test_off_schedule_steps_only_run_the_block(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.explicit([1]), train=(x, y), bn_group=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ran = []
    for step in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x[:8]), y[:8]).backward()
        with sampler.measure(step, opt, batch=(x[:8], y[:8])):
            opt.step()
            ran.append(step)
    assert ran == [0, 1, 2] and [r.step for r in sampler.records] == [1]
    assert sampler.should_measure(1) and not sampler.should_measure(2)
    assert "val" not in sampler.records[0].splits and (sampler.records[0].batch_ids == -1).all()


def test_an_error_in_the_block_propagates_and_emits_nothing(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    sink = []
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), bn_group=8, sink=sink.append)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(KeyError):
        with sampler.measure(0, opt, batch=(x[:8], y[:8])):
            raise KeyError("boom")
    assert sink == [] and sampler.records == []


def test_smaller_batches_are_padded(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), bn_group=8, batch_size=12,
                          sample_losses=("batch",))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    F.cross_entropy(model(x[:10]), y[:10]).backward()
    with sampler.measure(0, opt, batch=(x[:10], y[:10]), batch_ids=np.arange(10)):
        opt.step()
    (record,) = sampler.records
    batch = record["batch"].sample_loss
    assert np.isnan(batch[:, 10:]).all() and np.isfinite(batch[:, :10]).all()
    np.testing.assert_array_equal(record.batch_ids, list(range(10)) + [-1, -1])
    assert record["train"].sample_loss is None


def test_bad_sampler_arguments(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    with pytest.raises(ValueError, match="not measured"):
        LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), bn_group=8, sample_losses=("val",))
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), bn_group=8)
    with pytest.raises(ValueError, match="batch_size"):
        sampler.shape
    with pytest.raises(ValueError, match="no batch"):
        with sampler.measure(0, torch.optim.SGD(model.parameters(), lr=0.1)):
            pass
    with pytest.raises(ValueError, match="torch.optim.Optimizer or a DirectionSource"):
        with sampler.measure(0, "sgd", batch=(x, y)):
            pass


class Quadratic(nn.Module):
    """Linear regression: its mse loss is exactly quadratic in the parameters."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x)


def test_enlargement_rings_follow_the_minimum(tiny):
    torch.manual_seed(0)
    model = Quadratic().double()
    x, t = torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    model.zero_grad()
    F.mse_loss(model(x), t).backward()
    g = {n: p.grad.clone() for n, p in model.named_parameters()}
    # closed form along û = -g/‖g‖: L(s) = A s² + B s + C, minimum at s* = -B / 2A
    W, b = model.lin.weight.detach(), model.lin.bias.detach()
    norm = torch.sqrt(sum((v ** 2).sum() for v in g.values()))
    a = -(x @ g["lin.weight"].T + g["lin.bias"]) / norm
    r0 = x @ W.T + b - t
    s_star = float(-(2 * (r0 * a).mean()) / (2 * (a ** 2).mean()))
    spacing = s_star / 5.2  # minimum between grid points 5 and 6; core ±2, rings of width 2
    grid = make_grid(spacing, 2 * spacing, max_enlargements=3)
    sampler = LineSampler(model, grid=grid, schedule=Schedule.every(), train=(x, t), loss="mse", bn="running",
                          measure_batch=False)
    source = SGDDirection(model, lr=1e-3)
    with sampler.measure(0, source):
        source.step()
    (record,) = sampler.records
    loss = record["train"].loss
    measured = grid.measured_mask(2)  # ring 1 (edge ±4) had its minimum on the edge, ring 2 (±6) not
    assert np.isfinite(loss[measured]).all() and np.isnan(loss[~measured]).all()
    assert np.isnan(record["train"].sample_loss[~measured]).all()
    assert int(np.nanargmin(loss)) == grid.zero_index + 5
    assert np.isnan(record["train"].accuracy).all()  # regression: no accuracy


def run_training(tiny, sample: bool, steps: int = 10):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = tiny.make_cnn(dropout=0.1)  # dropout in training draws from the global RNG
    x, y = tiny.make_data(64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader_gen = torch.Generator().manual_seed(5)
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x[:32], y[:32]),
                          val=(x[32:48], y[32:48]), bn="batch", bn_group=16) if sample else None
    for step in range(steps):
        idx = torch.randperm(64, generator=loader_gen)[:16]
        xb = x[idx] + 0.05 * torch.randn(16, 3, 8, 8)  # augmentation from the global torch RNG
        if np.random.rand() < 0.5 or random.random() < 0.3:
            xb = xb.flip(-1)
        yb = y[idx]
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        ctx = sampler.measure(step, opt, batch=(xb, yb), batch_ids=idx) if sample else contextlib.nullcontext()
        with ctx:
            opt.step()
    return model, sampler


def test_training_is_bit_identical_with_and_without_sampling(tiny):
    plain, _ = run_training(tiny, sample=False)
    sampled, sampler = run_training(tiny, sample=True)
    assert len(sampler.records) == 10
    for (name, a), b in zip(plain.state_dict().items(), sampled.state_dict().values()):
        assert torch.equal(a, b), name
    assert np.isfinite(sampler.records[-1]["train"].loss).all()


def test_diverged_line_does_not_trigger_enlargement(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    grid = make_grid(0.1, 0.2, max_enlargements=1)
    sampler = LineSampler(model, grid=grid, schedule=Schedule.every(), train=(x, y), bn_group=8)
    nan_line = np.full(grid.n_points, np.nan)
    assert not sampler._min_on_edge(nan_line, 0)
    edge_line = np.where(grid.core_mask, -grid.positions, np.nan)  # falling to the right edge
    edge_line[grid.zero_index] = np.nan  # a NaN inside the measured region is skipped
    assert sampler._min_on_edge(edge_line, 0)
