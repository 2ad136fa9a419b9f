"""Chebyshev nodes and barycentric interpolation: a line from few evaluations, with a measured error.

The reduced-evaluation mode (``measure.nodes = "chebyshev"``, docs/design.md "The measurement")
evaluates a line on an interval ``[a, b]`` of the grid only at the ``n + 1`` Chebyshev–Lobatto
points (the extrema of the Chebyshev polynomial T_n, endpoints included)

    x_j = (a + b)/2 + (b − a)/2 · sin(π (2j − n) / (2n)),   j = 0 … n   (ascending),

and reconstructs every grid point of the interval with the barycentric formula of the second
kind (Berrut & Trefethen, "Barycentric Lagrange interpolation", SIAM Review 46, 2004, eq. 5.3)

    p(x) = Σ_j w_j f_j / (x − x_j)  /  Σ_j w_j / (x − x_j),   w_j = (−1)^j δ_j,  δ_0 = δ_n = 1/2, else 1,

the unique polynomial of degree ≤ n through the nodes, numerically stable for these nodes (its
Lebesgue constant grows like (2/π) log n). The sine form makes the nodes exactly symmetric on a
symmetric interval, so with n even ``x_{n/2} = 0.0`` exactly: s = 0 is evaluated, never
interpolated. For a function analytic near the interval the error falls geometrically with n;
for a function with a kink (a ReLU pre-activation crossing zero at some s) only like 1/n — the
reason every line's error is measured at check points (:func:`check_indices`) and a line whose
error is too large is measured densely instead.

Pure numerics: arrays in, arrays out (float64).
"""

from __future__ import annotations

import numpy as np

# the golden ratio's fractional part: check points of consecutive lines spread over the gaps
_GOLDEN = 0.6180339887498949


def lobatto_nodes(a: float, b: float, n_nodes: int) -> np.ndarray:
    """The ``n_nodes`` Chebyshev–Lobatto points of ``[a, b]``, ascending, endpoints exact.

    Args:
        a, b: the interval, ``a < b`` (units of s).
        n_nodes: ``n + 1 >= 2`` nodes (odd on a symmetric interval puts 0.0 exactly on a node).

    Returns:
        ``[n_nodes]`` float64.

    Raises:
        ValueError: fewer than 2 nodes or an empty interval.
    """
    if n_nodes < 2 or not a < b:
        raise ValueError(f"Chebyshev-Lobatto nodes need n_nodes >= 2 and a < b, got {n_nodes} on [{a}, {b}]")
    n = n_nodes - 1
    j = np.arange(n_nodes, dtype=np.float64)
    x = 0.5 * (a + b) + 0.5 * (b - a) * np.sin(np.pi * (2 * j - n) / (2 * n))
    x[0], x[-1] = a, b
    return x


def lobatto_weights(n_nodes: int) -> np.ndarray:
    """Barycentric weights ``w_j = (−1)^j δ_j`` of the Chebyshev–Lobatto points (any interval:
    the common factor cancels in the second-kind formula). ``[n_nodes]`` float64."""
    w = np.where(np.arange(n_nodes) % 2 == 0, 1.0, -1.0)
    w[0] *= 0.5
    w[-1] *= 0.5
    return w


