"""Line-to-line distances of min-shifted lines (paper Fig. 3), blockwise and out of core.

Each line is shifted to minimum 0 (``L~_t(s) = L_t(s) - min_s L_t(s)``, the minimum over all its
measured points) and compared on the window points:

    D[t, u] = mean_j |L~_t(s_j) - L~_u(s_j)|      (nats; symmetric, zero diagonal)

Lines share one grid, so points match exactly. Window columns where any line is unmeasured are
dropped for every line so that all D entries average over the same points. On an uneven grid
(the original code's, say: spacings 0.002 and 0.006 around 0) the mean is weighted by each
point's share of the window (:func:`point_weights`), so it approximates the mean over s, not
over points; on an even grid every weight is 1 and the plain mean is taken.

The N x N matrix is never held in memory: :func:`blockwise_distances` walks the upper triangle
in ``block x block`` tiles (``scipy.spatial.distance.cdist`` with the city-block metric, C
speed, no ``[n, m, W]`` temporaries), mirrors each tile, hands it to an optional ``sink`` (which
can write it to disk) and keeps only O(N) summaries plus a strided view for plotting.
:func:`dense_distances` is the obvious oracle.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from scipy.spatial.distance import cdist

from losslines.analysis.polyfit import window_index

FIRST_LINES = 50
DEFAULT_VIEW = 400
DEFAULT_BLOCK = 1024

Sink = Callable[[int, int, np.ndarray], None]


def shifted_window(position: np.ndarray, losses: np.ndarray, window: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-shifted lines on the window points.

    Args:
        position: ``[K]`` grid.
        losses: ``[L, K]`` losses in nats, NaN where not measured.
        window: half-width of the compared window, or the window's grid indices themselves.

    Returns:
        ``(shifted [L, W] float64 with NaN kept, window positions [W])``.
    """
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    idx = np.asarray(window) if np.ndim(window) == 1 else window_index(position, float(window))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN line stays NaN
        low = np.nanmin(np.where(np.isfinite(position)[None, :], losses, np.nan), axis=1)
    return losses[:, idx] - low[:, None], np.asarray(position)[idx]


def common_columns(shifted: np.ndarray) -> np.ndarray:
    """Bool ``[W]``: window columns measured on every line (the points all D entries use)."""
    return np.isfinite(shifted).all(axis=0)


def point_weights(position: np.ndarray) -> np.ndarray | None:
    """``[P]`` weights of ascending points in a mean over s: each point's cell (half the distance to
    each neighbour, the whole distance at the ends), scaled to mean 1; None on an even grid
    (spacings equal to 1e-6 relative), where the plain mean is the weighted one."""
    s = np.asarray(position, dtype=np.float64)
    if s.size < 3:
        return None
    h = np.diff(s)
    if h.max() - h.min() <= 1e-6 * h.max():
        return None
    cells = np.concatenate([[h[0]], (h[:-1] + h[1:]) / 2, [h[-1]]])
    return cells * (s.size / cells.sum())


def dense_distances(shifted: np.ndarray, position: np.ndarray | None = None) -> np.ndarray:
    """Oracle: the full ``[L, L]`` matrix by an explicit loop over pairs (small L only); with the
    window ``position``, weighted by :func:`point_weights` on an uneven grid."""
    cols = common_columns(shifted)
    a = shifted[:, cols]
    w = point_weights(np.asarray(position)[cols]) if position is not None else None
    n = a.shape[0]
    out = np.zeros((n, n))
    for t in range(n):
        for u in range(n):
            out[t, u] = np.average(np.abs(a[t] - a[u]), weights=w)
    return out


@dataclass(frozen=True)
class DistanceSummary:
    """Summaries of the distance matrix that fit in O(N) memory.

    Attributes:
        n_lines: N, lines compared.
        n_points: window points used per distance.
        consecutive: ``[N - 1]`` ``D[t, t + 1]``.
        row_mean: ``[N]`` mean distance of each line to all others (diagonal excluded).
        first: ``[F, F]`` the matrix of the first ``F = min(50, N)`` lines.
        view: ``[V, V]`` the matrix at lines ``view_lines`` (every ``stride``-th line).
        view_lines: ``[V]`` line indices (positions in the analysed sequence) of the view.
        mean_all: mean of D over all pairs t != u.
        mean_first: mean over pairs among the first F lines.
        mean_rest: mean over pairs among the lines after the first F (NaN if fewer than 2).
    """

    n_lines: int
    n_points: int
    consecutive: np.ndarray
    row_mean: np.ndarray
    first: np.ndarray
    view: np.ndarray
    view_lines: np.ndarray
    mean_all: float
    mean_first: float
    mean_rest: float


