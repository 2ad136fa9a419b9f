"""``losslines analyze --compat original``: the original analysis code's own definitions.

The default analysis measures each quantity as well as the store allows. The original research
code defined four of them differently; this mode reproduces its definitions so that a store's
numbers can be put next to the paper's (docs/analysis.md, "Compatibility with the original"):

* **the full-batch curve of Figs. 5/6** (s_opt, r = s_opt / ‖g‖, update_step / s_opt, the replayed
  rules' improvements and distances, full-batch PAL): the measurement set's losses pooled with
  the direction batch's, ``L_pool(s) = (N·L(s) + B·L_B(s)) / (N + B)`` — N measured training
  samples, B the direction batch's samples (counted twice where the batch is drawn from the
  measured set, as the original did);
* **s_opt**: the grid argmin, not refined by the local parabola;
* **the line-distance window**: 66 grid points around s = 0 (the 33 below it and the 33 from it
  up), not the points with ``|s| <= w``;
* **PAL's l(μ)**: the loss at the grid point nearest to μ, not interpolated at μ.

Everything else (fits, kinks, the batch-size study, ...) is the same in both modes.
:data:`DIFFERENCES` says, per quantity, how the definitions differ and why the default is the
better measurement; the ``compat`` metric puts both numbers side by side in the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from losslines.analysis.interpolate import check_grid, valid_mask

if TYPE_CHECKING:
    from losslines.analysis.metric import Block, Setup
    from losslines.analysis.source import LineSource

MODES = ("none", "original")
DISTANCE_POINTS_EACH_SIDE = 33  # the original's 66-point distance window: 33 points below 0, 33 from 0 up


@dataclass(frozen=True)
class Difference:
    """One quantity whose original definition differs from the default.

    Attributes:
        quantity: what is measured; ``original`` / ``default``: the two definitions;
        why: why the default is the better measurement.
    """

    quantity: str
    original: str
    default: str
    why: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "full-batch curve of Figs. 5/6 (s_opt, r, update_step / s_opt, replayed rules, full-batch PAL)",
        "(N·L + B·L_B) / (N + B): the measurement set pooled with the direction batch",
        "L over the measurement set only",
        "the direction batch is the sample the step was computed on, so its loss falls faster along the "
        "update direction than the full-batch loss does; pooling it in pulls s_opt towards the batch's own "
        "minimum by a weight B / (N + B) that depends on the sizes chosen, not on the model"),
    Difference(
        "s_opt",
        "the grid argmin",
        "the grid argmin refined to the vertex of the parabola through it and its neighbours, with an error "
        "estimate",
        "the grid argmin is off by up to half a grid spacing (±0.003 at spacing 0.006, several per cent of a "
        "typical s_opt), which quantises r = s_opt / ‖g‖ and update_step / s_opt; the refinement's own error "
        "is measured and reported"),
    Difference(
        "line-distance window",
        "66 grid points around s = 0 (33 below it, 33 from it up)",
        "the grid points with |s| <= w, each weighted by its share of the window",
        "a count of points is a different interval on every grid (and asymmetric: [−0.198, 0.192] at spacing "
        "0.006); |s| <= w is the same window on any grid, and the weights make uneven grids comparable"),
    Difference(
        "PAL's loss at the measuring step μ",
        "the loss at the grid point nearest to μ",
        "the loss interpolated at μ by the local parabola",
        "PAL measures at μ; taking the nearest grid point instead evaluates its parabola with the wrong "
        "abscissa (0.102 for μ = 0.1 at spacing 0.006), biasing the replayed step"),
)


def is_original(setup: Setup) -> bool:
    """The analysis reproduces the original's definitions."""
    return setup.options.compat == "original"


@dataclass(frozen=True)
class PoolWeights:
    """The weights of the pooled curve: N measured training samples, B direction-batch samples."""

    n_train: int
    n_batch: int

    def pool(self, train: np.ndarray, batch: np.ndarray) -> np.ndarray:
        """``(N·train + B·batch) / (N + B)`` elementwise (float64)."""
        n, b = float(self.n_train), float(self.n_batch)
        return (n * np.asarray(train, dtype=np.float64) + b * np.asarray(batch, dtype=np.float64)) / (n + b)


def pool_weights(source: LineSource) -> PoolWeights:
    """N and B of a store, from its sample ids and direction-batch slots, else its config.

    Raises:
        ValueError: the store has no direction-batch losses, or N or B cannot be told.
    """
    if not source.has("loss_batch"):
        raise ValueError(f"--compat original pools the direction batch into the full-batch curve, but "
                         f"{source.path} has no 'loss_batch'; analyse it without --compat")
    config = source.config or {}
    n_train = source.sample_ids("train").size if source.has("sample_ids_train") else 0
    if not n_train:
        n_train = int((config.get("measure") or {}).get("n_train") or 0) or int(
            (source.attrs.get("dataset") or {}).get("n_train") or 0)
    n_batch = source.shape("batch_ids")[1] if source.has("batch_ids") else 0
    if not n_batch:
        n_batch = int((config.get("train") or {}).get("batch_size") or 0)
    if n_train <= 0 or n_batch <= 0:
        raise ValueError(f"--compat original needs the measured training set's size and the direction batch's; "
                         f"{source.path} tells N = {n_train}, B = {n_batch}; analyse it without --compat")
    return PoolWeights(n_train, n_batch)


def full_batch_curve(block: Block, weights: PoolWeights | None) -> np.ndarray:
    """The curve of the Figs. 5/6 quantities: ``loss_train``, or pooled with ``loss_batch``."""
    train = block.f64("loss_train")
    if weights is None:
        return train
    return weights.pool(train, block.f64("loss_batch"))


def nearest_grid_loss(position: np.ndarray, losses: np.ndarray, s: float) -> np.ndarray:
    """Every line's loss at its measured grid point nearest to ``s`` (the original's l(μ)).

    Returns:
        ``[L]`` float64; NaN for a line without measured points.
    """
    position = check_grid(position)
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    valid = valid_mask(position, losses)
    dist = np.where(valid, np.abs(np.nan_to_num(position, nan=np.inf) - s)[None, :], np.inf)
    j = np.argmin(dist, axis=1)
    rows = np.arange(losses.shape[0])
    return np.where(valid.any(axis=1), losses[rows, j], np.nan)


def distance_window_index(position: np.ndarray) -> np.ndarray:
    """The original's 66-point distance window: the 33 grid points below s = 0 and the 33 from 0 up.

    Raises:
        ValueError: the grid has fewer than 33 points on either side of 0.
    """
    position = check_grid(position)
    finite = np.flatnonzero(np.isfinite(position))
    below = finite[position[finite] < 0]
    above = finite[position[finite] >= 0]
    k = DISTANCE_POINTS_EACH_SIDE
    if below.size < k or above.size < k:
        raise ValueError(f"--compat original compares lines on {2 * k} grid points around 0 ({k} each side); this "
                         f"grid has {below.size} below 0 and {above.size} from 0 up; analyse it without --compat")
    return np.concatenate([below[-k:], above[:k]])
