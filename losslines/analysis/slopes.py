"""Slope at s = 0 estimated from grid values, as one linear functional of the line.

The store holds exact slopes (forward-mode jvp) for the full splits only (``slope0_*``). Where
no exact slope exists (a random sub- or super-batch built from per-sample losses, or a store
written without slopes) the slope comes from the least-squares parabola through the ``2m + 1``
measured grid points closest to ``s = 0``:

    slope = sum_j w_j L(s_j),   w = row 1 of pinv([1, s_j, s_j^2])

The estimator is exact for quadratic lines, also on grids without a point at 0 (e.g. imported
``arange(-0.5, 0.5, h)`` grids). For a cubic term ``c s^3`` it is biased by ``c * sum_j w_j s_j^3``
(``= c * sum s^4 / sum s^2 = 11.8 c h^2`` on a symmetric grid with ``m = 4``, spacing h), and
storage rounding ``delta`` per point adds noise of standard deviation ``delta / sqrt(sum s^2)``
(``= delta / (7.7 h)`` for m = 4). Because it is linear, the slope of a mean over samples is the
mean of the per-sample slopes: sub-batch slopes cost one matrix-vector product per line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from losslines.analysis.interpolate import check_grid

DEFAULT_HALF_POINTS = 4


@dataclass(frozen=True)
class SlopeStencil:
    """A linear slope estimator on a fixed grid.

    Attributes:
        index: ``[P]`` grid indices used (P = 2m + 1 points closest to s = 0).
        weights: ``[P]`` weights; ``slope = losses[..., index] @ weights`` (nats per unit s).
        bias_per_cubic: ``sum_j w_j s_j^3``: the bias per unit of the cubic coefficient of the
            line, in units of s^2.
        noise_gain: ``sqrt(sum w^2)``: the slope's standard deviation per unit of independent
            per-point noise (1 / unit s).
    """

    index: np.ndarray
    weights: np.ndarray
    bias_per_cubic: float
    noise_gain: float

    def apply(self, values: np.ndarray, axis: int = -1) -> np.ndarray:
        """Slope of ``values`` along the point ``axis`` (``[..., K, ...]`` -> ``[..., ...]``)."""
        values = np.asarray(values)
        taken = np.take(values, self.index, axis=axis).astype(np.float64)
        return np.tensordot(np.moveaxis(taken, axis, -1), self.weights, axes=([-1], [0]))


def slope_stencil(position: np.ndarray, half_points: int = DEFAULT_HALF_POINTS) -> SlopeStencil:
    """Least-squares slope-at-zero stencil of the ``2 * half_points + 1`` finite points nearest 0.

    Args:
        position: ``[K]`` grid (distance along the unit update direction) spanning s = 0.
        half_points: m (>= 1); the stencil uses 2m + 1 points.

    Raises:
        ValueError: the grid has fewer than 2m + 1 finite points or does not span 0.
    """
    position = check_grid(position)
    if half_points < 1:
        raise ValueError(f"half_points must be >= 1, got {half_points}")
    finite = np.flatnonzero(np.isfinite(position))
    if finite.size < 2 * half_points + 1:
        raise ValueError(
            f"slope stencil needs {2 * half_points + 1} finite grid points, the grid has {finite.size}; "
            "use a smaller half_points"
        )
    if not position[finite[0]] <= 0 <= position[finite[-1]]:
        raise ValueError(f"the grid [{position[finite[0]]:g}, {position[finite[-1]]:g}] does not span s = 0")
    index = np.sort(finite[np.argsort(np.abs(position[finite]), kind="stable")[: 2 * half_points + 1]])
    s = position[index]
    design = np.stack([np.ones_like(s), s, s * s], axis=1)
    weights = np.linalg.pinv(design)[1]
    return SlopeStencil(
        index=index,
        weights=weights,
        bias_per_cubic=float(weights @ s**3),
        noise_gain=float(np.sqrt(np.sum(weights**2))),
    )
