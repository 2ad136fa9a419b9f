"""The refined minimum: exact for parabolas (not grid-limited), errors and edges flagged."""

import numpy as np
import pytest

from losslines.analysis.interpolate import loss_at
from losslines.analysis.minimum import find_minimum

GRID = np.round(np.arange(-83, 84) * 0.006, 12)  # the default 167-point grid


@pytest.mark.parametrize("seed", range(5))
def test_exact_parabola_gives_closed_form_minimum_off_grid(seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 20.0, size=40)
    vertex = rng.uniform(-0.4, 0.4, size=40)
    c = rng.uniform(0.1, 3.0, size=40)
    losses = a[:, None] * (GRID[None, :] - vertex[:, None]) ** 2 + c[:, None]
    m = find_minimum(GRID, losses)
    np.testing.assert_allclose(m.s_opt, vertex, atol=1e-10, rtol=0)
    np.testing.assert_allclose(m.loss_min, c, atol=1e-10)
    assert np.max(np.abs(m.s_grid - vertex)) > 1e-3  # the grid alone would be off by up to h/2
    assert m.refined.all() and not m.at_edge.any()
    np.testing.assert_allclose(m.s_opt_err, 0.0, atol=1e-9)


def test_refinement_error_reflects_a_cubic_part():
    losses = 3.0 * (GRID - 0.1) ** 2 + 40.0 * (GRID - 0.1) ** 3 * (GRID > 0.1) + 1.0
    m = find_minimum(GRID, losses[None])
    assert m.s_opt_err[0] > 1e-6
    assert abs(m.s_opt[0] - 0.1) < 0.006


def test_edge_minimum_is_flagged_and_not_refined():
    losses = -2.0 * GRID + 1.0  # decreasing everywhere: minimum at the last point
    m = find_minimum(GRID, losses[None])
    assert m.at_edge[0] and not m.refined[0]
    assert m.s_opt[0] == GRID[-1]
    assert np.isnan(m.s_opt_err[0])


def test_nan_rings_are_skipped_and_edge_is_the_measured_edge():
    losses = 2.0 * (GRID + 0.2) ** 2  # minimum at -0.2
    losses = np.tile(losses, (2, 1))
    losses[0, :50] = np.nan  # ring unmeasured: measured range starts at GRID[50] = -0.198
    m = find_minimum(GRID, losses)
    assert m.at_edge[0] and m.s_opt[0] == GRID[50]
    np.testing.assert_allclose(m.s_opt[1], -0.2, atol=1e-12)
    position = GRID.copy()
    position[:3] = np.nan  # NaN positions are never used
    assert np.isfinite(find_minimum(position, losses[1:]).s_opt).all()


def test_all_nan_line_gives_nan():
    m = find_minimum(GRID, np.full((1, GRID.size), np.nan))
    assert np.isnan(m.s_opt[0]) and not m.at_edge[0]


def test_loss_at_is_exact_on_parabolas_and_nan_outside():
    losses = 4.0 * (GRID - 0.05) ** 2 + 0.3
    q = np.array([0.0, 0.0123, -0.4979, 0.498, 0.4981, np.nan])
    got = loss_at(GRID, np.tile(losses, (q.size, 1)), q)
    want = 4.0 * (q - 0.05) ** 2 + 0.3
    np.testing.assert_allclose(got[:4], want[:4], atol=1e-12)
    assert np.isnan(got[4]) and np.isnan(got[5])
