"""Learning-rate schedules by name: ``λ(step)`` from the ``[train]`` table.

Registering a schedule is one call, ``register_lr_schedule(name, fn)`` with
``fn(train_config, step) -> λ``; a config may then say ``lr_schedule = name``.
"""

from __future__ import annotations

import math
from typing import Callable

from losslines.runner.config import TrainConfig

Schedule = Callable[[TrainConfig, int], float]

_SCHEDULES: dict[str, Schedule] = {}


def register_lr_schedule(name: str, fn: Schedule) -> None:
    """Add a learning-rate schedule under ``name`` (re-registering replaces it)."""
    _SCHEDULES[name] = fn


def lr_schedule_names() -> tuple[str, ...]:
    """The registered schedule names (valid values of ``train.lr_schedule``)."""
    return tuple(_SCHEDULES)


def lr_at(train: TrainConfig, step: int) -> float:
    """Learning rate λ at ``step`` under ``train.lr_schedule``.

    Returns:
        λ as a Python float (a schedule returning a NumPy or 0-d torch scalar is converted: λ goes
        into the optimizer state, and a checkpoint holds plain data only).

    Raises:
        ValueError: unknown schedule name (listing the registered ones).
    """
    if train.lr_schedule not in _SCHEDULES:
        raise ValueError(f"unknown lr_schedule {train.lr_schedule!r}; valid schedules: {', '.join(_SCHEDULES)}")
    return float(_SCHEDULES[train.lr_schedule](train, step))


register_lr_schedule("constant", lambda t, step: t.lr)
register_lr_schedule("step", lambda t, step: t.lr * t.lr_gamma ** sum(step >= m for m in t.lr_milestones))
register_lr_schedule("cosine", lambda t, step: 0.5 * t.lr * (1.0 + math.cos(math.pi * step / t.steps)))
