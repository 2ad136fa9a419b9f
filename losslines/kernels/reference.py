"""Plain-PyTorch per-sample losses: the references every fused kernel is tested against.

Each function takes ``rows [R, C]`` (model outputs, one row per sample and point; float16 and
bfloat16 are computed in float32) and targets, and returns ``(sample_loss [R], correct [R])``:
the per-sample loss and whether each row's prediction is correct (``None`` where accuracy is
undefined). They are differentiable (reverse and forward mode): the exact slopes at s = 0
differentiate them. ``losslines.losses`` registers them in the loss records and turns them into
line-major reductions (float64 per-point sums, correct counts: :class:`LossReduction`).

* cross-entropy: ``ℓ_r = log Σ_c exp(z_rc − m_r) − (z_r[y_r] − m_r)`` with ``m_r = max_c z_rc``
  (nats), numerically safe and precise for logits of any magnitude; correct when
  ``argmax(z_r) == y_r`` (first maximum on ties, as ``torch.argmax``).
* mse: ``ℓ_r = mean_c (z_rc − y_rc)^2`` (the per-sample term whose mean over samples is
  ``F.mse_loss(reduction="mean")``). Float targets ``[R, C]`` are regression targets (accuracy
  undefined); integer targets ``[R]`` are class indices whose one-hot vectors are the targets
  of a classifier trained with squared error (correct when ``argmax(z_r) == y_r``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LossReduction:
    """Per-sample losses and per-point reductions of ``lines`` points.

    Attributes:
        sample_loss: ``[lines * n]`` per-sample loss (float64 for float64 outputs, float32
            otherwise), line-major.
        line_sum: ``[lines]`` float64, sum over the ``n`` samples of each point.
        correct: ``[lines]`` int64, number of correct predictions per point (zeros where
            accuracy is undefined).
        counted: ``[lines]`` int64, predictions counted per point, the denominator of the
            accuracy (e.g. the non-ignored tokens of a language model); None: one per sample.
    """

    sample_loss: Tensor
    line_sum: Tensor
    correct: Tensor
    counted: Tensor | None = None


def _computable(rows: Tensor) -> Tensor:
    return rows if rows.dtype in (torch.float32, torch.float64) else rows.float()


def cross_entropy_reference(rows: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample cross-entropy (nats) and correctness of ``rows [R, C]`` against class indices ``[R]``."""
    z = _computable(rows)
    # shift by the row maximum first: log Σ exp(z − m) − (z_y − m) keeps full precision even when
    # the logits are huge (logsumexp(z) − z_y would cancel 1e4-sized terms in float32)
    shifted = z - z.max(dim=1, keepdim=True).values.detach()
    picked = shifted.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    sample_loss = torch.log(torch.exp(shifted).sum(dim=1)) - picked
    return sample_loss, z.argmax(dim=1) == targets


def mse_reference(rows: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | None]:
    """Per-sample mean squared error of ``rows [R, C]`` against float ``[R, C]`` targets (no
    accuracy) or integer class indices ``[R]`` (one-hot targets, with accuracy)."""
    z = _computable(rows)
    if targets.is_floating_point():
        diff = z - targets.to(z.dtype)
        return (diff * diff).mean(dim=1), None
    diff = z - torch.nn.functional.one_hot(targets.long(), z.shape[1]).to(z.dtype)
    return (diff * diff).mean(dim=1), z.argmax(dim=1) == targets


IGNORE_INDEX = -100  # token targets equal to this are not predicted (padding, prompt tokens)


def token_cross_entropy_reference(rows: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample mean token cross-entropy (nats) of ``rows [R, T, V]`` against token ids
    ``[R, T]``, targets equal to ``IGNORE_INDEX`` left out, and the number of correctly
    predicted (argmax) tokens per sample. A sample without any counted token has loss NaN.

    The per-token loss is the cross-entropy reference's; sample r's loss is the mean over its own
    counted tokens, ``ℓ_r = Σ_t m_rt·ce_rt / Σ_t m_rt`` with ``m_rt = [y_rt != IGNORE_INDEX]``.
    """
    r, t, v = rows.shape
    valid = targets != IGNORE_INDEX
    safe = torch.where(valid, targets, torch.zeros_like(targets)).reshape(r * t)
    per_token, hit = cross_entropy_reference(rows.reshape(r * t, v), safe)
    per_token = torch.where(valid.reshape(r * t), per_token, torch.zeros_like(per_token)).view(r, t)
    counted = valid.sum(dim=1)
    sample_loss = per_token.sum(dim=1) / counted.to(per_token.dtype)
    correct = (hit.view(r, t) & valid).sum(dim=1, dtype=torch.int64)
    return sample_loss, correct
