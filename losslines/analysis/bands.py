"""Spread of mini-batch losses along a line: min/max/quartile bands (paper Figs. 2 and 5).

For one line, ``n_draws`` random batches of ``batch_size`` training samples are drawn without
replacement (seeded), each batch's mean loss ``L_S(s)`` is formed at every grid point from the
stored per-sample losses, and the pointwise minimum, quartiles and maximum over the draws are
returned: the band that a mini-batch loss of that size falls into.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class BatchBands:
    """Pointwise quantiles of random batch losses along one line.

    Attributes:
        batch_size: samples per drawn batch.
        n_draws: number of drawn batches.
        quantiles: the levels, ``(0, 0.25, 0.5, 0.75, 1)``.
        values: ``[5, K]`` losses in nats at each level (NaN where the line is unmeasured).
    """

    batch_size: int
    n_draws: int
    quantiles: tuple[float, ...]
    values: np.ndarray


def batch_bands(sample_losses: np.ndarray, batch_size: int, n_draws: int, rng: np.random.Generator) -> BatchBands:
    """Quantile bands of random-batch losses.

    Args:
        sample_losses: ``[K, N]`` per-sample losses of one line (nats), NaN at unmeasured points.
        batch_size: b, 1 <= b <= N.
        n_draws: batches to draw (>= 2).
        rng: seeded generator.
    """
    sample_losses = np.asarray(sample_losses)
    if sample_losses.ndim != 2:
        raise ValueError(f"sample_losses must be [K, N], got shape {sample_losses.shape}")
    n = sample_losses.shape[1]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    if n_draws < 2:
        raise ValueError(f"n_draws must be >= 2, got {n_draws}")
    means = np.empty((n_draws, sample_losses.shape[0]))
    for d in range(n_draws):
        idx = np.sort(rng.choice(n, size=batch_size, replace=False))
        means[d] = sample_losses[:, idx].astype(np.float64).mean(axis=1)
    return BatchBands(batch_size, n_draws, QUANTILES, np.quantile(means, QUANTILES, axis=0))
