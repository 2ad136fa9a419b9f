"""Step rules replayed on measured lines, and how good each step is on the full-batch loss.

Every rule maps a line to a step size s along û (paper, "replayed step rules"):

* ``taken``: the step the optimizer took, ``update_step``.
* ``optimum``: the refined full-batch minimum ``s_opt``.
* ``sgd``: SGD with another learning rate λ', ``s = λ' * direction_norm``.
* ``pal``: PAL on the direction-batch loss with measuring step μ:
  ``b = L_B'(0)``, ``a = (L_B(μ) - L_B(0) - b μ) / μ^2``; ``s = -b / (2a)`` if a > 0 and b < 0,
  ``s = μ`` if a <= 0 and b < 0, otherwise 0.
* ``fbpal``: the same rule on the full-batch loss L.

A step is judged by its improvement ``I(s) = L(0) - L(s)`` (nats, > 0 is better) and its signed
distance ``s_opt - s`` (> 0: the step stopped short of the minimum).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from losslines.analysis.interpolate import loss_at


class StepRule(str, Enum):
    """Names of the replayed step rules."""

    TAKEN = "taken"
    OPTIMUM = "optimum"
    SGD = "sgd"
    PAL = "pal"
    FBPAL = "fbpal"


def rule_key(rule: StepRule | str, parameter: float | None = None) -> str:
    """Stable name of one replayed rule, e.g. ``"sgd(lr=0.05)"``, ``"pal(mu=0.1)"``, ``"taken"``.

    Raises:
        ValueError: unknown rule name (lists the valid ones), or a missing/extra parameter.
    """
    try:
        rule = StepRule(rule)
    except ValueError:
        raise ValueError(f"unknown step rule {rule!r}; valid: {[r.value for r in StepRule]}") from None
    needs = {StepRule.SGD: "lr", StepRule.PAL: "mu", StepRule.FBPAL: "mu"}
    if rule in needs:
        if parameter is None:
            raise ValueError(f"step rule {rule.value!r} needs its {needs[rule]}")
        return f"{rule.value}({needs[rule]}={parameter:g})"
    if parameter is not None:
        raise ValueError(f"step rule {rule.value!r} takes no parameter")
    return rule.value


def sgd_step(lr: float | np.ndarray, direction_norm: np.ndarray) -> np.ndarray:
    """SGD step length ``λ' * direction_norm`` ``[L]`` (for plain SGD, λ'‖g‖)."""
    return np.asarray(lr, dtype=np.float64) * np.asarray(direction_norm, dtype=np.float64)


def pal_step(loss0: np.ndarray, loss_mu: np.ndarray, slope0: np.ndarray, mu: float) -> np.ndarray:
    """PAL's step from one extra measurement at ``mu`` (parabolic approximation line search).

    Args:
        loss0: ``[L]`` loss at s = 0, nats.
        loss_mu: ``[L]`` loss at s = mu, nats.
        slope0: ``[L]`` directional derivative at 0, nats per unit s.
        mu: measuring step (> 0), distance along û.

    Returns:
        ``[L]`` step sizes; NaN where an input is NaN.
    """
    if not mu > 0:
        raise ValueError(f"PAL's measuring step mu must be > 0, got {mu}")
    loss0, loss_mu, b = (np.asarray(v, dtype=np.float64) for v in (loss0, loss_mu, slope0))
    a = (loss_mu - loss0 - b * mu) / mu**2
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex = -b / (2.0 * a)
    step = np.where(b < 0, np.where(a > 0, vertex, mu), 0.0)
    return np.where(np.isfinite(loss0) & np.isfinite(loss_mu) & np.isfinite(b), step, np.nan)


def pal_on_line(position: np.ndarray, losses: np.ndarray, slope0: np.ndarray, mu: float, *,
                nearest: bool = False) -> np.ndarray:
    """PAL (``pal_step``) on stored lines ``[L, K]``, the losses at 0 and μ read off the grid:
    interpolated at μ by the local parabola, or (``nearest``, the original code's definition) the
    loss at the measured grid point nearest to μ."""
    n = np.atleast_2d(losses).shape[0]
    loss0 = loss_at(position, losses, np.zeros(n))
    if nearest:
        from losslines.analysis.compat import nearest_grid_loss

        loss_mu = nearest_grid_loss(position, losses, float(mu))
    else:
        loss_mu = loss_at(position, losses, np.full(n, float(mu)))
    return pal_step(loss0, loss_mu, slope0, mu)


@dataclass(frozen=True)
class StepOutcome:
    """How good a step is on the full-batch line.

    Attributes:
        step: ``[L]`` step sizes (distance along û).
        improvement: ``[L]`` ``L(0) - L(step)`` in nats; NaN where the step left the measured range.
        distance: ``[L]`` ``s_opt - step``.
    """

    step: np.ndarray
    improvement: np.ndarray
    distance: np.ndarray


def judge_step(
    position: np.ndarray,
    losses: np.ndarray,
    s_opt: np.ndarray,
    step: np.ndarray,
    *,
    loss_at_step: np.ndarray | None = None,
) -> StepOutcome:
    """Improvement and signed distance of ``step`` on the full-batch lines.

    Args:
        position: ``[K]`` grid.
        losses: ``[L, K]`` full-batch losses in nats.
        s_opt: ``[L]`` refined minimisers.
        step: ``[L]`` steps to judge.
        loss_at_step: ``[L]`` exact losses at ``step`` where measured (e.g. the store's
            ``loss_at_update_train``); used where finite, interpolation elsewhere.
    """
    losses = np.atleast_2d(losses)
    step = np.asarray(step, dtype=np.float64)
    n = losses.shape[0]
    at_zero = loss_at(position, losses, np.zeros(n))
    at_step = loss_at(position, losses, step)
    if loss_at_step is not None:
        exact = np.asarray(loss_at_step, dtype=np.float64)
        at_step = np.where(np.isfinite(exact), exact, at_step)
    return StepOutcome(step, at_zero - at_step, np.asarray(s_opt, dtype=np.float64) - step)
