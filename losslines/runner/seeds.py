"""The seeded random streams of a run, each derived from the config's ``seed`` in one place.

Every stream has its own generator, so measuring (which draws nothing) and the all-directions
mode (its own stream per step) leave the training run's data order and augmentation untouched.
The formulas are part of what makes a run reproducible: changing one changes every run.
"""

from __future__ import annotations

_STREAM_PRIME = 7919  # spreads the per-run streams of consecutive seeds apart
_DIRECTIONS_PRIME = 1_000_003  # one stream per (seed, step) of the all-directions mode


def data_order_seed(seed: int) -> int:
    """Seed of the permutation of the training set drawn at each epoch."""
    return seed * _STREAM_PRIME + 1


def augment_seed(seed: int) -> int:
    """Seed of the training-batch augmentation (crops, flips)."""
    return seed * _STREAM_PRIME + 2


def directions_seed(seed: int, step: int) -> int:
    """Seed of the mini-batches drawn by the all-directions mode at ``step``."""
    return seed * _DIRECTIONS_PRIME + step
