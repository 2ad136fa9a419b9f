"""What each training step did along its own direction, from the per-step mode's three numbers.

For step t with loss ``L(0)`` at θ_t, exact slope ``L'(0)`` and ``L(s_t)`` at the step taken
(``s_t = update_step``):

* ``improvement = L(0) − L(s_t)`` (nats; > 0: the step lowered the loss);
* ``predicted = −L'(0) · s_t``, the first-order (linear) prediction of that improvement;
* ``efficiency = improvement / predicted``: 1 in the linear regime, < 1 where curvature eats
  the gain, < 0 where the step overshot the minimum so far that the loss went up (for a
  parabola, ``efficiency = 1 − s_t / (2 s_opt)``: 0.5 is the optimal step, 0 the point of equal
  loss beyond it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepQuality:
    """Per-step quality of ``[S]`` steps (float64).

    Attributes:
        improvement: ``L(0) − L(s_t)`` (nats).
        predicted: ``−L'(0) · s_t`` (nats).
        efficiency: ``improvement / predicted`` (NaN where ``predicted`` is 0).
    """

    improvement: np.ndarray
    predicted: np.ndarray
    efficiency: np.ndarray


def step_quality(loss0: np.ndarray, loss_at_update: np.ndarray, slope0: np.ndarray,
                 update_step: np.ndarray) -> StepQuality:
    """``StepQuality`` of steps with losses ``loss0`` / ``loss_at_update``, slopes ``slope0`` and
    step sizes ``update_step`` (all ``[S]``)."""
    loss0, loss_at_update, slope0, update_step = (np.asarray(a, dtype=np.float64)
                                                  for a in (loss0, loss_at_update, slope0, update_step))
    improvement = loss0 - loss_at_update
    predicted = -slope0 * update_step
    with np.errstate(invalid="ignore", divide="ignore"):
        efficiency = np.where(predicted != 0, improvement / predicted, np.nan)
    return StepQuality(improvement, predicted, efficiency)
