"""Grid slope stencil: exact on quadratics, documented bias on cubics, equals numpy polyfit."""

import numpy as np
import pytest

from losslines.analysis.slopes import slope_stencil

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def test_exact_on_quadratics_and_linear_over_samples():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 50))
    values = a[None, :] * GRID[:, None] ** 2 + b[None, :] * GRID[:, None] + c[None, :]  # [K, N]
    st = slope_stencil(GRID, 4)
    np.testing.assert_allclose(st.apply(values, axis=0), b, atol=1e-10)
    np.testing.assert_allclose(st.apply(values.mean(axis=1), axis=0), b.mean(), atol=1e-10)


def test_cubic_bias_matches_the_stated_formula_and_polyfit_oracle():
    st = slope_stencil(GRID, 4)
    line = 7.0 * GRID**3 + 0.5 * GRID
    assert st.apply(line) == pytest.approx(0.5 + 7.0 * st.bias_per_cubic, rel=1e-9)
    assert st.bias_per_cubic == pytest.approx(11.8 * 0.006**2, rel=1e-9)
    ref = np.polyfit(GRID[st.index], np.sin(GRID[st.index]), 2)[1]
    assert st.apply(np.sin(GRID)) == pytest.approx(ref, rel=1e-9)


def test_grid_without_zero_is_still_exact_on_quadratics():
    grid = np.arange(-0.5, 0.5, 0.006)  # the original's kind of grid: 0 is not a point
    assert np.min(np.abs(grid)) > 1e-4
    st = slope_stencil(grid, 4)
    assert st.apply(3.0 * grid**2 - 1.7 * grid + 0.4) == pytest.approx(-1.7, rel=1e-9)
    assert st.apply(grid**3) == pytest.approx(st.bias_per_cubic, rel=1e-9)


def test_needs_enough_points_spanning_zero():
    with pytest.raises(ValueError, match="does not span"):
        slope_stencil(GRID[100:])
    with pytest.raises(ValueError, match="9 finite grid points"):
        slope_stencil(GRID[80:87], 4)
