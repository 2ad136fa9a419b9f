"""Seeded, stable and nested subset selection (pure: sizes and seeds in, sorted id arrays out).

Every selection draws ONE permutation of the source split from ``(seed, stream)`` and takes a
prefix of it, so

* the same seed and size give the same ids on every machine (numpy's PCG64 generator), and
* a larger size contains the smaller one (``fraction=0.08`` contains ``fraction=0.04``).

For a single pool that provides both splits (``digits``, ``synthetic``) the held-out samples
are a *suffix* of the permutation and the training samples a *prefix*, so train subsets stay
nested as ``n_val`` changes and held-out subsets stay nested as ``n_train`` changes (as long as
the two do not meet). Returned ids are sorted ascending.
"""

from __future__ import annotations

import math

import numpy as np

# Independent permutation streams, so that the train and held-out draws of a seed differ.
STREAM_TRAIN = 0
STREAM_HELDOUT = 1
STREAM_POOL = 2


def permutation(n: int, seed: int, stream: int) -> np.ndarray:
    """A seeded permutation of ``range(n)``.

    Args:
        n: number of items.
        seed: user seed (non-negative int).
        stream: which independent stream of that seed (``STREAM_*``).

    Returns:
        ``[n]`` int64 permutation.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))
    return rng.permutation(n).astype(np.int64)


def resolve_count(total: int, *, fraction: float | None, count: int | None, what: str, default: int) -> int:
    """Number of samples to take from a split of ``total`` samples.

    Exactly one of ``fraction`` (of ``total``, rounded to nearest) or ``count`` may be given;
    with neither, ``default`` is used.

    Raises:
        ValueError: both given, fraction outside [0, 1], or count outside [0, total].
    """
    if fraction is not None and count is not None:
        raise ValueError(f"give either the {what} fraction or the {what} count, not both")
    if fraction is not None:
        if not (0.0 <= fraction <= 1.0) or math.isnan(fraction):
            raise ValueError(f"{what} fraction must lie in [0, 1], got {fraction}")
        count = int(round(fraction * total))
    elif count is None:
        count = default
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise ValueError(f"{what} count must be an integer, got {count!r}")
    if not 0 <= count <= total:
        raise ValueError(f"{what} count must lie in [0, {total}] (the available samples), got {count}")
    return int(count)


def select(total: int, count: int, seed: int, stream: int) -> np.ndarray:
    """``count`` ids out of ``range(total)``: a sorted prefix of one seeded permutation.

    Returns:
        ``[count]`` int64, ascending.
    """
    return np.sort(permutation(total, seed, stream)[:count])


def select_from_pool(total: int, n_train: int, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train and held-out ids out of one pool of ``total`` samples.

    Held-out ids are the last ``n_val`` entries of the seeded permutation, train ids its first
    ``n_train`` entries.

    Returns:
        ``(train_ids [n_train], val_ids [n_val])``, int64, each ascending.

    Raises:
        ValueError: ``n_train + n_val > total``.
    """
    if n_train + n_val > total:
        raise ValueError(f"n_train + n_val = {n_train} + {n_val} exceeds the {total} samples of the pool")
    perm = permutation(total, seed, STREAM_POOL)
    return np.sort(perm[:n_train]), np.sort(perm[total - n_val :])
