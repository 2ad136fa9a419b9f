"""Statistics over many directions from the same parameters (paper Fig. 8, "all directions").

At a few training steps the store's ``directions/`` group holds M lines from the same θ_t,
each along a different mini-batch direction (``loss_train [P, M, K]``). Per position this
module computes, across the M directions, the refined minimum ``s_opt``, the ratio
``r = s_opt / direction_norm``, the degree-2 fit MAE and the mean min-shifted distance between
the M lines: how much the line, and the step that would reach its minimum, depends on which
batch defined the direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from losslines.analysis.distances import common_columns, shifted_window, view_first
from losslines.analysis.minimum import find_minimum
from losslines.analysis.polyfit import fit_polynomials


@dataclass(frozen=True)
class DirectionStats:
    """Per-position, per-direction statistics.

    Attributes:
        s_opt: ``[P, M]`` refined full-batch minimum of each direction (distance along û).
        ratio: ``[P, M]`` ``s_opt / direction_norm``.
        mae2: ``[P, M]`` degree-2 fit MAE on the window, nats.
        mean_distance: ``[P]`` mean D over pairs of distinct directions, nats.
    """

    s_opt: np.ndarray
    ratio: np.ndarray
    mae2: np.ndarray
    mean_distance: np.ndarray


def direction_stats(
    position: np.ndarray, losses: np.ndarray, direction_norm: np.ndarray, *, window: float
) -> DirectionStats:
    """Fig. 8 statistics.

    Args:
        position: ``[K]`` grid.
        losses: ``[P, M, K]`` full-batch losses along M directions at P positions, nats.
        direction_norm: ``[P, M]`` norms ‖u‖/λ of the directions.
        window: fit and comparison window half-width.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 3:
        raise ValueError(f"direction losses must be [P, M, K], got shape {losses.shape}")
    p, m, k = losses.shape
    flat = losses.reshape(p * m, k)
    s_opt = find_minimum(position, flat).s_opt.reshape(p, m)
    mae2 = fit_polynomials(position, flat, degrees=(2,), window=window).mae[2].reshape(p, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = s_opt / np.asarray(direction_norm, dtype=np.float64)
    mean_d = np.full(p, np.nan)
    for i in range(p):
        shifted, _ = shifted_window(position, losses[i], window)
        cols = common_columns(shifted)
        if m > 1 and cols.any():
            d = view_first(shifted[:, cols])
            mean_d[i] = d.sum() / (m * (m - 1))
    return DirectionStats(s_opt, ratio, mae2, mean_d)
