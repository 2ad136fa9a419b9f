"""The plain-torch loss reduction against torch's own losses, and the backend dispatch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslines.kernels import backend_names, register_backend, resolve_backend
from losslines.losses import reduce_loss

CASES = [(1, 7, 3), (4, 16, 10), (3, 5, 100), (11, 64, 10)]  # (lines, n, classes)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("lines, n, classes", CASES)
def test_cross_entropy_matches_torch(lines, n, classes, dtype, rtol):
    g = torch.Generator().manual_seed(lines * 100 + n)
    logits = (torch.randn(lines * n, classes, generator=g) * 4).to(dtype)
    targets = torch.randint(0, classes, (lines * n,), generator=g)
    red = reduce_loss(logits, targets, loss="cross_entropy", lines=lines)
    expected = F.cross_entropy(logits, targets, reduction="none")
    assert red.sample_loss.dtype == dtype and red.line_sum.dtype == torch.float64
    torch.testing.assert_close(red.sample_loss, expected, rtol=rtol, atol=rtol)
    sums = expected.double().numpy().reshape(lines, n).sum(axis=1)
    np.testing.assert_allclose(red.line_sum.numpy(), sums, rtol=rtol)
    correct = (logits.argmax(1) == targets).numpy().reshape(lines, n).sum(axis=1)
    assert red.correct.dtype == torch.int64 and np.array_equal(red.correct.numpy(), correct)


def test_line_sums_accumulate_in_float64():
    # one huge loss and many small ones: a float32 running sum drops the small ones
    n = 4097
    logits = torch.zeros(n, 2)
    logits[0] = torch.tensor([0.0, 3e4])
    logits[1:, 0] = 12.0  # loss of each: log(1 + e^-12) ~ 6.1e-6
    targets = torch.zeros(n, dtype=torch.int64)
    red = reduce_loss(logits, targets, lines=1, backend="torch")
    exact = red.sample_loss.double().sum().item()
    assert red.line_sum.item() == pytest.approx(exact, rel=1e-15)
    float32_sum = float(np.cumsum(red.sample_loss.numpy(), dtype=np.float32)[-1])  # sequential float32
    assert abs(float32_sum - exact) > 1e3 * abs(red.line_sum.item() - exact)


def test_extreme_logits_are_finite_and_exact():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]], dtype=torch.float32)
    targets = torch.tensor([1, 1, 0])
    red = reduce_loss(logits, targets, lines=1, backend="torch")
    assert torch.isfinite(red.sample_loss).all()
    torch.testing.assert_close(red.sample_loss, torch.tensor([2e4, 0.0, np.log(2.0)], dtype=torch.float32), rtol=1e-6, atol=1e-6)
    assert red.correct.item() == 2  # row 3: tie, argmax takes the first maximum (class 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mse_regression_matches_torch(dtype):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3 * 8, 4, generator=g).to(dtype)
    targets = torch.randn(3 * 8, 4, generator=g).to(dtype)
    red = reduce_loss(logits, targets, loss="mse", lines=3)
    expected = F.mse_loss(logits, targets, reduction="none").mean(dim=1)
    torch.testing.assert_close(red.sample_loss, expected)
    np.testing.assert_allclose(red.line_sum.numpy(), expected.double().view(3, 8).sum(1).numpy(), rtol=1e-6)
    assert red.correct.tolist() == [0, 0, 0]
    # the mean over samples is F.mse_loss's default reduction
    assert red.line_sum.sum().item() / 24 == pytest.approx(F.mse_loss(logits, targets).item(), rel=1e-6)


def test_mse_on_class_indices_uses_one_hot_targets_and_counts_correct():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2 * 10, 5, generator=g)
    targets = torch.randint(0, 5, (20,), generator=g)
    red = reduce_loss(logits, targets, loss="mse", lines=2)
    expected = F.mse_loss(logits, F.one_hot(targets, 5).float(), reduction="none").mean(dim=1)
    torch.testing.assert_close(red.sample_loss, expected)
    assert red.correct.tolist() == (logits.argmax(1) == targets).view(2, 10).sum(1).tolist()


def test_half_precision_logits_are_reduced_in_float32():
    logits = torch.randn(6, 3).half()
    red = reduce_loss(logits, torch.tensor([0, 1, 2, 0, 1, 2]), lines=2)
    assert red.sample_loss.dtype == torch.float32
    torch.testing.assert_close(red.sample_loss, F.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 0, 1, 2]),
                                                                reduction="none"))


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "hinge"}, "valid losses: cross_entropy, mse"),
    ({"lines": 4}, "multiple of lines"),
    ({"lines": 0}, "lines must be"),
    ({"backend": "cuda-magic"}, "valid backends: auto, torch"),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reduce_loss(torch.randn(6, 3), torch.zeros(6, dtype=torch.int64), **kwargs)


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="class indices"):
        reduce_loss(torch.randn(6, 3), torch.zeros(6), loss="cross_entropy")
    with pytest.raises(ValueError, match="mse targets"):
        reduce_loss(torch.randn(6, 3), torch.zeros(6, 2), loss="mse")


def test_auto_dispatches_to_the_torch_reference():
    logits = torch.randn(4, 3)
    assert resolve_backend("auto", logits).name == "torch"
    assert "torch" in backend_names() and backend_names()[0] == "auto"
    with pytest.raises(ValueError, match="reserved"):
        register_backend("auto")
