"""The fused Triton cross-entropy against ``F.cross_entropy(reduction="none")``.

Without CUDA the kernels run on CPU in Triton's interpreter: ``TRITON_INTERPRET=1`` is set right
below, before Triton is first imported (Triton fixes the mode then). With CUDA the same tests run
the compiled kernels on the GPU. The interpreter runs the kernel source with numpy one program at
a time, so shapes stay small; the tile-shape overrides (``block_rows``/``block_cols``) make small
shapes cross row-block and column-tile boundaries the way large ones do with the default tiles.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported (by the kernel modules)
pytest.importorskip("triton")

import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from losslines.losses import reduce_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# with CUDA this oracle table runs the compiled kernels, so `pytest -m gpu` (bench/gpu_check.sh) runs it
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else []
LAYOUTS = ("contiguous", "transposed", "strided")
NEG_INF = float("-inf")


def oracle(logits: torch.Tensor, targets: torch.Tensor, lines: int):
    """Per-sample losses, float64 per-line sums and correct counts from torch's own loss, on the
    float32 upcast of the logits."""
    z = logits.float()
    per = F.cross_entropy(z, targets.long(), reduction="none")
    correct = (z.argmax(dim=1) == targets).view(lines, -1).sum(dim=1)
    return per, per.double().view(lines, -1).sum(dim=1), correct


def check_against_oracle(logits, targets, lines, **blocks):
    if blocks:
        from losslines.kernels.triton_cross_entropy import cross_entropy_triton
        red = cross_entropy_triton(logits, targets, lines=lines, n=logits.shape[0] // lines, **blocks)
    else:
        red = reduce_loss(logits, targets, loss="cross_entropy", lines=lines, backend="triton")
    per, line_sum, correct = oracle(logits, targets, lines)
    assert red.sample_loss.dtype == torch.float32 and red.sample_loss.shape == per.shape
    assert red.line_sum.dtype == torch.float64 and red.correct.dtype == torch.int64
    torch.testing.assert_close(red.sample_loss, per, rtol=1e-5, atol=1e-5, equal_nan=True)
    torch.testing.assert_close(red.line_sum, line_sum, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert red.correct.tolist() == correct.tolist()
    return red


@st.composite
def cases(draw):
    """Logits with extreme scales, −inf entries, all-equal rows and ties, in any layout."""
    lines, n, classes = draw(st.integers(1, 4)), draw(st.integers(1, 16)), draw(st.integers(2, 40))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    rows = lines * n
    z = torch.randn(rows, classes, generator=g) * draw(st.sampled_from([1.0, 30.0, 1e4]))
    t = torch.randint(0, classes, (rows,), generator=g)
    if draw(st.booleans()):  # masked classes; the target stays finite unless drawn below
        z[torch.rand(rows, classes, generator=g) < 0.4] = NEG_INF
        z[torch.arange(rows), t] = torch.randn(rows, generator=g)
    if draw(st.booleans()):  # all-equal rows
        z[torch.rand(rows, generator=g) < 0.3] = draw(st.sampled_from([0.0, -1e4, 1e4]))
    if draw(st.booleans()):  # a tie for the maximum, placed after the first maximum
        r = int(torch.randint(0, rows, (1,), generator=g))
        z[r, -1] = z[r].max()
    if draw(st.booleans()):  # a −inf target logit: +inf loss, as torch
        z[0, t[0]] = NEG_INF
        z[0, (t[0] + 1) % classes] = 0.0
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    layout = draw(st.sampled_from(LAYOUTS))
    blocks = draw(st.sampled_from([{}, {"block_rows": 1}, {"block_rows": 4, "block_cols": 8},
                                   {"block_rows": 2, "block_cols": 16}]))
    return z.to(dtype), t, lines, layout, blocks


@settings(max_examples=40 if DEVICE == "cpu" else 12, deadline=None)  # each GPU case may compile
@given(cases())
def test_matches_torch_cross_entropy_over_a_table_of_extremes(relayout, case):
    logits, targets, lines, layout, blocks = case
    check_against_oracle(relayout(logits.to(DEVICE), layout), relayout(targets.to(DEVICE), layout), lines, **blocks)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_extreme_rows_are_exact(dtype):
    logits = torch.tensor([
        [1e4, -1e4, 0.0, 5.0],              # huge margin: loss 2e4 for target 1
        [-1e4, 1e4, 0.0, 5.0],              # target is the max: loss 0
        [1e4, 1e4, -1e4, 1e4],              # ties: argmax is the first maximum
        [NEG_INF, 3.0, NEG_INF, 3.0],       # masked classes around a finite target
        [2.0, 2.0, 2.0, 2.0],               # all equal: log 4
        [NEG_INF, 1.0, 2.0, 3.0],           # target logit −inf: +inf loss
        [NEG_INF, NEG_INF, NEG_INF, NEG_INF],  # nothing finite: NaN, as torch
    ]).to(dtype)
    targets = torch.tensor([1, 1, 0, 3, 2, 0, 0])
    red = check_against_oracle(logits.to(DEVICE), targets.to(DEVICE), 1)
    margin = (logits[0, 0].float() - logits[0, 1].float()).item()  # 2e4 up to the dtype's rounding
    assert red.sample_loss[0].item() == margin and red.sample_loss[1].item() == 0.0
    assert red.sample_loss[4].item() == pytest.approx(math.log(4.0), rel=1e-6)
    assert red.sample_loss[5].item() == math.inf and math.isnan(red.sample_loss[6].item())
    assert torch.isfinite(red.sample_loss[:5]).all()


@pytest.mark.parametrize("classes, block_cols", [(1000, None), (1000, 128), (5000, None)])
def test_streams_wide_rows_in_column_tiles(classes, block_cols):
    g = torch.Generator().manual_seed(classes)
    logits = torch.randn(2 * 3, classes, generator=g) * 20
    logits[0, -1] = 200.0  # the maximum in the last tile
    logits[1, 3] = logits[1, classes - 2] = 300.0  # tied maxima in the first and last tiles
    logits[2, : classes // 2] = NEG_INF  # whole tiles of −inf before the finite ones
    targets = torch.tensor([classes - 1, 3, classes - 1, 0, 7, 9])
    blocks = {"block_cols": block_cols} if block_cols else {}
    red = check_against_oracle(logits.to(DEVICE), targets.to(DEVICE), 2, **blocks)
    assert red.correct.tolist() == [2, 0]  # rows 0 and 1 (first of the tied maxima) are correct


@pytest.mark.parametrize("lines, n, block_rows", [(3, 13, 4), (3, 13, None), (1, 40, 16), (40, 1, None), (5, 7, 8)])
def test_row_counts_that_do_not_fill_the_blocks(lines, n, block_rows):
    # R not a multiple of the row block; one line of many rows; as many lines as rows
    g = torch.Generator().manual_seed(lines * n)
    logits = torch.randn(lines * n, 6, generator=g).to(DEVICE)
    targets = torch.randint(0, 6, (lines * n,), generator=g).to(DEVICE)
    check_against_oracle(logits, targets, lines, **({"block_rows": block_rows} if block_rows else {}))


def test_per_line_partials_are_combined_in_float64():
    # one-row blocks: every float32 partial is one sample loss, so the line sum must be their
    # exact float64 sum (a float32 accumulation would drop the small losses next to the big one)
    from losslines.kernels.triton_cross_entropy import cross_entropy_triton
    logits = torch.zeros(100, 2)
    logits[0] = torch.tensor([0.0, 3e4])
    logits[1:, 0] = 12.0
    targets = torch.zeros(100, dtype=torch.int64)
    red = cross_entropy_triton(logits.to(DEVICE), targets.to(DEVICE), lines=1, n=100, block_rows=1)
    exact = red.sample_loss.double().sum()
    assert red.line_sum.item() == pytest.approx(exact.item(), rel=1e-15)
    assert red.sample_loss.float().sum().item() != pytest.approx(exact.item(), rel=1e-9)


def test_int32_targets_and_bfloat16_agree_with_torch_in_bfloat16():
    g = torch.Generator().manual_seed(8)
    logits = (torch.randn(4 * 5, 10, generator=g) * 3).bfloat16()
    targets = torch.randint(0, 10, (20,), generator=g, dtype=torch.int32)
    logits, targets = logits.to(DEVICE), targets.to(DEVICE)
    red = check_against_oracle(logits, targets, 4)
    native = F.cross_entropy(logits, targets.long(), reduction="none")  # torch's bfloat16 path
    torch.testing.assert_close(red.sample_loss, native.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("targets, match", [
    (torch.tensor([0, 5, 1]), r"class-index targets must lie in \[0, 5\), got values in \[0, 5\]"),
    (torch.zeros(3, dtype=torch.int64, device="meta"), f"targets are on meta but logits on {DEVICE}"),
])
def test_bad_targets_are_refused_before_the_launch(targets, match):
    with pytest.raises(ValueError, match=match):
        reduce_loss(torch.randn(3, 5, device=DEVICE), targets.to(DEVICE) if targets.device.type != "meta" else targets,
                    backend="triton")
