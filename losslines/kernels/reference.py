"""Plain-PyTorch per-sample loss reduction: the reference every fused kernel is tested against.

Input layout is *line-major*: the logits of ``lines`` points of a line, each over the same ``n``
samples, stacked as ``[lines * n, C]`` (rows ``j*n .. (j+1)*n - 1`` belong to point ``j``).
One call returns what the evaluator needs from them: every per-sample loss, the per-point loss
sums accumulated in float64 and the per-point counts of correct predictions.

* ``"cross_entropy"``: ``ℓ_r = log Σ_c exp(z_rc − m_r) − (z_r[y_r] − m_r)`` with ``m_r = max_c z_rc``
  (nats), numerically safe and precise for logits of any magnitude. A prediction is
  correct when ``argmax(z_r) == y_r`` (first maximum on ties, as ``torch.argmax``).
* ``"mse"``: ``ℓ_r = mean_c (z_rc − y_rc)^2`` (the per-sample term whose mean over samples is
  ``F.mse_loss(reduction="mean")``). Float targets ``[R, C]`` are regression targets; accuracy is
  undefined and ``correct`` is all zeros. Integer targets ``[R]`` are class indices of a
  classifier trained with squared error: ``y_r`` is their one-hot vector and a prediction is
  correct when ``argmax(z_r) == y_r``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

LOSSES = ("cross_entropy", "mse")


@dataclass(frozen=True)
class LossReduction:
    """Per-sample losses and per-point reductions of ``lines`` points.

    Attributes:
        sample_loss: ``[lines * n]`` per-sample loss in nats (float64 for float64 logits,
            float32 otherwise), line-major.
        line_sum: ``[lines]`` float64, sum over the ``n`` samples of each point.
        correct: ``[lines]`` int64, number of correct predictions per point (zeros for "mse"
            regression with float targets).
    """

    sample_loss: Tensor
    line_sum: Tensor
    correct: Tensor


def check_loss(loss: str) -> str:
    """Return ``loss`` if it names a supported loss, else raise ValueError listing them."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")
    return loss


def check_shapes(logits: Tensor, targets: Tensor, loss: str, lines: int) -> int:
    """The samples per point ``n`` of ``[lines * n, C]`` logits; ValueError naming any misfit of
    ``lines``, the logits' shape or the targets' shape and dtype (shared by every backend)."""
    if not isinstance(lines, int) or lines < 1:
        raise ValueError(f"lines must be an integer >= 1, got {lines!r}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be [R, C], got shape {tuple(logits.shape)}")
    rows = logits.shape[0]
    if rows % lines:
        raise ValueError(f"logits have {rows} rows, not a multiple of lines={lines}")
    if loss == "cross_entropy":
        if targets.shape != (rows,) or targets.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"cross_entropy targets must be integer class indices of shape [{rows}], "
                f"got {targets.dtype} {tuple(targets.shape)}"
            )
    elif not (targets.shape == logits.shape and targets.is_floating_point()) and \
            not (targets.shape == (rows,) and targets.dtype in (torch.int64, torch.int32)):
        raise ValueError(
            f"mse targets must be floats of the logits' shape {tuple(logits.shape)} or integer class "
            f"indices of shape [{rows}], got {targets.dtype} {tuple(targets.shape)}"
        )
    return rows // lines


def reduce_loss(logits: Tensor, targets: Tensor, *, loss: str = "cross_entropy", lines: int = 1) -> LossReduction:
    """Per-sample losses, float64 per-point sums and correct counts of line-major logits.

    Args:
        logits: ``[lines * n, C]`` model outputs, line-major (float16/bfloat16 are computed in
            float32).
        targets: ``[lines * n]`` int64 class indices ("cross_entropy", or "mse" on one-hot
            targets) or ``[lines * n, C]`` floats ("mse" regression).
        loss: ``"cross_entropy"`` or ``"mse"``.
        lines: number of points stacked in ``logits``.

    Returns:
        ``LossReduction`` (see its fields).

    Raises:
        ValueError: unknown loss, or shapes/dtypes that do not fit.
    """
    check_loss(loss)
    n = check_shapes(logits, targets, loss, lines)
    z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    if loss == "cross_entropy":
        # shift by the row maximum first: log Σ exp(z − m) − (z_y − m) keeps full precision even when
        # the logits are huge (logsumexp(z) − z_y would cancel 1e4-sized terms in float32)
        shifted = z - z.max(dim=1, keepdim=True).values.detach()
        picked = shifted.gather(1, targets.long().unsqueeze(1)).squeeze(1)
        sample_loss = torch.log(torch.exp(shifted).sum(dim=1)) - picked
        correct = (z.argmax(dim=1) == targets).view(lines, n).sum(dim=1, dtype=torch.int64)
    elif targets.is_floating_point():
        diff = z - targets.to(z.dtype)
        sample_loss = (diff * diff).mean(dim=1)
        correct = torch.zeros(lines, dtype=torch.int64, device=z.device)
    else:
        onehot = torch.nn.functional.one_hot(targets.long(), z.shape[1]).to(z.dtype)
        diff = z - onehot
        sample_loss = (diff * diff).mean(dim=1)
        correct = (z.argmax(dim=1) == targets).view(lines, n).sum(dim=1, dtype=torch.int64)
    line_sum = sample_loss.detach().to(torch.float64).view(lines, n).sum(dim=1)
    return LossReduction(sample_loss=sample_loss, line_sum=line_sum, correct=correct)
