"""Line-to-line distances of min-shifted lines (paper Fig. 3), blockwise and out of core.

Each line is shifted to minimum 0 (``L~_t(s) = L_t(s) - min_s L_t(s)``, the minimum over all its
measured points) and compared on the window points:

    D[t, u] = mean_j |L~_t(s_j) - L~_u(s_j)|      (nats; symmetric, zero diagonal)

Lines share one grid, so points match exactly. Window columns where any line is unmeasured are
dropped for every line so that all D entries average over the same points.

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
from typing import Callable

import numpy as np
from scipy.spatial.distance import cdist

from losslines.analysis.polyfit import window_index

FIRST_LINES = 50
DEFAULT_VIEW = 400
DEFAULT_BLOCK = 1024

Sink = Callable[[int, int, np.ndarray], None]


def shifted_window(position: np.ndarray, losses: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Min-shifted lines on the window points.

    Args:
        position: ``[K]`` grid.
        losses: ``[L, K]`` losses in nats, NaN where not measured.
        window: half-width of the compared window.

    Returns:
        ``(shifted [L, W] float64 with NaN kept, window positions [W])``.
    """
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    idx = window_index(position, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN line stays NaN
        low = np.nanmin(np.where(np.isfinite(position)[None, :], losses, np.nan), axis=1)
    return losses[:, idx] - low[:, None], np.asarray(position)[idx]


def common_columns(shifted: np.ndarray) -> np.ndarray:
    """Bool ``[W]``: window columns measured on every line (the points all D entries use)."""
    return np.isfinite(shifted).all(axis=0)


def dense_distances(shifted: np.ndarray) -> np.ndarray:
    """Oracle: the full ``[L, L]`` matrix by an explicit loop over pairs (small L only)."""
    a = shifted[:, common_columns(shifted)]
    n = a.shape[0]
    out = np.zeros((n, n))
    for t in range(n):
        for u in range(n):
            out[t, u] = np.mean(np.abs(a[t] - a[u]))
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
) -> DistanceSummary:
    """All pairwise distances of min-shifted lines, tile by tile (Fig. 3).

    Peak memory is ``O(block^2 + N W)``, independent of N^2.

    Args:
        shifted: ``[N, W]`` output of :func:`shifted_window`.
        block: tile edge in lines.
        view_size: at most this many lines in the plotting view (a stride of ``ceil(N / V)``).
        sink: called as ``sink(row0, col0, tile)`` for every tile of the full matrix (both
            triangles), e.g. to write it to a zarr array.
    """
    if block < 1 or view_size < 1:
        raise ValueError("block and view_size must be >= 1")
    cols = common_columns(shifted)
    if not cols.any():
        raise ValueError("no window point is measured on every line; cannot compare lines")
    a = np.ascontiguousarray(shifted[:, cols], dtype=np.float64)
    n, width = a.shape
    stride = max(1, math.ceil(n / view_size))
    view_lines = np.arange(0, n, stride)
    view = np.zeros((view_lines.size, view_lines.size))
    n_first = min(FIRST_LINES, n)
    row_sum = np.zeros(n)
    first_sum = rest_sum = 0.0
    for r0 in range(0, n, block):
        r1 = min(n, r0 + block)
        for c0 in range(r0, n, block):
            c1 = min(n, c0 + block)
            tile = cdist(a[r0:r1], a[c0:c1], metric="cityblock") / width
            if c0 == r0:
                np.fill_diagonal(tile, 0.0)
            _accumulate(tile, r0, c0, row_sum, view, view_lines)
            first_sum += _region_sum(tile, r0, c0, 0, n_first)
            rest_sum += _region_sum(tile, r0, c0, n_first, n)
            if sink is not None:
                sink(r0, c0, tile)
            if c0 != r0:
                _accumulate(tile.T, c0, r0, row_sum, view, view_lines)
                first_sum += _region_sum(tile.T, c0, r0, 0, n_first)
                rest_sum += _region_sum(tile.T, c0, r0, n_first, n)
                if sink is not None:
                    sink(c0, r0, tile.T)
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


def _accumulate(tile: np.ndarray, r0: int, c0: int, row_sum: np.ndarray, view: np.ndarray, lines: np.ndarray) -> None:
    row_sum[r0 : r0 + tile.shape[0]] += tile.sum(axis=1)
    rows = lines[(lines >= r0) & (lines < r0 + tile.shape[0])]
    colsel = lines[(lines >= c0) & (lines < c0 + tile.shape[1])]
    if rows.size and colsel.size:
        vr = np.searchsorted(lines, rows)
        vc = np.searchsorted(lines, colsel)
        view[np.ix_(vr, vc)] = tile[np.ix_(rows - r0, colsel - c0)]


def _region_sum(tile: np.ndarray, r0: int, c0: int, lo: int, hi: int) -> float:
    """Sum of the tile's entries whose row and column both lie in ``[lo, hi)``."""
    rs, re = max(lo, r0) - r0, min(hi, r0 + tile.shape[0]) - r0
    cs, ce = max(lo, c0) - c0, min(hi, c0 + tile.shape[1]) - c0
    if rs >= re or cs >= ce:
        return 0.0
    return float(tile[rs:re, cs:ce].sum())
