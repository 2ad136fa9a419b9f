"""The compiled Triton kernels at sizes the interpreter cannot reach (GPU only).

The oracle tables of ``test_triton_cross_entropy``/``test_triton_mse`` also run compiled on a GPU
(they carry the ``gpu`` marker there); this module adds large ``R·C``, very wide rows, offsets
beyond 2^31 elements and the kernels' float64 line sums at full size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from losslines.losses import reduce_loss

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SHAPES = [(1, 1, 2), (20, 5000, 10), (7, 333, 100), (4, 1024, 1000), (2, 64, 50_000), (64, 2048, 10)]


def _inputs(lines, n, classes, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    logits = (torch.randn(lines * n, classes, generator=g, device="cuda") * 8).to(dtype)
    targets = torch.randint(0, classes, (lines * n,), generator=g, device="cuda")
    return logits, targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("lines, n, classes", SHAPES)
def test_compiled_cross_entropy_matches_torch_at_scale(lines, n, classes, dtype):
    logits, targets = _inputs(lines, n, classes, dtype, seed=lines * n)
    logits[::7, 1] = float("-inf")  # masked classes
    targets[::7] = 0
    red = reduce_loss(logits, targets, loss="cross_entropy", lines=lines, backend="triton")
    per = F.cross_entropy(logits.float(), targets, reduction="none")
    torch.testing.assert_close(red.sample_loss, per, rtol=1e-5, atol=1e-5)
    # float32 partials over at most BLOCK_R (<= 256) rows, combined in float64
    torch.testing.assert_close(red.line_sum, per.double().view(lines, n).sum(1), rtol=1e-5, atol=1e-6)
    assert torch.equal(red.correct, (logits.float().argmax(1) == targets).view(lines, n).sum(1))
    # and the transposed layout reads the same numbers (up to float32 summation order)
    again = reduce_loss(logits.t().contiguous().t(), targets, lines=lines, backend="triton")
    torch.testing.assert_close(again.sample_loss, red.sample_loss, rtol=1e-6, atol=1e-6)
    assert torch.equal(again.correct, red.correct)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("lines, n, classes", SHAPES)
@pytest.mark.parametrize("kind", ["regression", "classes"])
def test_compiled_mse_matches_torch_at_scale(lines, n, classes, dtype, kind):
    logits, targets = _inputs(lines, n, classes, dtype, seed=lines + n)
    if kind == "regression":
        targets = torch.randn_like(logits, dtype=torch.float32)
    red = reduce_loss(logits, targets, loss="mse", lines=lines, backend="triton")
    ref = reduce_loss(logits, targets, loss="mse", lines=lines, backend="torch")
    torch.testing.assert_close(red.sample_loss, ref.sample_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(red.line_sum, ref.line_sum, rtol=1e-5, atol=1e-6)
    assert torch.equal(red.correct, ref.correct)


def test_offsets_beyond_two_to_the_31_elements():
    rows, classes = 2**16 + 3, 2**15 + 1  # 2.15e9 bfloat16 logits, 4.3 GB
    if torch.cuda.mem_get_info()[0] < 16 * 2**30:
        pytest.skip("needs 16 GiB of free GPU memory")
    logits = torch.empty(rows, classes, dtype=torch.bfloat16, device="cuda").normal_(0, 4)
    targets = torch.randint(0, classes, (rows,), device="cuda")
    red = reduce_loss(logits, targets, lines=1, backend="triton")
    for part in (slice(0, 64), slice(rows - 64, rows)):  # the reference on slices: no fp32 copy of it all
        ref = F.cross_entropy(logits[part].float(), targets[part], reduction="none")
        torch.testing.assert_close(red.sample_loss[part], ref, rtol=1e-5, atol=1e-5)
    assert red.line_sum.item() == pytest.approx(red.sample_loss.double().sum().item(), rel=1e-6)
    del logits
