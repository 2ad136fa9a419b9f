"""The full-batch minimum of a line: grid argmin refined by a local parabola, with its error.

For each line the grid argmin ``j*`` over the measured points is refined to the vertex of the
parabola through ``j*`` and its measured neighbours (paper: ``s_opt = argmin_s L(s)``; the
original stopped at the grid, ±spacing). The refinement's own error is estimated by a second,
independent vertex: the least-squares parabola through the five measured points around
``j*``; ``s_opt_err = |vertex_3 - vertex_5|`` is 0 for an exactly quadratic line and grows with
the cubic part of the line near its minimum. Minima on the edge of the measured range cannot be
refined (the true minimum may lie outside: the case for interval enlargement) and are flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from losslines.analysis.interpolate import check_grid, neighbour_indices, parabola_through, valid_mask


@dataclass(frozen=True)
class LineMinimum:
    """Minimum of each of L lines.

    Attributes:
        s_opt: ``[L]`` refined minimiser (distance along û); the grid argmin where not refinable;
            NaN for a line without measured points.
        s_grid: ``[L]`` grid argmin.
        s_opt_err: ``[L]`` estimated error of ``s_opt`` (|3-point - 5-point vertex|); NaN where
            fewer than five points surround the minimum or it sits on an edge.
        loss_min: ``[L]`` loss at the refined minimum (value of the local parabola), nats.
        at_edge: ``[L]`` bool, the grid argmin is the first or last measured point.
        refined: ``[L]`` bool, the parabola refinement was applied (interior and convex).
    """

    s_opt: np.ndarray
    s_grid: np.ndarray
    s_opt_err: np.ndarray
    loss_min: np.ndarray
    at_edge: np.ndarray
    refined: np.ndarray


def find_minimum(position: np.ndarray, losses: np.ndarray) -> LineMinimum:
    """Refined minimum of every line (Fig. 6's s_opt).

    Args:
        position: ``[K]`` grid positions, ascending, NaN allowed (unmeasured rings).
        losses: ``[L, K]`` (or ``[K]``) losses in nats, NaN where not measured.

    Returns:
        :class:`LineMinimum` with ``[L]`` fields.
    """
    position = check_grid(position)
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    n_lines = losses.shape[0]
    valid = valid_mask(position, losses)
    has_any = valid.any(axis=1)
    rows = np.arange(n_lines)
    j = np.argmin(np.where(valid, losses, np.inf), axis=1)
    prev, nxt = neighbour_indices(valid)
    lo, hi = prev[rows, j], nxt[rows, j]
    interior = has_any & (lo >= 0) & (hi >= 0)
    s_grid = np.where(has_any, position[j], np.nan)
    loss_grid = np.where(has_any, losses[rows, j], np.nan)

    idx3 = np.stack([np.where(interior, lo, j), j, np.where(interior, hi, j)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x3 = position[idx3]
        y3 = np.take_along_axis(losses, idx3, axis=1)
        f01, a, x01 = parabola_through(x3, y3)
        vertex3 = x01 - f01 / (2.0 * a)
        value3 = y3[:, 0] + f01 * (vertex3 - x3[:, 0]) + a * (vertex3 - x3[:, 0]) * (vertex3 - x3[:, 1])
    refined = interior & (a > 0) & np.isfinite(vertex3)
    s_opt = np.where(refined, vertex3, s_grid)
    loss_min = np.where(refined, value3, loss_grid)

    lo2 = np.where(interior, prev[rows, np.where(interior, lo, 0)], -1)
    hi2 = np.where(interior, nxt[rows, np.where(interior, hi, 0)], -1)
    five = refined & (lo2 >= 0) & (hi2 >= 0)
    idx5 = np.stack([np.where(five, lo2, j), idx3[:, 0], j, idx3[:, 2], np.where(five, hi2, j)], axis=1)
    vertex5 = _lsq_vertex(position[idx5], np.take_along_axis(losses, idx5, axis=1), five)
    s_opt_err = np.where(five, np.abs(vertex3 - vertex5), np.nan)
    at_edge = has_any & ~interior
    return LineMinimum(s_opt, s_grid, s_opt_err, loss_min, at_edge, refined)


def _lsq_vertex(x: np.ndarray, y: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Vertex of the least-squares parabola through each row of ``x, y`` ``[L, P]``."""
    out = np.full(x.shape[0], np.nan)
    if not use.any():
        return out
    xs, ys = x[use], y[use]
    centre = xs[:, xs.shape[1] // 2 : xs.shape[1] // 2 + 1]
    scale = np.maximum(np.ptp(xs, axis=1, keepdims=True), np.finfo(float).tiny)
    t = (xs - centre) / scale
    design = np.stack([np.ones_like(t), t, t * t], axis=-1)  # [n, P, 3]
    gram = np.einsum("npi,npj->nij", design, design)
    rhs = np.einsum("npi,np->ni", design, ys)
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex_t = -coef[:, 1] / (2.0 * coef[:, 2])
    out[use] = centre[:, 0] + scale[:, 0] * vertex_t
    return out
