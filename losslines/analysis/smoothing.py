"""Moving-average smoothing of per-line metric curves (paper Fig. 6: 25 lines)."""

from __future__ import annotations

import numpy as np

DEFAULT_SMOOTHING = 25


def moving_average(values: np.ndarray, width: int = DEFAULT_SMOOTHING) -> np.ndarray:
    """Centred moving average over ``width`` lines that skips NaN.

    Each output is the mean of the finite values in the window ``[t - h, t - h + width)``,
    ``h = width // 2``, shortened where it runs past either end; NaN where the window holds no finite value.

    Args:
        values: ``[L]`` per-line metric.
        width: window length in lines (>= 1).

    Returns:
        ``[L]`` float64.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"moving_average needs a 1-d curve, got shape {values.shape}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    finite = np.isfinite(values)
    csum = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(finite)])
    n = values.size
    start = np.arange(n) - width // 2
    lo, hi = np.clip(start, 0, n), np.clip(start + width, 0, n)
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)
