"""Reading a measured line between its grid points: validity masks and local-parabola values.

A stored line is the loss at the grid positions ``s_j`` (distance along the unit update
direction). Points can be missing: the grid is allocated at its widest and unmeasured
enlargement rings are NaN, in the losses and possibly in ``position`` itself. Every function
here works per line on ``[L, K]`` arrays and treats a point as measured only when both its
position and its loss are finite.

Values between grid points come from the parabola through the three measured points around
the query (exact for quadratic lines; error ``O(h^3 L''')`` otherwise). Queries outside the
measured range return NaN: a line is never extrapolated.
"""

from __future__ import annotations

import numpy as np


def check_grid(position: np.ndarray) -> np.ndarray:
    """Validate a grid ``[K]`` (ascending where finite) and return it as float64.

    Raises:
        ValueError: not 1-d, no finite point, or finite positions not strictly ascending.
    """
    position = np.asarray(position, dtype=np.float64)
    if position.ndim != 1:
        raise ValueError(f"position must be 1-d [K], got shape {position.shape}")
    finite = position[np.isfinite(position)]
    if finite.size == 0:
        raise ValueError("position has no finite grid point")
    if np.any(np.diff(finite) <= 0):
        raise ValueError("finite positions must be strictly ascending (one shared grid per store)")
    return position


def grid_spacing(position: np.ndarray) -> float:
    """Typical spacing h of the grid: the median difference of consecutive finite positions."""
    finite = check_grid(position)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        raise ValueError("the grid needs at least two finite positions to have a spacing")
    return float(np.median(np.diff(finite)))


def valid_mask(position: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """``[L, K]`` bool: the point was measured (finite position and finite loss)."""
    losses = np.atleast_2d(losses)
    if losses.shape[-1] != position.shape[0]:
        raise ValueError(f"losses have {losses.shape[-1]} points but position has {position.shape[0]}")
    return np.isfinite(losses) & np.isfinite(position)[None, :]


def neighbour_indices(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the previous and next measured point of every point, ``-1`` where none.

    Args:
        valid: ``[L, K]`` bool mask of measured points.

    Returns:
        ``(prev, next)``, each ``[L, K]`` int64: ``prev[l, j]`` is the largest measured index
        ``< j`` of line l, ``next[l, j]`` the smallest measured index ``> j``.
    """
    n_lines, k = valid.shape
    idx = np.broadcast_to(np.arange(k), (n_lines, k))
    last = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    first = np.flip(np.minimum.accumulate(np.flip(np.where(valid, idx, k), axis=1), axis=1), axis=1)
    prev = np.full((n_lines, k), -1, dtype=np.int64)
    nxt = np.full((n_lines, k), -1, dtype=np.int64)
    prev[:, 1:] = last[:, :-1]
    nxt[:, :-1] = np.where(first[:, 1:] < k, first[:, 1:], -1)
    return prev, nxt


def parabola_through(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton form of the parabola through three points per row.

    Args:
        x, y: ``[..., 3]`` abscissae (distinct) and values.

    Returns:
        ``(f01, a, x01)``: the parabola is ``y0 + f01 (s - x0) + a (s - x0)(s - x1)``; ``a`` is
        its curvature coefficient (half the second derivative), ``x01 = (x0 + x1) / 2``.
    """
    f01 = (y[..., 1] - y[..., 0]) / (x[..., 1] - x[..., 0])
    f12 = (y[..., 2] - y[..., 1]) / (x[..., 2] - x[..., 1])
    a = (f12 - f01) / (x[..., 2] - x[..., 0])
    return f01, a, 0.5 * (x[..., 0] + x[..., 1])


def loss_at(position: np.ndarray, losses: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Loss of every line at its own step size ``s`` by local parabolic interpolation.

    Args:
        position: ``[K]`` grid (distance along the unit update direction).
        losses: ``[L, K]`` losses in nats, NaN where not measured.
        s: ``[L]`` query step size per line (same unit as ``position``).

    Returns:
        ``[L]`` float64 interpolated losses; NaN where ``s`` is NaN, outside the line's measured
        range, or the line has fewer than three measured points.
    """
    position = check_grid(position)
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    if s.shape[0] != losses.shape[0]:
        raise ValueError(f"s has {s.shape[0]} entries for {losses.shape[0]} lines")
    valid = valid_mask(position, losses)
    prev, nxt = neighbour_indices(valid)
    rows = np.arange(losses.shape[0])
    dist = np.where(valid, np.abs(position[None, :] - np.nan_to_num(s, nan=0.0)[:, None]), np.inf)
    centre = np.argmin(dist, axis=1)
    centre = np.where(prev[rows, centre] < 0, nxt[rows, centre], centre)
    centre = np.where(nxt[rows, np.maximum(centre, 0)] < 0, prev[rows, np.maximum(centre, 0)], centre)
    ok = (centre >= 0) & (valid.sum(axis=1) >= 3) & np.isfinite(s)
    c = np.where(ok, centre, 0)
    lo, hi = prev[rows, c], nxt[rows, c]
    ok &= (lo >= 0) & (hi >= 0)
    lo, hi = np.where(ok, lo, 0), np.where(ok, hi, 0)
    first = np.argmax(valid, axis=1)
    last = valid.shape[1] - 1 - np.argmax(valid[:, ::-1], axis=1)
    ok &= (s >= position[first]) & (s <= position[last])
    idx = np.stack([lo, c, hi], axis=1)
    x = position[idx]
    y = np.take_along_axis(losses, idx, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f01, a, _ = parabola_through(x, y)
        value = y[:, 0] + f01 * (s - x[:, 0]) + a * (s - x[:, 0]) * (s - x[:, 1])
    return np.where(ok, value, np.nan)
