"""Reduced evaluation (measure.nodes = "chebyshev"): barycentric interpolation against scipy and
exact polynomials; a smooth line reconstructed within the bound; a ReLU-kinked line that falls
back to the dense values, bit for bit; the errors in the store; config errors in one line."""

import numpy as np
import pytest
import torch
from scipy.interpolate import BarycentricInterpolator
from torch import nn

from losslines.engine.chebyshev import (barycentric_matrix, check_indices, lobatto_nodes, lobatto_weights,
                                        plan_interval, reconstruct, relative_error)
from losslines.engine.directions import Direction
from losslines.engine.grid import make_grid
from losslines.engine.reduced import ReducedNodes
from losslines.engine.sampler import LineSampler
from losslines.engine.schedule import Schedule
from losslines.runner.config import ConfigError

GRID = make_grid(0.01, 0.5)  # 101 points


@pytest.mark.parametrize("n_nodes", [3, 9, 17, 33])
def test_barycentric_matrix_equals_scipy_and_reproduces_a_polynomial_of_its_degree(n_nodes):
    rng = np.random.default_rng(n_nodes)
    nodes = lobatto_nodes(-0.5, 0.5, n_nodes)
    assert nodes[0] == -0.5 and nodes[-1] == 0.5 and nodes[n_nodes // 2] == 0.0  # s = 0 exactly
    np.testing.assert_array_equal(nodes, -nodes[::-1])
    x = GRID.positions
    p = barycentric_matrix(nodes, lobatto_weights(n_nodes), x)
    values = np.cos(3 * nodes) + nodes ** 2
    np.testing.assert_allclose(p @ values, BarycentricInterpolator(nodes, values)(x), rtol=1e-12, atol=1e-13)
    coef = rng.standard_normal(n_nodes)  # degree n_nodes - 1: reproduced exactly
    np.testing.assert_allclose(p @ np.polyval(coef, nodes), np.polyval(coef, x), rtol=1e-10, atol=1e-10)
    hit = np.isin(x, nodes)
    assert hit.sum() >= 3  # the ends and 0: unit rows
    np.testing.assert_array_equal(p[hit].max(axis=1), 1.0)


def test_reconstruct_keeps_measured_points_and_measures_the_error_at_check_points():
    pos = GRID.positions
    plan = plan_interval(pos, np.arange(pos.size), 9, 4, phase=0.3)
    assert plan.checks.size == 4 and not np.isin(pos[plan.checks], plan.points[:9]).any()
    f = lambda s: np.abs(s - 0.123) + 1.0  # a kink: the interpolant is off between the nodes
    samples = np.stack([f(plan.points), 2 * f(plan.points)], axis=1)
    r = reconstruct(plan, f(plan.points), samples, np.full(plan.points.size, 0.5))
    np.testing.assert_array_equal(r.loss[plan.checks], f(pos[plan.checks]))  # measured, not interpolated
    assert r.loss[pos == 0.0] == f(0.0) and r.loss[0] == f(pos[0])
    assert r.error == pytest.approx(relative_error((plan.matrix @ f(plan.points[:9]))[plan.checks],
                                                   f(pos[plan.checks])))
    assert 1e-4 < r.error < 0.1
    measured = plan.measured
    assert np.isnan(r.accuracy[~measured]).all() and (r.accuracy[measured] == 0.5).all()
    assert check_indices(pos, plan.points[:9], 1000).size == pos.size - 3  # never more than the free points


class Smooth(nn.Module):
    """tanh MLP: analytic along any line."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


class Kinked(nn.Module):
    """One ReLU unit whose pre-activation crosses zero at s = 0.137 for every sample."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([-0.137]))
        self.w = nn.Parameter(torch.tensor([[3.0], [-3.0]]))

    def forward(self, x):
        return torch.relu(x[:, :1] * 0 + self.a) @ self.w.T + x[:, :2] * 0.01


def _measure(model, nodes, direction, n=24, seed=0, step=5):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)
    sampler = LineSampler(model, grid=GRID, schedule=Schedule.every(), train=(x, y), val=(x[:12], y[:12]),
                          bn="running", measure_batch=False, nodes=nodes)
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}
    return sampler, sampler.measure_direction(step, direction, theta=theta, buffers={})


