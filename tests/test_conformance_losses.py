"""The conformance suite of loss records: every registered loss passes the same tests.

Each loss needs one entry in ``CASES`` (model outputs, fitting targets, targets it must refuse);
a registered loss without one fails ``test_every_registered_loss_has_a_case``. The tests pin what
the rest of losslines relies on: the measured loss is the trained loss (the plain-SGD slope
check depends on it), line sums are float64 sums of the per-sample losses, stacking points does
not change them, forward-mode derivatives are exact, low-precision outputs are reduced in float32.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import forward_ad

from losslines.losses import get_loss, loss_names, reduce_loss

CPU = torch.device("cpu")


def _classes(g, rows):
    return torch.randn(rows, 5, generator=g, dtype=torch.float64) * 3, torch.randint(0, 5, (rows,), generator=g)


def _regression(g, rows):
    return torch.randn(rows, 4, generator=g, dtype=torch.float64), torch.randn(rows, 4, generator=g, dtype=torch.float64)


def _tokens(g, rows):
    ids = torch.randint(0, 7, (rows, 6), generator=g)
    ids[torch.rand(rows, 6, generator=g) < 0.4] = -100  # padding: not counted
    ids[:, -1] = torch.randint(0, 7, (rows,), generator=g)  # every sample counts a token
    return torch.randn(rows, 6, 7, generator=g, dtype=torch.float64) * 3, ids


ALL_IGNORED = torch.full((12, 6), -100, dtype=torch.int64)

# loss -> list of (outputs [R, ...] float64, raw targets, accuracy defined?) makers, and bad targets
CASES = {
    "cross_entropy": dict(make=[(_classes, True)], bad=[torch.zeros(12, 5), torch.zeros(12, 2, dtype=torch.int64)]),
    "mse": dict(make=[(_classes, True), (_regression, False)], bad=[torch.zeros(12, dtype=torch.bool)]),
    "token_cross_entropy": dict(make=[(_tokens, True)],
                                bad=[torch.zeros(12, 6), torch.zeros(12, dtype=torch.int64), ALL_IGNORED]),
}


def cases():
    return [pytest.param(name, i, id=f"{name}-{i}") for name in loss_names() if name in CASES
            for i in range(len(CASES[name]["make"]))]


def data(name, i, rows=12, seed=0):
    make, has_accuracy = CASES[name]["make"][i]
    outputs, raw = make(torch.Generator().manual_seed(seed), rows)
    targets, accuracy = get_loss(name).prepare_targets(raw, torch.float64, CPU)
    assert accuracy == has_accuracy
    return outputs, targets


def test_every_registered_loss_has_a_case():
    missing = [name for name in loss_names() if name not in CASES]
    assert not missing, f"registered losses without a conformance case: {missing}; add them to CASES"


@pytest.mark.parametrize("name", [n for n in CASES])
def test_targets_it_cannot_take_are_refused_with_a_clear_error(name):
    for bad in CASES[name]["bad"]:
        with pytest.raises(ValueError, match=name):
            get_loss(name).prepare_targets(bad, torch.float64, CPU)


@pytest.mark.parametrize("name, i", cases())
def test_the_measured_loss_is_the_trained_loss(name, i):
    outputs, targets = data(name, i)
    spec = get_loss(name)
    sample, _ = spec.reference(spec.as_rows(outputs), targets)
    assert sample.shape == (outputs.shape[0],) and sample.dtype == torch.float64
    assert float(spec.training_loss(outputs, targets)) == pytest.approx(float(sample.mean()), rel=1e-12)


@pytest.mark.parametrize("name, i", cases())
def test_line_sums_counts_and_stacking(name, i):
    outputs, targets = data(name, i, rows=12)
    spec = get_loss(name)
    whole = reduce_loss(outputs, targets, loss=name, lines=3, backend="torch")
    sample, correct = spec.reference(spec.as_rows(outputs), targets)
    torch.testing.assert_close(whole.sample_loss, sample, rtol=0, atol=0)
    torch.testing.assert_close(whole.line_sum, sample.view(3, 4).sum(1), rtol=1e-15, atol=0)
    assert whole.line_sum.dtype == torch.float64 and whole.correct.dtype == torch.int64
    expected_correct = torch.zeros(3, dtype=torch.int64) if correct is None else correct.view(3, 4).sum(1)
    assert whole.correct.tolist() == expected_correct.tolist()
    if whole.counted is not None:  # accuracy over counted predictions (tokens): at least the correct ones
        assert (whole.counted >= whole.correct).all() and (whole.counted > 0).all()
    for j in range(3):  # one point at a time gives the same as three stacked
        alone = reduce_loss(outputs[4 * j:4 * j + 4], targets[4 * j:4 * j + 4], loss=name, lines=1, backend="torch")
        torch.testing.assert_close(alone.line_sum[0], whole.line_sum[j], rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")  # torch's own, on first forward-mode use
@pytest.mark.parametrize("name, i", cases())
def test_forward_mode_derivative_is_exact(name, i):
    outputs, targets = data(name, i)
    spec = get_loss(name)
    tangent = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(outputs, tangent)
        sample, _ = spec.reference(spec.as_rows(dual), targets)
        jvp = forward_ad.unpack_dual(sample).tangent
    h = 1e-6
    plus, _ = spec.reference(spec.as_rows(outputs + h * tangent), targets)
    minus, _ = spec.reference(spec.as_rows(outputs - h * tangent), targets)
    torch.testing.assert_close(jvp, (plus - minus) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, i", cases())
def test_low_precision_outputs_are_reduced_in_float32(name, i, dtype):
    outputs, targets = data(name, i)
    if targets.is_floating_point():
        targets = targets.to(dtype)
    low = reduce_loss(outputs.to(dtype), targets, loss=name, lines=2, backend="torch")
    exact = reduce_loss(outputs.to(dtype).double(), targets.double() if targets.is_floating_point() else targets,
                        loss=name, lines=2, backend="torch")
    assert low.sample_loss.dtype == torch.float32
    torch.testing.assert_close(low.sample_loss.double(), exact.sample_loss, rtol=1e-5, atol=1e-5)