def barycentric_matrix(nodes: np.ndarray, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The interpolation operator as a matrix: ``P @ f`` is the interpolant at ``x``.

    Linear in the node values, so one matrix serves the mean loss ``[n_nodes]`` and the
    per-sample losses ``[n_nodes, N]`` alike, and the mean of interpolated per-sample losses is
    the interpolated mean. A target equal to a node gets that node's value exactly (a unit row).

    Args:
        nodes: ``[n]`` distinct node positions; weights: their barycentric weights ``[n]``.
        x: ``[k]`` target positions.

    Returns:
        ``[k, n]`` float64.
    """
    nodes, x = np.asarray(nodes, dtype=np.float64), np.asarray(x, dtype=np.float64)
    diff = x[:, None] - nodes[None, :]
    exact = diff == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        c = weights[None, :] / diff
        p = c / c.sum(axis=1, keepdims=True)
    hit = exact.any(axis=1)
    p[hit] = exact[hit].astype(np.float64)
    return p


def check_indices(positions: np.ndarray, nodes: np.ndarray, n_checks: int, phase: float = 0.0) -> np.ndarray:
    """Grid points where the interpolant is checked against a direct evaluation.

    The ``n_checks`` targets are midpoints of node gaps spread over the interval — gap
    ``floor((i + phase)·n / n_checks)`` for ``i = 0 … n_checks−1`` — where the interpolation
    error of a smooth function peaks; each takes the nearest grid point that is not a node and
    not taken yet. ``phase`` in [0, 1) moves the gaps (:func:`line_phase` per line), so that over
    many lines every part of the interval is checked.

    Args:
        positions: ``[K]`` ascending grid positions of the interval.
        nodes: ``[n + 1]`` ascending nodes on it.
        n_checks: number of check points (at most the grid points that are not nodes).
        phase: in [0, 1).

    Returns:
        ``[n_checks]`` ascending int64 indices into ``positions``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    free = ~np.isin(positions, nodes)
    n_checks = min(int(n_checks), int(free.sum()))
    gaps = nodes.size - 1
    chosen: list[int] = []
    for i in range(n_checks):
        g = min(gaps - 1, int(np.floor((i + phase) * gaps / n_checks)))
        mid = 0.5 * (nodes[g] + nodes[g + 1])
        dist = np.where(free, np.abs(positions - mid), np.inf)
        k = int(np.argmin(dist))
        chosen.append(k)
        free[k] = False
    return np.sort(np.asarray(chosen, dtype=np.int64))


def line_phase(step: int) -> float:
    """The check points' phase of the line of training step ``step``: ``frac(step · 0.618…)``,
    deterministic (a resumed run checks the same points) and evenly spread over steps."""
    return float((int(step) * _GOLDEN) % 1.0)


def relative_error(interpolated: np.ndarray, measured: np.ndarray, scale: np.ndarray | None = None) -> float:
    """``max |interpolated − measured| / max(|measured|, scale)`` over every entry (NaN if none).

    Args:
        interpolated, measured: the same shape (``[k]`` mean losses, or ``[k, N]`` per-sample).
        scale: broadcastable floor of the denominator (for per-sample losses the split's mean
            loss at the point, ``[k, 1]``: a sample's loss near 0 is judged against the line's
            size, not against float32 rounding of its own); None: the measured value alone.

    Returns:
        The largest relative error, a float; non-finite values count as an infinite error
        unless both agree exactly (NaN where both are NaN: a diverged line).
    """
    a, b = np.asarray(interpolated, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if a.size == 0:
        return float("nan")
    den = np.abs(b) if scale is None else np.maximum(np.abs(b), np.abs(np.asarray(scale, dtype=np.float64)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        err = np.abs(a - b) / np.maximum(den, np.finfo(np.float64).tiny)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    err = np.where(same, 0.0, np.where(np.isfinite(err), err, np.inf))
    return float(err.max())


class IntervalPlan:
    """How one contiguous stretch of grid points is evaluated and reconstructed.

    Attributes:
        indices: ``[I]`` grid indices of the interval, ascending.
        points: ``[k]`` positions to evaluate: the nodes, then the check points (a dense plan:
            the interval's own grid points, nothing to check).
        n_nodes: how many of ``points`` are nodes.
        checks: ``[c]`` positions within the interval (0 … I−1) of the check points, whose
            values are ``points[n_nodes:]``.
        on_grid: ``[g]`` positions within the interval of the grid points that are nodes (the
            ends, s = 0 on the core; every point of a dense plan), and ``node_of``: ``[g]``
            which node each is.
        matrix: ``[I, n_nodes]`` barycentric operator from node values to the interval's points.
    """

    def __init__(self, indices, points, n_nodes, checks, on_grid, node_of, matrix):
        self.indices, self.points, self.n_nodes, self.checks = indices, points, n_nodes, checks
        self.on_grid, self.node_of, self.matrix = on_grid, node_of, matrix

    @property
    def dense(self) -> bool:
        """Is every grid point of the interval evaluated (too few points for nodes to save any)?"""
        return self.on_grid.size == self.indices.size

    @property
    def measured(self) -> np.ndarray:
        """``[I]`` bool: the grid points evaluated directly (nodes on the grid, check points)."""
        out = np.zeros(self.indices.size, dtype=bool)
        out[self.on_grid] = True
        out[self.checks] = True
        return out


def plan_interval(positions: np.ndarray, indices: np.ndarray, n_nodes: int, n_checks: int,
                  phase: float = 0.0) -> IntervalPlan:
    """The plan of the grid points ``positions[indices]`` (contiguous, ascending): ``n_nodes``
    Chebyshev–Lobatto nodes of ``[positions[indices[0]], positions[indices[-1]]]`` and ``n_checks``
    check points (:func:`check_indices`); dense when that is not fewer than the points themselves.
    """
    indices = np.asarray(indices, dtype=np.int64)
    grid = np.asarray(positions, dtype=np.float64)[indices]
    if n_nodes + n_checks >= indices.size:
        every = np.arange(indices.size)
        return IntervalPlan(indices, grid.copy(), indices.size, np.zeros(0, dtype=np.int64), every, every,
                            np.eye(indices.size))
    nodes = lobatto_nodes(grid[0], grid[-1], n_nodes)
    checks = check_indices(grid, nodes, n_checks, phase)
    on_grid = np.flatnonzero(np.isin(grid, nodes))
    node_of = np.searchsorted(nodes, grid[on_grid])
    return IntervalPlan(indices, np.concatenate([nodes, grid[checks]]), n_nodes, checks, on_grid, node_of,
                        barycentric_matrix(nodes, lobatto_weights(n_nodes), grid))


class Reconstruction:
    """One split on one interval, reconstructed from its evaluated points (:func:`reconstruct`).

    Attributes:
        loss: ``[I]`` float64 mean loss: measured where the plan evaluated the grid point, else
            the interpolant.
        sample_loss: ``[I, N]`` float64 per-sample losses, the same way.
        accuracy: ``[I]`` float64, measured where the plan evaluated the grid point, NaN
            elsewhere (accuracy is a step function of s: it is not interpolated).
        error: the max relative error of the mean loss's interpolant at the check points (0.0
            for a dense plan).
        sample_error: the same for the per-sample losses, each judged against
            ``max(|ℓ_i|, L)`` at its point (:func:`relative_error`).
    """

    def __init__(self, loss, sample_loss, accuracy, error, sample_error):
        self.loss, self.sample_loss, self.accuracy = loss, sample_loss, accuracy
        self.error, self.sample_error = error, sample_error


def reconstruct(plan: IntervalPlan, loss: np.ndarray, sample_loss: np.ndarray, accuracy: np.ndarray) -> Reconstruction:
    """The interval's grid values from the values at ``plan.points`` (``[k]``, ``[k, N]``, ``[k]``).

    Every grid point that was evaluated keeps its measured value, bit for bit (nodes on the
    grid and check points); the check points' measured values are compared with the
    interpolant there, which gives the errors.
    """
    loss = np.asarray(loss, dtype=np.float64)
    samples = np.asarray(sample_loss, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    k = plan.n_nodes
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged line: its error is inf
        out_loss = plan.matrix @ loss[:k]
        out_samples = plan.matrix @ samples[:k]
    acc = np.full(plan.indices.size, np.nan)
    out_loss[plan.on_grid], out_samples[plan.on_grid] = loss[plan.node_of], samples[plan.node_of]
    acc[plan.on_grid] = accuracy[plan.node_of]
    error = sample_error = 0.0
    if plan.checks.size:
        at, measured, measured_samples = plan.checks, loss[k:], samples[k:]
        error = relative_error(out_loss[at], measured)
        sample_error = relative_error(out_samples[at], measured_samples, measured[:, None])
        out_loss[at], out_samples[at], acc[at] = measured, measured_samples, accuracy[k:]
    return Reconstruction(out_loss, out_samples, acc, error, sample_error)
