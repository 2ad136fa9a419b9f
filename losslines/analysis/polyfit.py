"""How parabolic a line is: least-squares polynomial fits on a window, their MAE (paper Fig. 4).

For degree k and window ``|s| <= w`` the fit ``p_k`` minimises ``sum_j (p_k(s_j) - L(s_j))^2``
over the measured window points, and ``MAE_k = mean_j |p_k(s_j) - L(s_j)|`` over the same
points. Lines that share their measured window points (the usual case) are solved together
through one pseudo-inverse; lines with missing points in the window are solved one by one.

A line is flagged *not parabolic* when its degree-2 MAE exceeds ``rel_tol`` times the loss
range inside the window (scale-free, so it works for any loss level). Its *kink position* is the
grid point whose second divided difference (an estimate of L'' from the point and its two
measured neighbours, exact for parabolas on any spacing) deviates most from the line's median:
for a smooth line all are about equal, a kink shows up as one spike. Divided differences keep
uneven grids honest (the original code's grids have spacings 0.002 and 0.006 around 0; plain
second differences flagged a kink at 0 on every such line).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from losslines.analysis.interpolate import check_grid, valid_mask

DEFAULT_DEGREES = (1, 2, 3, 4)
DEFAULT_WINDOW = 0.2
DEFAULT_REL_TOL = 0.01


@dataclass(frozen=True)
class PolyFits:
    """Polynomial fits of L lines.

    Attributes:
        degrees: the fitted degrees.
        mae: ``{k: [L]}`` mean absolute error of the degree-k fit on the window, nats.
        coef: ``{k: [L, k + 1]}`` coefficients, highest power first (``numpy.polyval`` order),
            in nats per unit s^power; NaN for lines with fewer than ``k + 1`` window points.
        n_window: ``[L]`` measured points inside the window.
    """

    degrees: tuple[int, ...]
    mae: dict[int, np.ndarray]
    coef: dict[int, np.ndarray]
    n_window: np.ndarray


def window_index(position: np.ndarray, window: float) -> np.ndarray:
    """Indices of the grid points with ``|s| <= window`` (finite positions only)."""
    position = check_grid(position)
    if not window > 0:
        raise ValueError(f"window must be > 0, got {window}")
    idx = np.flatnonzero(np.isfinite(position) & (np.abs(position) <= window * (1 + 1e-12)))
    if idx.size < 2:
        raise ValueError(f"only {idx.size} grid point(s) lie in |s| <= {window}; widen the window")
    return idx


def fit_polynomials(
    position: np.ndarray,
    losses: np.ndarray,
    *,
    degrees: tuple[int, ...] = DEFAULT_DEGREES,
    window: float = DEFAULT_WINDOW,
) -> PolyFits:
    """Least-squares polynomial fits of each line on ``|s| <= window`` (Fig. 4).

    Args:
        position: ``[K]`` grid, distance along the unit update direction.
        losses: ``[L, K]`` losses in nats, NaN where not measured.
        degrees: polynomial degrees (each >= 0).
        window: half-width w of the fit window, same unit as ``position``.
    """
    position = check_grid(position)
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    if any(k < 0 for k in degrees):
        raise ValueError(f"degrees must be >= 0, got {degrees}")
    idx = window_index(position, window)
    s = position[idx]
    y = losses[:, idx]
    ok = valid_mask(s, y)
    full = ok.all(axis=1)
    n_lines = losses.shape[0]
    mae, coef = {}, {}
    for k in degrees:
        c = np.full((n_lines, k + 1), np.nan)
        m = np.full(n_lines, np.nan)
        if full.any() and s.size > k:
            design = np.vander(s, k + 1)
            c[full] = (np.linalg.pinv(design) @ y[full].T).T
            m[full] = np.mean(np.abs(c[full] @ design.T - y[full]), axis=1)
        for line in np.flatnonzero(~full):
            mask = ok[line]
            if mask.sum() > k:
                design = np.vander(s[mask], k + 1)
                c[line] = np.linalg.lstsq(design, y[line, mask], rcond=None)[0]
                m[line] = np.mean(np.abs(design @ c[line] - y[line, mask]))
        mae[k], coef[k] = m, c
    return PolyFits(tuple(degrees), mae, coef, ok.sum(axis=1))


def nonparabolic(
    position: np.ndarray,
    losses: np.ndarray,
    mae2: np.ndarray,
    *,
    window: float = DEFAULT_WINDOW,
    rel_tol: float = DEFAULT_REL_TOL,
) -> tuple[np.ndarray, np.ndarray]:
    """Flag lines that are not parabolic on the window and locate their kink.

    Args:
        position: ``[K]`` grid.
        losses: ``[L, K]`` losses in nats.
        mae2: ``[L]`` degree-2 fit MAE from :func:`fit_polynomials` (same window).
        window: fit window half-width.
        rel_tol: flag when ``mae2 > rel_tol * (max - min of L on the window)``.

    Returns:
        ``(flag [L] bool, kink_position [L])``: the kink position (distance along û) is the
        window point with the most anomalous second divided difference; NaN without three window
        points.
    """
    position = check_grid(position)
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    idx = window_index(position, window)
    y = losses[:, idx]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lines give NaN, handled below
        spread = np.nanmax(y, axis=1) - np.nanmin(y, axis=1)
        flag = np.asarray(mae2) > rel_tol * spread
        kink = np.full(losses.shape[0], np.nan)
        if idx.size >= 3:
            s = position[idx]
            d2 = second_divided_difference(s, y)
            dev = np.abs(d2 - np.nanmedian(d2, axis=1, keepdims=True))
            has = np.isfinite(dev).any(axis=1)
            at = np.argmax(np.where(np.isfinite(dev), dev, -np.inf), axis=1)
            kink = np.where(has, position[idx[1:-1]][at], np.nan)
    return flag & np.isfinite(spread), kink


def second_divided_difference(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``2 f[s_{j-1}, s_j, s_{j+1}]`` of every interior point: ``L''`` for a parabola, on any spacing.

    Args:
        s: ``[P]`` strictly increasing positions.
        y: ``[L, P]`` values (NaN propagates to the points next to it).

    Returns:
        ``[L, P - 2]``, in loss per unit s squared.
    """
    h_left, h_right = np.diff(s)[:-1], np.diff(s)[1:]
    right = (y[:, 2:] - y[:, 1:-1]) / h_right
    left = (y[:, 1:-1] - y[:, :-2]) / h_left
    return 2.0 * (right - left) / (h_left + h_right)
