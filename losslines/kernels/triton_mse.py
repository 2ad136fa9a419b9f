"""Fused per-sample mean squared error in Triton, for regression and one-hot class targets.

For row ``r`` with outputs ``z_r`` and targets ``y_r`` (``C`` values each)::

    ℓ_r = (1/C) Σ_c (z_rc − y_rc)²

accumulated in float32 over ``BLOCK_C``-wide column tiles (so any ``C``), i.e.
``F.mse_loss(z, y, reduction="none").mean(dim=1)``, the per-sample term whose mean over samples is
``F.mse_loss``'s default. Two target kinds, as in ``kernels.reference``:

* float targets ``[R, C]`` (regression, any strides): ``correct`` is all zeros (accuracy is
  undefined);
* integer class indices ``[R]``: ``y_r`` is the one-hot vector of the index (built in registers,
  never in memory) and a row is correct when its first maximum (``torch.argmax``) is the index.

A ``−inf`` output gives ``+inf`` against a finite target (as torch).
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from losslines.kernels.reference import LossReduction
from losslines.kernels.triton_launch import combine_partials, empty_reduction, launch_buffers, tile_shape


@triton.jit
def mse_kernel(z_ptr, y_ptr, loss_ptr, psum_ptr, pcorrect_ptr,
               n, C, blocks_per_line, stride_zr, stride_zc, stride_yr, stride_yc,
               ONE_HOT: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program: rows ``line*n + block*BLOCK_R + [0, BLOCK_R)`` of one point (masked to ``n``).

    ``ONE_HOT``: ``y_ptr`` holds class indices ``[R]`` (stride ``stride_yr``; ``stride_yc`` unused),
    else float targets ``[R, C]``. Writes ``loss_ptr[row]`` (float32), ``psum_ptr[pid]`` (float32
    sum of its rows' losses), ``pcorrect_ptr[pid]`` (int32 correct rows; 0 for regression).
    """
    pid = tl.program_id(0)
    line = pid // blocks_per_line
    local = (pid % blocks_per_line) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = local < n
    rows = line.to(tl.int64) * n + local
    offs_c = tl.arange(0, BLOCK_C)

    squares = tl.zeros([BLOCK_R], dtype=tl.float32)
    run_max = tl.full([BLOCK_R], float("-inf"), tl.float32)
    arg = tl.zeros([BLOCK_R], dtype=tl.int32)
    if ONE_HOT:
        target = tl.load(y_ptr + rows * stride_yr, mask=row_ok, other=-1)
    else:
        target = tl.full([BLOCK_R], -1, tl.int32)  # matches no argmax: regression counts 0 correct
    for start in range(0, C, BLOCK_C):
        cols = start + offs_c
        inside = row_ok[:, None] & (cols < C)[None, :]
        z = tl.load(z_ptr + (rows * stride_zr)[:, None] + cols[None, :].to(tl.int64) * stride_zc,
                    mask=inside, other=0.0).to(tl.float32)
        if ONE_HOT:
            y = tl.where(cols[None, :] == target[:, None], 1.0, 0.0)
            z_in = tl.where(inside, z, float("-inf"))
            tile_max = tl.max(z_in, axis=1)
            tile_arg = tl.min(tl.where(z_in == tile_max[:, None], cols[None, :], C), axis=1)
            arg = tl.where(tile_max > run_max, tile_arg, arg)  # strict: earlier tiles win ties
            run_max = tl.maximum(run_max, tile_max)
        else:
            y = tl.load(y_ptr + (rows * stride_yr)[:, None] + cols[None, :].to(tl.int64) * stride_yc,
                        mask=inside, other=0.0).to(tl.float32)
        diff = z - y  # 0 in masked lanes: both loads fill 0 there
        squares += tl.sum(diff * diff, axis=1)

    loss = squares / C
    tl.store(loss_ptr + rows, loss, mask=row_ok)
    tl.store(psum_ptr + pid, tl.sum(tl.where(row_ok, loss, 0.0), axis=0))
    tl.store(pcorrect_ptr + pid, tl.sum(tl.where(row_ok & (arg == target), 1, 0), axis=0))


def mse_triton(logits: Tensor, targets: Tensor, *, lines: int, n: int,
               block_rows: int | None = None, block_cols: int | None = None) -> LossReduction:
    """Launch ``mse_kernel`` over ``[lines * n, C]`` outputs (arguments already checked by
    ``triton_backend.mse_reduction``, the entry the loss record names).

    Args:
        logits: ``[lines * n, C]`` float32/float16/bfloat16 outputs, any strides.
        targets: ``[lines * n, C]`` floats (any strides) or ``[lines * n]`` int32/int64 class
            indices in ``[0, C)``.
        lines, n: points and samples per point.
        block_rows, block_cols: tile-shape override (powers of two), see ``triton_launch.tile_shape``.

    Returns:
        ``LossReduction`` with float32 per-sample mean squared errors.
    """
    if n == 0:
        return empty_reduction(logits, lines)
    classes = logits.shape[1]
    one_hot = not targets.is_floating_point()
    block_r, block_c = tile_shape(n, classes, block_rows, block_cols)
    blocks, sample_loss, psum, pcorrect = launch_buffers(logits, lines, n, block_r)
    stride_yc = 0 if one_hot else targets.stride(1)
    mse_kernel[(lines * blocks,)](
        logits, targets, sample_loss, psum, pcorrect, n, classes, blocks,
        logits.stride(0), logits.stride(1), targets.stride(0), stride_yc,
        ONE_HOT=one_hot, BLOCK_R=block_r, BLOCK_C=block_c)
    return combine_partials(sample_loss, psum, pcorrect, lines)
