"""The fused Triton MSE against ``F.mse_loss(reduction="none").mean(dim=1)``, for regression
targets and one-hot class targets.

Without CUDA the kernels run on CPU in Triton's interpreter: ``TRITON_INTERPRET=1`` is set right
below, before Triton is first imported. With CUDA the same tests run the compiled kernels.
"""

from __future__ import annotations

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


def check_against_oracle(logits, targets, lines, **blocks):
    """Compare with torch's MSE on the float32 upcast; float targets count no correct rows,
    class indices count ``argmax == index``."""
    if blocks:
        from losslines.kernels.triton_mse import mse_triton
        red = mse_triton(logits, targets, lines=lines, n=logits.shape[0] // lines, **blocks)
    else:
        red = reduce_loss(logits, targets, loss="mse", lines=lines, backend="triton")
    z = logits.float()
    one_hot = not targets.is_floating_point()
    y = F.one_hot(targets.long(), z.shape[1]).float() if one_hot else targets.float()
    per = F.mse_loss(z, y, reduction="none").mean(dim=1)
    assert red.sample_loss.dtype == torch.float32 and red.line_sum.dtype == torch.float64
    torch.testing.assert_close(red.sample_loss, per, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(red.line_sum, per.double().view(lines, -1).sum(dim=1), rtol=1e-5, atol=1e-6)
    correct = (z.argmax(dim=1) == targets).view(lines, -1).sum(dim=1) if one_hot else torch.zeros(lines)
    assert red.correct.dtype == torch.int64 and red.correct.tolist() == correct.long().tolist()
    return red


@st.composite
def cases(draw):
    lines, n, classes = draw(st.integers(1, 4)), draw(st.integers(1, 16)), draw(st.integers(1, 40))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    rows = lines * n
    z = torch.randn(rows, classes, generator=g) * draw(st.sampled_from([1.0, 1e2, 1e4]))
    if draw(st.booleans()):  # all-equal rows: argmax is the first column
        z[torch.rand(rows, generator=g) < 0.3] = draw(st.sampled_from([0.0, -1e4, 1e4]))
    if draw(st.booleans()):
        targets = torch.randint(0, classes, (rows,), generator=g, dtype=draw(st.sampled_from([torch.int64, torch.int32])))
    else:
        targets = (torch.randn(rows, classes, generator=g) * 3).to(draw(st.sampled_from([torch.float32, torch.bfloat16])))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    layouts = draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(LAYOUTS))
    blocks = draw(st.sampled_from([{}, {"block_rows": 1}, {"block_rows": 4, "block_cols": 8},
                                   {"block_rows": 2, "block_cols": 16}]))
    return z.to(dtype), targets, lines, layouts, blocks


@settings(max_examples=40 if DEVICE == "cpu" else 12, deadline=None)  # each GPU case may compile
@given(cases())
def test_matches_torch_mse_over_a_table_of_shapes_and_targets(relayout, case):
    logits, targets, lines, (layout_z, layout_y), blocks = case
    check_against_oracle(relayout(logits.to(DEVICE), layout_z), relayout(targets.to(DEVICE), layout_y), lines, **blocks)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_extreme_outputs(dtype):
    logits = torch.tensor([[1e4, -1e4, 0.0], [5.0, 5.0, 5.0], [NEG_INF, 1.0, 2.0]]).to(dtype)
    red = check_against_oracle(logits.to(DEVICE), torch.tensor([1, 2, 2]).to(DEVICE), 1)
    assert red.correct.item() == 1  # row 2 (argmax 2); the all-equal row's argmax is column 0
    assert red.sample_loss[2].item() == float("inf") and torch.isfinite(red.sample_loss[:2]).all()
    targets = torch.tensor([[1e4, 1e4, 1e4], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    check_against_oracle(logits.to(DEVICE), targets.to(DEVICE), 1)


@pytest.mark.parametrize("classes, block_cols", [(1000, None), (1000, 64), (5000, None)])
@pytest.mark.parametrize("kind", ["regression", "classes"])
def test_streams_wide_rows_in_column_tiles(classes, block_cols, kind):
    g = torch.Generator().manual_seed(classes)
    logits = torch.randn(2 * 2, classes, generator=g)
    logits[0, -1] = 9.0  # the maximum in the last tile
    logits[1, 2] = logits[1, classes - 3] = 9.0  # tied maxima in the first and last tiles
    if kind == "classes":
        targets = torch.tensor([classes - 1, 2, 0, 1])
    else:
        targets = torch.randn(4, classes, generator=g)
    blocks = {"block_cols": block_cols} if block_cols else {}
    red = check_against_oracle(logits.to(DEVICE), targets.to(DEVICE), 2, **blocks)
    assert red.correct.tolist() == ([2, 0] if kind == "classes" else [0, 0])


@pytest.mark.parametrize("lines, n, block_rows", [(3, 13, 4), (1, 40, 16), (40, 1, None)])
def test_row_counts_that_do_not_fill_the_blocks(lines, n, block_rows):
    g = torch.Generator().manual_seed(lines + n)
    logits = torch.randn(lines * n, 5, generator=g).to(DEVICE)
    targets = torch.randint(0, 5, (lines * n,), generator=g).to(DEVICE)
    check_against_oracle(logits, targets, lines, **({"block_rows": block_rows} if block_rows else {}))
