"""The conformance suite of loss kernels: every (loss, backend) kernel passes the same tests.

The cases are read from the loss registry: every kernel a loss record names (``Loss.kernels``)
runs through them against that loss's torch reference — same fields, dtypes and values, in any
memory layout, for any number of rows per point, with no samples at all, refusing targets it
cannot take before launching. A new kernel is tested by registering it; a new loss needs one
entry in ``EXAMPLES``. Kernel-specific edge cases (extreme logits, column tiles, tile shapes)
live in each kernel's own test module.

Without CUDA the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` is set below,
before Triton is first imported); with CUDA the compiled kernels run and these tests are ``gpu``.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported (by the kernel modules)
pytest.importorskip("triton")

from losslines.losses import get_loss, loss_names, reduce_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else []
LAYOUTS = ("contiguous", "transposed", "strided")


def _classes(g, rows, columns):
    return torch.randn(rows, columns, generator=g) * 4, torch.randint(0, columns, (rows,), generator=g)


def _regression(g, rows, columns):
    return torch.randn(rows, columns, generator=g), torch.randn(rows, columns, generator=g)


def _tokens(g, rows, columns, positions=5):
    logits = torch.randn(rows, positions, columns, generator=g) * 4
    ids = torch.randint(0, columns, (rows, positions), generator=g)
    ids[torch.rand(rows, positions, generator=g) < 0.3] = -100  # not counted
    ids[:, 0] = torch.randint(0, columns, (rows,), generator=g)  # every sample counts a token
    return logits, ids


# loss -> target kinds it takes: (name, maker(generator, rows, columns) -> (outputs, targets))
EXAMPLES = {
    "cross_entropy": [("classes", _classes)],
    "mse": [("classes", _classes), ("regression", _regression)],
    "token_cross_entropy": [("tokens", _tokens)],
}

KERNELS = [(loss, backend) for loss in loss_names() for backend in get_loss(loss).kernels]
CASES = [pytest.param(loss, backend, kind, make, id=f"{loss}-{backend}-{kind}")
         for loss, backend in KERNELS for kind, make in EXAMPLES.get(loss, [])]


def test_every_kernel_has_examples():
    assert KERNELS, "no loss registers a kernel: nothing to run this suite on"
    missing = sorted({loss for loss, _ in KERNELS if loss not in EXAMPLES})
    assert not missing, f"losses with kernels but no EXAMPLES entry: {missing}"


def _pair(make, lines, n, columns, seed):
    outputs, targets = make(torch.Generator().manual_seed(seed), lines * n, columns)
    return outputs.to(DEVICE), targets.to(DEVICE)


@pytest.mark.parametrize("lines, n, columns", [(1, 7, 3), (3, 13, 10), (40, 1, 5), (2, 64, 37)])
@pytest.mark.parametrize("loss, backend, kind, make", CASES)
def test_the_kernel_equals_the_reference(loss, backend, kind, make, lines, n, columns):
    outputs, targets = _pair(make, lines, n, columns, seed=lines * 100 + n)
    ours = reduce_loss(outputs, targets, loss=loss, lines=lines, backend=backend)
    ref = reduce_loss(outputs, targets, loss=loss, lines=lines, backend="torch")
    assert ours.sample_loss.dtype == ref.sample_loss.dtype and ours.sample_loss.shape == ref.sample_loss.shape
    assert ours.line_sum.dtype == torch.float64 and ours.correct.dtype == torch.int64
    torch.testing.assert_close(ours.sample_loss, ref.sample_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.line_sum, ref.line_sum, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.correct, ref.correct)
    assert (ours.counted is None) == (ref.counted is None)
    if ref.counted is not None:
        assert torch.equal(ours.counted, ref.counted)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss, backend, kind, make", CASES)
def test_low_precision_outputs_are_computed_in_float32(loss, backend, kind, make, dtype):
    outputs, targets = _pair(make, 2, 9, 6, seed=5)
    outputs = outputs.to(dtype)
    ours = reduce_loss(outputs, targets, loss=loss, lines=2, backend=backend)
    ref = reduce_loss(outputs, targets, loss=loss, lines=2, backend="torch")
    assert ours.sample_loss.dtype == torch.float32
    torch.testing.assert_close(ours.sample_loss, ref.sample_loss, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss, backend, kind, make", CASES)
def test_memory_layouts_give_identical_results(loss, backend, kind, make, relayout, assert_same_layouts):
    outputs, targets = _pair(make, 3, 11, 13, seed=3)
    base = reduce_loss(outputs, targets, loss=loss, lines=3, backend=backend)
    for layout in LAYOUTS[1:]:
        red = reduce_loss(relayout(outputs, layout), relayout(targets, layout), loss=loss, lines=3, backend=backend)
        assert_same_layouts(red.sample_loss, base.sample_loss)
        assert_same_layouts(red.line_sum, base.line_sum)
        assert torch.equal(red.correct, base.correct)


@pytest.mark.parametrize("loss, backend, kind, make", CASES)
def test_no_samples_give_zero_sums(loss, backend, kind, make):
    outputs, targets = _pair(make, 1, 1, 5, seed=0)
    red = reduce_loss(outputs[:0], targets[:0], loss=loss, lines=2, backend=backend)
    assert red.sample_loss.shape == (0,) and red.line_sum.tolist() == [0.0, 0.0] and red.correct.tolist() == [0, 0]


@pytest.mark.parametrize("loss, backend, kind, make", [c for c in CASES if c.values[2] in ("classes", "tokens")])
def test_class_indices_outside_the_outputs_are_refused_before_the_launch(loss, backend, kind, make):
    outputs, targets = _pair(make, 1, 3, 5, seed=0)
    for bad in (5, -1):
        wrong = targets.clone()
        wrong.view(-1)[1] = bad
        with pytest.raises(ValueError, match=r"\[0, 5\)"):
            reduce_loss(outputs, wrong, loss=loss, backend=backend)
