"""Distance matrices (Fig. 3): symmetric, zero diagonal, blockwise == dense oracle."""

import numpy as np
import pytest

from losslines.analysis.distances import blockwise_distances, dense_distances, point_weights, shifted_window

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def _lines(n, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(1, 5, n)
    v = rng.uniform(-0.2, 0.2, n)
    return a[:, None] * (GRID - v[:, None]) ** 2 + rng.uniform(0, 2, n)[:, None]


@pytest.mark.parametrize("n,block,view", [(7, 3, 100), (60, 16, 25), (61, 64, 400), (2, 1, 1)])
def test_blockwise_equals_dense(n, block, view):
    lines = _lines(n)
    lines[3 % n, 160:] = np.nan  # an unmeasured ring outside the window does not matter
    shifted, _ = shifted_window(GRID, lines, 0.2)
    dense = dense_distances(shifted)
    tiles = np.full((n, n), np.nan)

    def sink(r0, c0, tile):
        tiles[r0 : r0 + tile.shape[0], c0 : c0 + tile.shape[1]] = tile

    s = blockwise_distances(shifted, block=block, view_size=view, sink=sink)
    np.testing.assert_allclose(tiles, dense, atol=1e-12)
    np.testing.assert_allclose(dense, dense.T, atol=0)
    assert np.all(np.diag(dense) == 0)
    np.testing.assert_allclose(s.view, dense[np.ix_(s.view_lines, s.view_lines)], atol=1e-12)
    f = min(50, n)
    np.testing.assert_allclose(s.first, dense[:f, :f], atol=1e-12)
    np.testing.assert_allclose(s.consecutive, np.diag(dense, 1), atol=1e-12)
    np.testing.assert_allclose(s.row_mean, dense.sum(1) / max(n - 1, 1), atol=1e-12)
    off = ~np.eye(n, dtype=bool)
    assert s.mean_all == pytest.approx(dense[off].mean())
    assert s.mean_first == pytest.approx(dense[:f, :f][off[:f, :f]].mean() if f > 1 else np.nan, nan_ok=True)
    if n - f > 1:
        assert s.mean_rest == pytest.approx(dense[f:, f:][off[f:, f:]].mean())
    assert s.view_lines.size <= view


def test_min_shift_makes_identical_shapes_distance_zero():
    base = 3.0 * (GRID - 0.05) ** 2
    shifted, _ = shifted_window(GRID, np.stack([base + 1.0, base + 2.5]), 0.2)
    assert dense_distances(shifted)[0, 1] == pytest.approx(0.0, abs=1e-12)


def test_hole_in_window_drops_the_column_for_everyone():
    lines = _lines(4)
    lines[2, 83] = np.nan
    shifted, _ = shifted_window(GRID, lines, 0.2)
    s = blockwise_distances(shifted)
    assert s.n_points == shifted.shape[1] - 1
    assert np.isfinite(s.row_mean).all()


def test_an_uneven_grid_weights_each_point_by_its_share_of_the_window():
    """Crowded points (the original code's grid has 0.002 and 0.006 spacings around 0) must not
    weigh more than the rest: the distance approximates a mean over s, not over points."""
    even = np.linspace(-0.3, 0.3, 101)                                  # spacing 0.006
    crowded = np.sort(np.concatenate([even, np.linspace(0.0005, 0.0055, 11)]))  # 11 more points in one cell

    def distance(s):
        lines = np.stack([1.0 + s**2, 1.0 + s**2 + 0.3 * np.abs(s)])   # |difference| = 0.3 |s|, 0 at 0
        shifted, window = shifted_window(s, lines, 0.2)
        summary = blockwise_distances(shifted, block=1, position=window)
        np.testing.assert_allclose(summary.consecutive[0], dense_distances(shifted, window)[0, 1], rtol=1e-12)
        return summary.consecutive[0], float(np.mean(np.abs(shifted[0] - shifted[1])))

    (weighted_even, plain_even), (weighted_crowded, plain_crowded) = distance(even), distance(crowded)
    assert weighted_even == plain_even  # an even grid: the plain mean, bit for bit
    assert abs(weighted_crowded - weighted_even) < 1e-3 * weighted_even
    assert abs(plain_crowded - plain_even) > 0.05 * plain_even  # what the unweighted mean did


def test_an_even_grid_takes_the_plain_mean():
    s = np.linspace(-0.5, 0.5, 101)
    assert point_weights(s[np.abs(s) <= 0.2]) is None
