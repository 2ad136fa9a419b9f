"""Polynomial fits (Fig. 4): exact parabolas fit with MAE 0, a kink is detected and located."""

import numpy as np
import pytest

from losslines.analysis.polyfit import fit_polynomials, nonparabolic, second_divided_difference, window_index

GRID = np.round(np.arange(-83, 84) * 0.006, 12)


def test_exact_parabola_mae_zero_from_degree_two_and_coefficients_recovered():
    rng = np.random.default_rng(0)
    a, b, c = rng.uniform(1, 5, 10), rng.uniform(-3, 0, 10), rng.uniform(1, 2, 10)
    losses = a[:, None] * GRID**2 + b[:, None] * GRID + c[:, None]
    fits = fit_polynomials(GRID, losses, window=0.2)
    assert np.all(fits.mae[1] > 1e-3)  # a line cannot fit a parabola
    for k in (2, 3, 4):
        np.testing.assert_allclose(fits.mae[k], 0.0, atol=1e-12)
    np.testing.assert_allclose(fits.coef[2], np.stack([a, b, c], axis=1), rtol=1e-9)
    np.testing.assert_allclose(fits.coef[4][:, :2], 0.0, atol=1e-7)
    assert (fits.n_window == window_index(GRID, 0.2).size).all()


def test_fit_matches_numpy_polyfit_oracle_with_missing_points():
    rng = np.random.default_rng(1)
    losses = np.cos(3 * GRID)[None] + 0.01 * rng.standard_normal((3, GRID.size))
    losses[1, 70] = np.nan  # one line with a hole inside the window: solved on its own
    fits = fit_polynomials(GRID, losses, window=0.2)
    for line in range(3):
        mask = (np.abs(GRID) <= 0.2) & np.isfinite(losses[line])
        for k in (1, 2, 3, 4):
            ref = np.polyfit(GRID[mask], losses[line, mask], k)
            np.testing.assert_allclose(fits.coef[k][line], ref, rtol=1e-6, atol=1e-9)
            mae = np.mean(np.abs(np.polyval(ref, GRID[mask]) - losses[line, mask]))
            np.testing.assert_allclose(fits.mae[k][line], mae, rtol=1e-6)


def test_known_kink_is_detected_and_located():
    kink_at = GRID[95]  # 0.072
    smooth = 3.0 * GRID**2 - GRID + 2.0
    kinked = smooth + 1.5 * np.abs(GRID - kink_at)
    losses = np.stack([smooth, kinked])
    mae2 = fit_polynomials(GRID, losses, window=0.2).mae[2]
    flag, where = nonparabolic(GRID, losses, mae2, window=0.2)
    assert flag.tolist() == [False, True]
    assert abs(where[1] - kink_at) < 1e-12


def test_window_validation():
    with pytest.raises(ValueError, match="window"):
        fit_polynomials(GRID, np.zeros((1, GRID.size)), window=0.0)
    with pytest.raises(ValueError, match="widen"):
        window_index(GRID, 0.001)


def _original_grid(si: float = 0.5, res: float = 0.006) -> np.ndarray:
    """Ring 0 of the original code: two half-lattices, so 0's neighbours are -0.002 and +0.006."""
    return np.concatenate([np.arange(-si, 0, res), np.arange(0, si, res)])


def test_no_kink_is_found_at_zero_on_the_original_uneven_grid():
    """Regression: plain second differences on the original's grid (spacings 0.002 and 0.006
    around 0) put a 'kink' at s = 0 on every parabola."""
    s = _original_grid()
    assert np.diff(s).min() < 0.003 < np.diff(s).max()  # the grid is uneven around 0
    losses = np.stack([2.0 - 0.8 * s + 3.0 * s**2, 1.0 + 0.1 * s + 0.5 * s**2 + 0.05 * s**3])
    flag, kink = nonparabolic(s, losses, np.zeros(2), window=0.2)
    d2 = second_divided_difference(s[np.abs(s) <= 0.2], losses[:, np.abs(s) <= 0.2])
    np.testing.assert_allclose(d2[0], 6.0, rtol=1e-7)  # L'' of the parabola at every point, uneven spacing or not
    assert not flag.any()
    # a cubic's L'' = 1 + 0.3 s deviates most from its median at the window's edge
    assert abs(kink[1]) > 0.15
    window = s[np.abs(s) <= 0.2]
    y = losses[1, np.abs(s) <= 0.2]
    plain = y[:-2] - 2 * y[1:-1] + y[2:]  # what the detector took before: its spike sits next to 0
    assert abs(window[1:-1][np.argmax(np.abs(plain - np.median(plain)))]) < 0.01


def test_a_real_kink_is_located_on_the_original_uneven_grid():
    s = _original_grid()
    losses = (1.0 + 0.5 * s**2 + 0.8 * np.abs(s - 0.1))[None, :]  # a ReLU-like kink at s = 0.1
    _, kink = nonparabolic(s, losses, np.zeros(1), window=0.2)
    assert abs(kink[0] - 0.1) <= 0.006
