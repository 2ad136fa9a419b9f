"""What the fused loss kernels share on the host side: the tile shape, output buffers, and the
float64 combination of per-block partial sums.

Every loss kernel maps one program to ``BLOCK_R`` consecutive rows of *one* point (line-major
rows ``j*n + b*BLOCK_R ..``, ``b < ceil(n / BLOCK_R)``), streams over the ``C`` columns in
``BLOCK_C`` tiles, writes the per-row losses and one float32 partial loss sum and one int32
correct count per program. ``combine_partials`` adds the ``ceil(n / BLOCK_R)`` partials of each
point in float64, so float32 rounding only ever acts within one block of rows.

Importing this module imports Triton.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from losslines.kernels.reference import LossReduction

TILE_ELEMENTS = 4096  # logits per [BLOCK_R, BLOCK_C] tile: registers per program on a GPU
MAX_BLOCK_C = 1024  # wider rows are streamed in tiles of this many columns


def tile_shape(n: int, classes: int, block_rows: int | None = None,
               block_cols: int | None = None) -> tuple[int, int]:
    """``(BLOCK_R, BLOCK_C)``: powers of two, ``BLOCK_C <= MAX_BLOCK_C`` covering ``classes`` if it
    can, ``BLOCK_R`` filling ``TILE_ELEMENTS`` but not beyond the ``n`` rows of one point.

    ``block_rows``/``block_cols`` override the choice (tests use them to exercise the streaming
    loop and partial row blocks with small shapes); they must be powers of two.
    """
    for name, value in (("block_rows", block_rows), ("block_cols", block_cols)):
        if value is not None and (value < 1 or value & (value - 1)):
            raise ValueError(f"{name} must be a power of two >= 1, got {value}")
    cols = block_cols or min(triton.next_power_of_2(max(classes, 1)), MAX_BLOCK_C)
    rows = block_rows or max(1, min(triton.next_power_of_2(max(n, 1)), TILE_ELEMENTS // cols))
    return rows, cols


def launch_buffers(logits: Tensor, lines: int, n: int, block_rows: int) -> tuple[int, Tensor, Tensor, Tensor]:
    """``(blocks_per_line, sample_loss [lines*n] f32, partial_sum [lines*blocks] f32,
    partial_correct [lines*blocks] i32)``, uninitialised, on the logits' device."""
    blocks = triton.cdiv(n, block_rows)
    dev = logits.device
    return (blocks, torch.empty(lines * n, dtype=torch.float32, device=dev),
            torch.empty(lines * blocks, dtype=torch.float32, device=dev),
            torch.empty(lines * blocks, dtype=torch.int32, device=dev))


def combine_partials(sample_loss: Tensor, partial_sum: Tensor, partial_correct: Tensor,
                     lines: int) -> LossReduction:
    """The ``LossReduction`` of per-block partials ``[lines * blocks]``: float64 line sums and
    int64 correct counts (per point, over its blocks)."""
    return LossReduction(
        sample_loss=sample_loss,
        line_sum=partial_sum.view(lines, -1).to(torch.float64).sum(dim=1),
        correct=partial_correct.view(lines, -1).sum(dim=1, dtype=torch.int64),
    )


def empty_reduction(logits: Tensor, lines: int) -> LossReduction:
    """The reduction of ``n = 0`` samples per point (no kernel launch)."""
    dev = logits.device
    return LossReduction(sample_loss=torch.empty(0, dtype=torch.float32, device=dev),
                         line_sum=torch.zeros(lines, dtype=torch.float64, device=dev),
                         correct=torch.zeros(lines, dtype=torch.int64, device=dev))
