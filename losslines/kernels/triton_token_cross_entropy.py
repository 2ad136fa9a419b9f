"""Fused per-sample *token* cross-entropy in Triton: language-model logits ``[R, T, V]`` read
once, no log-softmax in memory, tokens reduced to per-sample means.

Sample ``r`` has ``T`` positions with logits ``z_rt`` (``V`` classes, e.g. 50,257 for GPT-2) and
target ids ``y_rt``; positions whose target is ``IGNORE_INDEX`` (-100: padding, prompt) are not
counted. With ``ce_rt`` the cross-entropy of ``triton_cross_entropy`` (online max/sum-exp over
``BLOCK_V``-wide vocabulary tiles, the same guarded arithmetic)::

    ℓ_r = Σ_t m_rt · ce_rt / Σ_t m_rt,      m_rt = [y_rt != IGNORE_INDEX]      (nats)

One program covers ``BLOCK_T`` positions of one sample and streams the vocabulary once; it
writes the float32 sum of its counted token losses, their number and the number of correct
(first-argmax) predictions. The host adds each sample's ``ceil(T / BLOCK_T)`` partials in
float64 and divides by its count. A sample with no counted token gets NaN (0/0); the loss record
refuses such samples before any kernel runs. Ignored positions are never read.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from losslines.kernels.reference import IGNORE_INDEX, LossReduction
from losslines.kernels.triton_online import cross_entropy_from, online_tile
from losslines.kernels.triton_launch import tile_shape


@triton.jit
def token_cross_entropy_kernel(z_ptr, t_ptr, psum_ptr, pcount_ptr, pcorrect_ptr,
                               T, V, blocks_per_sample, stride_zr, stride_zt, stride_zv, stride_tr, stride_tt,
                               IGNORE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr):
    """One program: positions ``block*BLOCK_T + [0, BLOCK_T)`` of sample ``pid // blocks_per_sample``.

    Writes ``psum_ptr[pid]`` (float32 sum of the counted token losses), ``pcount_ptr[pid]`` and
    ``pcorrect_ptr[pid]`` (int32). Strides are in elements.
    """
    pid = tl.program_id(0)
    sample = pid // blocks_per_sample
    tok = (pid % blocks_per_sample) * BLOCK_T + tl.arange(0, BLOCK_T)
    in_range = tok < T
    target = tl.load(t_ptr + sample.to(tl.int64) * stride_tr + tok.to(tl.int64) * stride_tt,
                     mask=in_range, other=IGNORE)
    counted = in_range & (target != IGNORE)
    safe_target = tl.where(counted, target, 0).to(tl.int64)
    row_off = sample.to(tl.int64) * stride_zr + tok.to(tl.int64) * stride_zt
    offs_v = tl.arange(0, BLOCK_V)

    run_max = tl.full([BLOCK_T], float("-inf"), tl.float32)
    run_sum = tl.zeros([BLOCK_T], dtype=tl.float32)
    arg = tl.zeros([BLOCK_T], dtype=tl.int32)
    for start in range(0, V, BLOCK_V):
        cols = start + offs_v
        z = tl.load(z_ptr + row_off[:, None] + cols[None, :].to(tl.int64) * stride_zv,
                    mask=counted[:, None] & (cols < V)[None, :], other=float("-inf")).to(tl.float32)
        run_max, run_sum, arg = online_tile(z, cols, run_max, run_sum, arg, V)

    z_target = tl.load(z_ptr + row_off + safe_target * stride_zv, mask=counted, other=0.0).to(tl.float32)
    loss = cross_entropy_from(run_max, run_sum, z_target)
    tl.store(psum_ptr + pid, tl.sum(tl.where(counted, loss, 0.0), axis=0))
    tl.store(pcount_ptr + pid, tl.sum(tl.where(counted, 1, 0), axis=0))
    tl.store(pcorrect_ptr + pid, tl.sum(tl.where(counted & (arg == target), 1, 0), axis=0))


def token_cross_entropy_triton(logits: Tensor, targets: Tensor, *, lines: int, n: int,
                               block_tokens: int | None = None, block_vocab: int | None = None) -> LossReduction:
    """Launch ``token_cross_entropy_kernel`` over ``[lines * n, T, V]`` logits (arguments already
    checked by ``triton_backend.token_cross_entropy_reduction``, the entry the loss record names).

    Args:
        logits: ``[lines * n, T, V]`` float32/float16/bfloat16, any strides.
        targets: ``[lines * n, T]`` int32/int64 token ids in ``[0, V)`` or ``IGNORE_INDEX``, any strides.
        lines, n: points and samples per point.
        block_tokens, block_vocab: tile-shape override (powers of two), see ``triton_launch.tile_shape``.

    Returns:
        ``LossReduction``: float32 per-sample mean token losses (nats), float64 line sums,
        int64 correct and counted tokens per point.
    """
    rows, t, v = logits.shape
    dev = logits.device
    if rows == 0 or t == 0:
        return LossReduction(sample_loss=torch.full((rows,), float("nan"), dtype=torch.float32, device=dev),
                             line_sum=torch.zeros(lines, dtype=torch.float64, device=dev),
                             correct=torch.zeros(lines, dtype=torch.int64, device=dev),
                             counted=torch.zeros(lines, dtype=torch.int64, device=dev))
    block_t, block_v = tile_shape(t, v, block_tokens, block_vocab)
    blocks = triton.cdiv(t, block_t)
    psum = torch.empty(rows * blocks, dtype=torch.float32, device=dev)
    pcount = torch.empty(rows * blocks, dtype=torch.int32, device=dev)
    pcorrect = torch.empty(rows * blocks, dtype=torch.int32, device=dev)
    token_cross_entropy_kernel[(rows * blocks,)](
        logits, targets, psum, pcount, pcorrect, t, v, blocks,
        logits.stride(0), logits.stride(1), logits.stride(2), targets.stride(0), targets.stride(1),
        IGNORE=IGNORE_INDEX, BLOCK_T=block_t, BLOCK_V=block_v)
    count = pcount.view(rows, blocks).sum(dim=1, dtype=torch.int64)
    sample_loss = (psum.view(rows, blocks).to(torch.float64).sum(dim=1) / count).to(torch.float32)
    correct = pcorrect.view(rows, blocks).sum(dim=1, dtype=torch.int64)
    return LossReduction(sample_loss=sample_loss,
                         line_sum=sample_loss.to(torch.float64).view(lines, n).sum(dim=1),
                         correct=correct.view(lines, n).sum(dim=1),
                         counted=count.view(lines, n).sum(dim=1))