def blockwise_distances(
    shifted: np.ndarray,
    *,
    block: int = DEFAULT_BLOCK,
    view_size: int = DEFAULT_VIEW,
    sink: Sink | None = None,
    map_tiles: Callable[[Callable, list], list] | None = None,
    position: np.ndarray | None = None,
) -> DistanceSummary:
    """All pairwise distances of min-shifted lines, tile by tile (Fig. 3).

    Peak memory is ``O(block^2 + N W)``, independent of N^2.

    Args:
        shifted: ``[N, W]`` output of :func:`shifted_window`.
        block: tile edge in lines.
        view_size: at most this many lines in the plotting view (a stride of ``ceil(N / V)``).
        sink: called as ``sink(row0, col0, tile)`` for every tile of the full matrix (both
            triangles), e.g. to write it to a zarr array.
        map_tiles: ``map(fn, tiles) -> [fn(tile) ...]`` in order, e.g. an
            ``analysis.parallel.Executor``'s ``map``: the tiles' summaries are computed there
            (in parallel) and combined here in tile order, so the result is the same bit for bit.
            Ignored with a ``sink`` (the tiles are then computed here, one after another).
        position: ``[W]`` the window positions (from :func:`shifted_window`): on an uneven grid
            each point is weighted by its share of the window (:func:`point_weights`).
    """
    if block < 1 or view_size < 1:
        raise ValueError("block and view_size must be >= 1")
    cols = common_columns(shifted)
    if not cols.any():
        raise ValueError("no window point is measured on every line; cannot compare lines")
    a = np.ascontiguousarray(shifted[:, cols], dtype=np.float64)
    weights = point_weights(np.asarray(position)[cols]) if position is not None else None
    if weights is not None:  # a weighted mean of |a_t - a_u| = the plain mean of the scaled columns
        a = a * weights[None, :]
    n, width = a.shape
    stride = max(1, math.ceil(n / view_size))
    view_lines = np.arange(0, n, stride)
    view = np.zeros((view_lines.size, view_lines.size))
    n_first = min(FIRST_LINES, n)
    row_sum = np.zeros(n)
    first_sum = rest_sum = 0.0
    tiles = [(r0, c0) for r0 in range(0, n, block) for c0 in range(r0, n, block)]
    if sink is None and map_tiles is not None:  # summaries of every tile, computed anywhere, combined in order
        summaries = map_tiles(partial(_tile_summary, a, block=block, n_first=n_first, view_lines=view_lines), tiles)
    else:
        summaries = (_tile_summary(a, rc, block=block, n_first=n_first, view_lines=view_lines, sink=sink) for rc in tiles)
    for parts in summaries:  # the upper tile, then its mirror, as (row0, row sums, first, rest, view entries)
        for r0, rows, first, rest, (vr, vc, values) in parts:
            row_sum[r0:r0 + rows.size] += rows
            first_sum += first
            rest_sum += rest
            view[np.ix_(vr, vc)] = values
    consecutive = np.mean(np.abs(np.diff(a, axis=0)), axis=1)
    n_rest = n - n_first
    return DistanceSummary(
        n_lines=n,
        n_points=width,
        consecutive=consecutive,
        row_mean=row_sum / max(n - 1, 1),
        first=view_first(a[:n_first]),
        view=view,
        view_lines=view_lines,
        mean_all=float(row_sum.sum() / _pairs(n)) if n > 1 else float("nan"),
        mean_first=float(first_sum / _pairs(n_first)) if n_first > 1 else float("nan"),
        mean_rest=float(rest_sum / _pairs(n_rest)) if n_rest > 1 else float("nan"),
    )


def view_first(a: np.ndarray) -> np.ndarray:
    """Full distance matrix of a few lines ``[F, W]`` (no NaN) -> ``[F, F]``."""
    if a.shape[0] == 0:
        return np.zeros((0, 0))
    out = cdist(a, a, metric="cityblock") / a.shape[1]
    np.fill_diagonal(out, 0.0)
    return out


def _pairs(m: int) -> int:
    """Ordered pairs t != u among m lines."""
    return m * (m - 1)


def _tile_summary(a: np.ndarray, rc: tuple[int, int], *, block: int, n_first: int, view_lines: np.ndarray,
                  sink: Sink | None = None) -> list[tuple]:
    """The tile at ``rc`` of the upper triangle and its mirror, summarised: per orientation
    ``(row0, row sums, sum over the first lines, sum over the rest, view entries)``."""
    r0, c0 = rc
    n, width = a.shape
    r1, c1 = min(n, r0 + block), min(n, c0 + block)
    tile = cdist(a[r0:r1], a[c0:c1], metric="cityblock") / width
    if c0 == r0:
        np.fill_diagonal(tile, 0.0)
    out = []
    for t, t0, u0 in ((tile, r0, c0),) if c0 == r0 else ((tile, r0, c0), (tile.T, c0, r0)):
        out.append((t0, t.sum(axis=1), _region_sum(t, t0, u0, 0, n_first), _region_sum(t, t0, u0, n_first, n),
                     _view_entries(t, t0, u0, view_lines)))
        if sink is not None:
            sink(t0, u0, t)
    return out


def _view_entries(tile: np.ndarray, r0: int, c0: int, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tile's entries that the plotting view keeps: ``(view rows, view columns, values)``."""
    rows = lines[(lines >= r0) & (lines < r0 + tile.shape[0])]
    colsel = lines[(lines >= c0) & (lines < c0 + tile.shape[1])]
    vr, vc = np.searchsorted(lines, rows), np.searchsorted(lines, colsel)
    return vr, vc, tile[np.ix_(rows - r0, colsel - c0)]


def _region_sum(tile: np.ndarray, r0: int, c0: int, lo: int, hi: int) -> float:
    """Sum of the tile's entries whose row and column both lie in ``[lo, hi)``."""
    rs, re = max(lo, r0) - r0, min(hi, r0 + tile.shape[0]) - r0
    cs, ce = max(lo, c0) - c0, min(hi, c0 + tile.shape[1]) - c0
    if rs >= re or cs >= ce:
        return 0.0
    return float(tile[rs:re, cs:ce].sum())
