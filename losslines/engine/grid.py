"""The fixed grid of step sizes every line is measured on (docs/design.md, "The measurement": grid).

Positions are ``s_i = spacing * i`` for integers ``i`` with ``|s_i| <= half_width`` — the core —
extended by up to ``max_enlargements`` enlargement rings. Each position is computed as one
float64 product ``spacing * i`` (never as a cumulative sum), so ``s = 0`` is present exactly and
the grid is exactly symmetric (``s_{-i} == -s_i``).

Enlargement rings. When the minimum of the full-batch line lies on the edge of the measured
region, the sampler measures the next ring. **A ring is as wide as one side of the core**: ring
``k`` (``k >= 1``) holds the integers ``i`` with ``k*m < |i| <= (k+1)*m``, where ``m`` is the
number of core points per side (83 for the defaults). Why not a one-step band: a minimum on the
edge of a ±0.5 window is usually far outside it (the line is still falling there), so a band of
one spacing would trigger one extra round of forwards per point gained, while a core-wide ring
doubles, then triples, ... the reach with the same number of rounds as enlargements and costs
exactly as many forwards as the core. The array is allocated at its widest; points of rings that
were not measured are NaN in the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Relative slack when counting how many steps fit into half_width: 0.4 / 0.004 is
# 100.00000000000001 in float64 and 0.3 / 0.1 is 2.9999999999999996; both must count as whole.
_COUNT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Grid:
    """The positions of one run, core plus enlargement rings.

    Attributes:
        spacing: distance between neighbouring points, in units of s (distance along û).
        half_width: the core covers ``|s| <= half_width``.
        max_enlargements: number of enlargement rings allocated beyond the core.
        points_per_side: ``m``, core points on each side of 0 (also the width of a ring).
    """

    spacing: float
    half_width: float
    max_enlargements: int
    points_per_side: int

    @property
    def n_rings(self) -> int:
        """Number of enlargement rings (``max_enlargements``)."""
        return self.max_enlargements

    @property
    def max_index(self) -> int:
        """Largest ``|i|`` of the full grid: ``m * (max_enlargements + 1)``."""
        return self.points_per_side * (self.max_enlargements + 1)

    @property
    def indices(self) -> np.ndarray:
        """Integer multiples ``i`` of every point, ``[n_points]`` int64, ascending."""
        return np.arange(-self.max_index, self.max_index + 1, dtype=np.int64)

    @property
    def positions(self) -> np.ndarray:
        """Step sizes ``s = spacing * i``, ``[n_points]`` float64, ascending (a fresh array)."""
        return np.float64(self.spacing) * self.indices.astype(np.float64)

    @property
    def n_points(self) -> int:
        """Number of points of the full (widest) grid."""
        return 2 * self.max_index + 1

    @property
    def n_core(self) -> int:
        """Number of points of the core (``2m + 1``; 167 for the defaults)."""
        return 2 * self.points_per_side + 1

    @property
    def zero_index(self) -> int:
        """Index of ``s = 0`` in ``positions``."""
        return self.max_index

    @property
    def core_mask(self) -> np.ndarray:
        """``[n_points]`` bool, True on the core ``|i| <= m``."""
        return self.measured_mask(0)

    def ring_of(self) -> np.ndarray:
        """``[n_points]`` int64: the ring of every point (0 for the core, k for ring k)."""
        m = self.points_per_side
        return np.maximum(np.abs(self.indices) - 1, 0) // m

    def ring_indices(self, k: int) -> np.ndarray:
        """Indices into ``positions`` of ring ``k`` (0 = the core), ascending ``[2m]`` (core: ``[2m+1]``).

        Raises:
            ValueError: ``k`` outside ``0 .. max_enlargements``.
        """
        self._check_ring(k)
        return np.flatnonzero(self.ring_of() == k)

    def measured_mask(self, n_rings: int) -> np.ndarray:
        """``[n_points]`` bool: the core plus rings ``1 .. n_rings``.

        Raises:
            ValueError: ``n_rings`` outside ``0 .. max_enlargements``.
        """
        self._check_ring(n_rings)
        return self.ring_of() <= n_rings

    def edge_indices(self, n_rings: int) -> tuple[int, int]:
        """Indices of the outermost points (left, right) of the region ``measured_mask(n_rings)``."""
        self._check_ring(n_rings)
        reach = self.points_per_side * (n_rings + 1)
        return self.zero_index - reach, self.zero_index + reach

    def to_attrs(self) -> dict:
        """JSON-ready description (for store attributes)."""
        return {
            "spacing": self.spacing,
            "half_width": self.half_width,
            "max_enlargements": self.max_enlargements,
            "points_per_side": self.points_per_side,
            "n_points": self.n_points,
            "ring_width": "core points per side",
        }

    def _check_ring(self, k: int) -> None:
        if not isinstance(k, (int, np.integer)) or not 0 <= k <= self.max_enlargements:
            raise ValueError(
                f"ring {k!r} does not exist: valid rings are 0 (the core) .. {self.max_enlargements}"
            )


def make_grid(spacing: float = 0.006, half_width: float = 0.5, max_enlargements: int = 0) -> Grid:
    """Build the run's grid: ``s = spacing * i`` for ``|s| <= half_width``, plus enlargement rings.

    Args:
        spacing: distance between neighbouring points (> 0), units of s.
        half_width: the core covers ``|s| <= half_width`` (>= spacing).
        max_enlargements: enlargement rings allocated beyond the core (>= 0); each ring is as
            wide as one side of the core (see the module docstring).

    Returns:
        The ``Grid``; the defaults give 167 points from -0.498 to 0.498.

    Raises:
        ValueError: non-finite or non-positive spacing, half_width < spacing, negative or
            non-integer max_enlargements.
    """
    spacing = float(spacing)
    half_width = float(half_width)
    if not np.isfinite(spacing) or spacing <= 0:
        raise ValueError(f"grid spacing must be a finite number > 0, got {spacing}")
    if not np.isfinite(half_width) or half_width < spacing * (1 - _COUNT_TOLERANCE):
        raise ValueError(
            f"grid half_width ({half_width}) must be finite and >= spacing ({spacing}); "
            "otherwise the grid holds only s = 0"
        )
    if isinstance(max_enlargements, bool) or not isinstance(max_enlargements, (int, np.integer)):
        raise ValueError(f"max_enlargements must be an integer >= 0, got {max_enlargements!r}")
    if max_enlargements < 0:
        raise ValueError(f"max_enlargements must be >= 0, got {max_enlargements}")
    m = int(np.floor(half_width / spacing * (1 + _COUNT_TOLERANCE)))
    return Grid(spacing=spacing, half_width=half_width, max_enlargements=int(max_enlargements),
                points_per_side=m)
