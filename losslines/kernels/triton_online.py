"""The online softmax pieces every fused cross-entropy kernel shares (Triton device functions).

A row's logits arrive in tiles of ``BLOCK`` columns; the running maximum ``m``, the running sum
``s = Σ exp(z − m)`` and the first arg-maximum are updated per tile, rescaling ``s`` when the
maximum grows (``s ← s·exp(m − m') + Σ_tile exp(z − m')``). Shifts are guarded so that rows that
have seen only ``−inf`` (masked classes, padding rows) never compute ``(−inf) − (−inf)``.
Importing this module imports Triton.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def online_tile(z, cols, run_max, run_sum, arg, C):
    """Fold one ``[R, BLOCK]`` tile ``z`` (columns ``cols``, masked entries ``−inf``) into the
    running ``(max, sum, argmax)`` of its rows; ties keep the earliest column (torch.argmax)."""
    tile_max = tl.max(z, axis=1)
    tile_arg = tl.min(tl.where(z == tile_max[:, None], cols[None, :], C), axis=1)
    arg = tl.where(tile_max > run_max, tile_arg, arg)  # strict: earlier tiles win ties
    new_max = tl.maximum(run_max, tile_max)
    # shift by 0 while a row has seen only −inf: exp(−inf − 0) = 0 and never (−inf) − (−inf)
    shift = tl.where(new_max == float("-inf"), 0.0, new_max)
    run_sum = run_sum * tl.exp(run_max - shift) + tl.sum(tl.exp(z - shift[:, None]), axis=1)
    return new_max, run_sum, arg


@triton.jit
def cross_entropy_from(run_max, run_sum, z_target):
    """``log Σ exp(z) − z_target`` of rows folded by ``online_tile``; NaN for a row with no logit
    above ``−inf`` (as torch)."""
    seen = run_sum > 0.0
    shift = tl.where(seen, run_max, 0.0)
    loss = (shift - z_target) + tl.log(tl.where(seen, run_sum, 1.0))
    return tl.where(seen, loss, float("nan"))
