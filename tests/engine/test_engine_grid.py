"""Grid: point count, exact zero, symmetry, rings, validation."""

import numpy as np
import pytest

from losslines.engine.grid import make_grid


def test_default_grid_has_167_points_with_exact_zero():
    grid = make_grid(0.006, 0.5)
    pos = grid.positions
    assert grid.n_points == 167 == pos.size == grid.n_core
    assert pos[grid.zero_index] == 0.0
    assert np.array_equal(pos, -pos[::-1])  # exactly symmetric
    assert np.all(np.abs(pos) <= 0.5) and pos[-1] == 0.006 * 83
    # each point is one product spacing * i, not a cumulative sum
    np.testing.assert_array_equal(pos, 0.006 * np.arange(-83, 84).astype(np.float64))
    assert grid.core_mask.all()


@pytest.mark.parametrize("spacing, half_width, per_side", [(0.004, 0.4, 100), (0.1, 0.3, 3), (0.1, 0.35, 3),
                                                          (0.25, 0.25, 1)])
def test_points_per_side_handles_float_rounding(spacing, half_width, per_side):
    # 0.4/0.004 = 100.00000000000001 and 0.3/0.1 = 2.9999999999999996 in float64
    assert make_grid(spacing, half_width).points_per_side == per_side


def test_enlargement_rings_partition_the_grid():
    grid = make_grid(0.1, 0.3, max_enlargements=2)
    assert grid.n_points == 19 and grid.max_index == 9
    core, r1, r2 = (grid.ring_indices(k) for k in range(3))
    assert core.size == 7 and r1.size == 6 and r2.size == 6
    assert np.array_equal(np.sort(np.concatenate([core, r1, r2])), np.arange(19))
    np.testing.assert_allclose(grid.positions[r1], [-0.6, -0.5, -0.4, 0.4, 0.5, 0.6])
    assert grid.measured_mask(1).sum() == 13 and grid.measured_mask(2).all()
    assert np.array_equal(grid.core_mask, grid.measured_mask(0))
    assert grid.edge_indices(0) == (6, 12) and grid.edge_indices(1) == (3, 15)
    assert grid.positions[grid.zero_index] == 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"spacing": 0.0}, "spacing"), ({"spacing": -0.1}, "spacing"), ({"spacing": float("nan")}, "spacing"),
    ({"spacing": 0.1, "half_width": 0.05}, "half_width"), ({"max_enlargements": -1}, "max_enlargements"),
    ({"max_enlargements": 1.5}, "max_enlargements"),
])
def test_bad_grids_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_grid(**kwargs)


def test_unknown_ring_is_refused():
    grid = make_grid(0.1, 0.3, max_enlargements=1)
    with pytest.raises(ValueError, match="valid rings are 0"):
        grid.ring_indices(2)
