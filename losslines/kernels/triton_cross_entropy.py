"""Fused per-sample cross-entropy in Triton: one read of the logits, no log-softmax in memory.

For row ``r`` with logits ``z_r`` (``C`` classes) and target ``y_r``::

    ℓ_r = (m_r − z_r[y_r]) + log Σ_c exp(z_rc − m_r),      m_r = max_c z_rc      (nats)

computed in float32 with an *online* max/sum-exp over ``BLOCK_C``-wide column tiles, so any
``C`` (2 .. 50,000+) needs one pass and a fixed tile: on a new tile maximum ``m'`` the running sum
is rescaled, ``s ← s·exp(m − m') + Σ_tile exp(z − m')``. The row is correct when its first
maximum (ties resolved to the lowest index, as ``torch.argmax``) is the target.

Numerical contract (the same as ``kernels.reference``, tested against
``F.cross_entropy(reduction="none")``):

* logits of any finite magnitude (±1e4 and beyond) give exact, finite losses;
* ``−inf`` logits (masked classes) contribute nothing; a finite target logit gives a finite loss,
  a ``−inf`` target logit gives ``+inf``; a row of only ``−inf`` gives NaN (as torch);
* every exponent and logarithm is taken of a shifted, guarded value, so masked lanes and padding
  rows never produce NaN or overflow (the interpreter's numpy would warn).

NaN or ``+inf`` logits give NaN losses (as torch); their ``correct`` entries are unspecified.
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from losslines.kernels.reference import LossReduction
from losslines.kernels.triton_online import cross_entropy_from, online_tile
from losslines.kernels.triton_launch import combine_partials, empty_reduction, launch_buffers, tile_shape


@triton.jit
def cross_entropy_kernel(z_ptr, t_ptr, loss_ptr, psum_ptr, pcorrect_ptr,
                         n, C, blocks_per_line, stride_zr, stride_zc, stride_t,
                         BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program: rows ``line*n + block*BLOCK_R + [0, BLOCK_R)`` of one point (masked to ``n``).

    Writes ``loss_ptr[row]`` (float32), ``psum_ptr[pid]`` (float32 sum of its rows' losses) and
    ``pcorrect_ptr[pid]`` (int32 count of its correct rows). Strides are in elements.
    """
    pid = tl.program_id(0)
    line = pid // blocks_per_line
    local = (pid % blocks_per_line) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = local < n
    rows = line.to(tl.int64) * n + local
    row_off = rows * stride_zr
    offs_c = tl.arange(0, BLOCK_C)

    run_max = tl.full([BLOCK_R], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_R], dtype=tl.float32)
    arg = tl.zeros([BLOCK_R], dtype=tl.int32)  # torch.argmax of an all −inf row is 0 as well
    for start in range(0, C, BLOCK_C):
        cols = start + offs_c
        z = tl.load(z_ptr + row_off[:, None] + cols[None, :].to(tl.int64) * stride_zc,
                    mask=row_ok[:, None] & (cols < C)[None, :], other=float("-inf")).to(tl.float32)
        run_max, run_sum, arg = online_tile(z, cols, run_max, run_sum, arg, C)

    target = tl.load(t_ptr + rows * stride_t, mask=row_ok, other=0)
    z_target = tl.load(z_ptr + row_off + target * stride_zc, mask=row_ok, other=0.0).to(tl.float32)
    loss = cross_entropy_from(run_max, run_sum, z_target)
    tl.store(loss_ptr + rows, loss, mask=row_ok)
    tl.store(psum_ptr + pid, tl.sum(tl.where(row_ok, loss, 0.0), axis=0))
    tl.store(pcorrect_ptr + pid, tl.sum(tl.where(row_ok & (arg == target), 1, 0), axis=0))


def cross_entropy_triton(logits: Tensor, targets: Tensor, *, lines: int, n: int,
                         block_rows: int | None = None, block_cols: int | None = None) -> LossReduction:
    """Launch ``cross_entropy_kernel`` over ``[lines * n, C]`` logits (arguments already checked by
    ``triton_backend.cross_entropy_reduction``, the entry the loss record names).

    Args:
        logits: ``[lines * n, C]`` float32/float16/bfloat16, any strides.
        targets: ``[lines * n]`` int32/int64 class indices in ``[0, C)``, any stride.
        lines, n: points and samples per point.
        block_rows, block_cols: tile-shape override (powers of two), see ``triton_launch.tile_shape``.

    Returns:
        ``LossReduction`` with float32 per-sample losses in nats.
    """
    if n == 0:
        return empty_reduction(logits, lines)
    classes = logits.shape[1]
    block_r, block_c = tile_shape(n, classes, block_rows, block_cols)
    blocks, sample_loss, psum, pcorrect = launch_buffers(logits, lines, n, block_r)
    cross_entropy_kernel[(lines * blocks,)](
        logits, targets, sample_loss, psum, pcorrect, n, classes, blocks,
        logits.stride(0), logits.stride(1), targets.stride(0), BLOCK_R=block_r, BLOCK_C=block_c)
    return combine_partials(sample_loss, psum, pcorrect, lines)