def _direction(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    vector = {k: torch.randn(p.shape, generator=g) for k, p in model.named_parameters()}
    norm = float(torch.sqrt(sum((v.double() ** 2).sum() for v in vector.values())))
    return Direction(vector=vector, update_step=0.05, direction_norm=norm / 0.1, lr=0.1)


def test_a_smooth_line_is_reconstructed_within_the_bound():
    model = Smooth()
    d = _direction(model)
    _, dense = _measure(model, "dense", d)
    _, line = _measure(model, ReducedNodes(n_nodes=17, n_checks=4), d)
    assert line.interpolated is True and dense.interpolated is None
    for split in ("train", "val"):
        got, ref = line[split], dense[split]
        assert 0 <= got.interpolation_error <= 1e-4 and 0 <= got.sample_interpolation_error <= 1e-3
        assert relative_error(got.loss, ref.loss) <= 1e-4  # every grid point, not only the checks
        evaluated = np.isfinite(got.accuracy)
        assert 5 <= evaluated.sum() <= 7  # the ends, 0 and the check points: measured, bit for bit
        np.testing.assert_array_equal(got.loss[evaluated], ref.loss[evaluated])
        np.testing.assert_array_equal(got.sample_loss[evaluated], ref.sample_loss[evaluated])
        assert got.slope0 == ref.slope0 and got.loss_at_update == ref.loss_at_update  # exact, as dense


def test_a_relu_kinked_line_falls_back_to_the_dense_values():
    model = Kinked()
    d = Direction(vector={"a": torch.ones(1), "w": torch.zeros(2, 1)}, update_step=0.05, direction_norm=10.0, lr=0.1)
    _, dense = _measure(model, "dense", d)
    _, line = _measure(model, ReducedNodes(n_nodes=17, n_checks=4), d)
    assert line.interpolated is False
    for split in ("train", "val"):
        got, ref = line[split], dense[split]
        assert got.interpolation_error > 1e-4  # the stored error is the reduced attempt's: why it fell back
        for name in ("loss", "accuracy", "sample_loss", "sample_slope0"):
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
        assert got.slope0 == ref.slope0 and got.loss_at_update == ref.loss_at_update


def test_reduced_nodes_refuse_bad_settings_in_one_line():
    for kwargs, key in (({"n_nodes": 16}, "odd"), ({"n_nodes": 1}, "n_nodes"), ({"n_checks": 0}, "n_checks"),
                        ({"max_error": 0.0}, "max_error"), ({"max_sample_error": float("nan")}, "max_sample_error")):
        with pytest.raises(ValueError, match=key) as err:
            ReducedNodes(**kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="nodes must be 'dense' or a ReducedNodes"):
        LineSampler(Smooth(), grid=GRID, schedule=Schedule.every(), train=(torch.zeros(4, 4), torch.zeros(4).long()),
                    bn="running", measure_batch=False, nodes="chebyshev")


@pytest.mark.parametrize("override, says", [
    ("measure.nodes=cheb", "'measure.nodes': 'cheb' is not one of 'dense', 'chebyshev'"),
    ("measure.chebyshev_nodes=8", "'measure.chebyshev_nodes': 8 is impossible; expected an odd number"),
    ("measure.check_points=0", "'measure.check_points': 0 is impossible"),
    ("measure.max_interpolation_error=0", "'measure.max_interpolation_error': 0 is impossible"),
    ("measure.max_sample_interpolation_error=-1e-3", "'measure.max_sample_interpolation_error'"),
    ("measure.chebyshev_nodes=11", "'measure.chebyshev_nodes': 11 nodes + 4 check points are not fewer"),
])
def test_config_errors_are_one_line(tiny_config, tmp_path, override, says):
    with pytest.raises(ConfigError) as err:
        tiny_config(tmp_path, "measure.nodes=chebyshev", override)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_the_store_keeps_every_lines_errors_and_whether_it_fell_back(tiny_config, tmp_path):
    from losslines.runner.driver import run
    from losslines.store.reader import open_store
    from losslines.store.verify import verify_store

    cfg = tiny_config(tmp_path, "measure.nodes=chebyshev", "measure.chebyshev_nodes=5", "measure.check_points=2",
                      "measure.max_sample_interpolation_error=1")
    run(cfg)
    store = open_store(cfg.store_path)
    n = store.committed_lines
    assert n == 6 and store.layout.interpolation
    flag = store["interpolated"][:n]
    assert set(flag.tolist()) <= {0, 1} and flag.any()
    for split in ("train", "val", "batch"):
        for name in (f"interpolation_error_{split}", f"sample_interpolation_error_{split}"):
            assert np.isfinite(store[name][:n]).all() and (store[name][:n] >= 0).all(), name
        ok = flag == 1
        assert (store[f"interpolation_error_{split}"][:n][ok] <= 1e-4).all()
    assert "chebyshev: 5 Chebyshev-Lobatto nodes" in store.attrs["semantics"]["nodes"]
    assert verify_store(cfg.store_path) == []
    import zarr  # verify names a line kept as interpolated whose error is above the bound
    root = zarr.open_group(str(cfg.store_path), mode="r+", use_consolidated=False)
    line = int(np.flatnonzero(flag == 1)[0])
    root["interpolation_error_val"][line] = 0.5
    findings = [str(f) for f in verify_store(cfg.store_path)]
    assert findings == [f"interpolation: interpolation_error_val line {line}: 0.5 above the bound 0.0001 on a line "
                        "kept as interpolated"], findings
