"""Bands, smoothing and all-directions statistics against obvious oracles."""

import numpy as np
import pytest

from losslines.analysis.bands import batch_bands
from losslines.analysis.direction_stats import direction_stats
from losslines.analysis.smoothing import moving_average

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def test_moving_average_matches_loop_and_skips_nan():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    x[[3, 10, 11]] = np.nan
    for w in (1, 4, 25):
        got = moving_average(x, w)
        for t in range(x.size):
            win = x[max(0, t - w // 2) : max(0, t - w // 2 + w)]
            want = np.nanmean(win) if np.isfinite(win).any() else np.nan
            np.testing.assert_allclose(got[t], want, equal_nan=True)
    with pytest.raises(ValueError):
        moving_average(x, 0)


def test_bands_are_ordered_and_contain_the_draws():
    rng = np.random.default_rng(0)
    per_sample = rng.uniform(0, 3, size=(GRID.size, 200))
    bands = batch_bands(per_sample, 16, 30, np.random.default_rng(1))
    assert bands.values.shape == (5, GRID.size)
    assert np.all(np.diff(bands.values, axis=0) >= 0)
    full = batch_bands(per_sample, 200, 3, np.random.default_rng(1))  # b = N: every draw is the mean
    np.testing.assert_allclose(full.values, np.tile(per_sample.mean(1), (5, 1)))
    with pytest.raises(ValueError, match="batch_size"):
        batch_bands(per_sample, 201, 3, rng)


def test_direction_stats_on_known_parabolas():
    vertex = np.array([[0.1, 0.2, 0.15]])
    norm = np.array([[1.0, 2.0, 1.5]])
    losses = 2.0 * (GRID[None, None, :] - vertex[..., None]) ** 2 + 1.0
    st = direction_stats(GRID, losses, norm, window=0.2)
    np.testing.assert_allclose(st.s_opt, vertex, atol=1e-12)
    np.testing.assert_allclose(st.ratio, vertex / norm, atol=1e-12)
    np.testing.assert_allclose(st.mae2, 0, atol=1e-12)
    assert st.mean_distance[0] > 0
    same = direction_stats(GRID, np.repeat(losses[:, :1], 3, axis=1), norm, window=0.2)
    assert same.mean_distance[0] == pytest.approx(0.0, abs=1e-12)
