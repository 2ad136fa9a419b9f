"""Batch size versus learning rate from per-sample losses (paper Fig. 7, claim 3).

Along the line of the direction batch B (size ``n_B``), random batches S of size b are built
from the stored per-sample losses and their slope at 0, ``L_S'(0)``, is compared with the
direction batch's own slope ``L_B'(0)``:

* ``b < n_B``: *sub-batches*, random subsets of the direction batch (without replacement).
* ``b = n_B``: the direction batch itself.
* ``b > n_B``: *super-batches*, the direction batch plus ``b - n_B`` random measurement samples
  drawn without replacement from the training split, excluding samples whose dataset id is in
  the direction batch (the direction batch stays separate, nothing is counted twice).

The other samples' slopes along the batch gradient average to the small full-batch slope, so
``L_S'(0) / L_B'(0) ~ n_B / b`` for super-batches and ~ 1 for sub-batches; the step SGD would
take with batch S is ``-λ L_S'(0)``: a k-times larger batch acts like a k-times smaller λ.
Slopes are means of per-sample slopes (:mod:`losslines.analysis.slopes`: the estimator is
linear, so this equals the slope of ``L_S``). Draws are seeded per line, so results do not
depend on how lines are split into blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def default_batch_sizes(n_batch: int, n_train: int) -> tuple[int, ...]:
    """``n_B / 8 ... n_B ... 8 n_B`` in powers of two, limited by the available samples."""
    sizes = {max(1, n_batch // k) for k in (8, 4, 2)} | {n_batch}
    sizes |= {n_batch * k for k in (2, 4, 8) if n_batch * k <= n_batch + n_train}
    return tuple(sorted(sizes))


def expected_ratio(batch_sizes: np.ndarray, n_batch: int) -> np.ndarray:
    """Expected ``L_S'(0) / L_B'(0)``: ``n_B / b`` for super-batches, 1 otherwise."""
    b = np.asarray(batch_sizes, dtype=np.float64)
    return np.where(b > n_batch, n_batch / b, 1.0)


@dataclass(frozen=True)
class BatchDraws:
    """The random batches of one size: which direction-batch slots and training samples.

    Attributes:
        size: b, samples per batch.
        batch_slots: ``[D, min(b, n_B)]`` indices into the direction batch, one row per draw.
        train_index: ``[D, max(b - n_B, 0)]`` indices into the training split.
    """

    size: int
    batch_slots: np.ndarray
    train_index: np.ndarray


def draw_sample_batches(
    n_batch: int,
    pool: np.ndarray,
    batch_sizes: tuple[int, ...],
    n_draws: int,
    rng: np.random.Generator,
) -> list[BatchDraws]:
    """Random batches for each size (see the module docstring for how they are built).

    Args:
        n_batch: n_B, slots of the direction batch.
        pool: ``[P]`` training-split indices that super-batches may add (ids not in the batch).
        batch_sizes: sizes b (each >= 1 and <= n_B + P).
        n_draws: D, draws per size (>= 1).
        rng: seeded generator.

    Raises:
        ValueError: a size that cannot be drawn, or ``n_draws < 1``.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    pool = np.asarray(pool, dtype=np.int64)
    out = []
    for b in batch_sizes:
        if b < 1 or b > n_batch + pool.size:
            raise ValueError(
                f"batch size {b} impossible: the direction batch has {n_batch} slots and "
                f"{pool.size} other training samples are available"
            )
        if b <= n_batch:
            slots = _subsets(n_batch, b, n_draws, rng)
            extra = np.empty((n_draws, 0), dtype=np.int64)
        else:
            slots = np.tile(np.arange(n_batch), (n_draws, 1))
            extra = pool[_subsets(pool.size, b - n_batch, n_draws, rng)]
        out.append(BatchDraws(int(b), slots, extra))
    return out


def _subsets(n: int, k: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_draws, k]`` uniform random k-subsets of ``range(n)`` (without replacement): the k
    smallest of n i.i.d. uniform keys per draw, sorted."""
    if k == n:
        return np.tile(np.arange(n), (n_draws, 1))
    keys = rng.random((n_draws, n))
    return np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)


def batch_slopes(
    slope_batch: np.ndarray,
    slope_train: np.ndarray | None,
    draws: list[BatchDraws],
) -> np.ndarray:
    """Slope at 0 of every drawn batch: the mean of its samples' slopes.

    Args:
        slope_batch: ``[n_B]`` per-sample slopes of the direction batch (nats per unit s).
        slope_train: ``[N]`` per-sample slopes of the training split (needed for super-batches).
        draws: output of :func:`draw_sample_batches`.

    Returns:
        ``[len(draws), D]`` slopes, nats per unit s.
    """
    slope_batch = np.asarray(slope_batch, dtype=np.float64)
    rows = []
    for d in draws:
        total = slope_batch[d.batch_slots].sum(axis=1)
        if d.train_index.shape[1]:
            if slope_train is None:
                raise ValueError("super-batches need the per-sample training losses (sample_loss_train)")
            total = total + np.asarray(slope_train, dtype=np.float64)[d.train_index].sum(axis=1)
        rows.append(total / d.size)
    return np.stack(rows) if rows else np.empty((0, 0))


@dataclass(frozen=True)
class BatchStudy:
    """Batch size versus learning rate (Fig. 7).

    Attributes:
        batch_sizes: ``[S]`` sizes b; ``n_batch``: n_B.
        expected_ratio: ``[S]`` n_B / b for super-batches, 1 otherwise.
        slopes: ``[L, S, D]`` slope at 0 of every drawn batch (nats per unit s).
        batch_slope: ``[L]`` the direction batch's own slope, from the same per-sample slopes.
        sgd_steps: ``[L, S]`` mean over draws of ``-λ L_S'(0)``, the step SGD would take.
        method: how slopes were obtained (exact, or the stencil with its bias and noise).
        exact: ``[L]`` whether the line's per-sample slopes were the stored exact ones.
        stencil_error: ``[L]`` on lines with exact slopes, ``|stencil − exact| / |exact|`` of the
            direction batch's slope (what the stencil fallback would have been off by); NaN elsewhere.
    """

    batch_sizes: np.ndarray
    n_batch: int
    expected_ratio: np.ndarray
    slopes: np.ndarray
    batch_slope: np.ndarray
    sgd_steps: np.ndarray
    method: str
    exact: np.ndarray | None = None
    stencil_error: np.ndarray | None = None


def super_batch_pool(sample_ids_train: np.ndarray, batch_ids: np.ndarray) -> np.ndarray:
    """Training-split indices whose dataset id is not one of the direction batch's ids."""
    return np.flatnonzero(~np.isin(sample_ids_train, batch_ids[batch_ids >= 0]))
