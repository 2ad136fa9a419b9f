"""The evaluator against independent oracles: closed-form parabolas and a float64 re-implementation."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine.evaluator import LineEvaluator, measure_line

# (every strategy against the float64 oracle: test_conformance_strategies.py)

POSITIONS = np.linspace(-0.6, 0.6, 13)


def closed_form_parabola(model: nn.Linear, direction: dict, x: torch.Tensor, t: torch.Tensor):
    """L(s) = A s² + B s + C of mean_i mean_c (W x_i + b − t_i)_c² along û (numpy, float64)."""
    W, b = model.weight.detach().double().numpy(), model.bias.detach().double().numpy()
    dW, db = direction["weight"].double().numpy(), direction["bias"].double().numpy()
    norm = np.sqrt((dW ** 2).sum() + (db ** 2).sum())
    X, T = x.double().numpy(), t.double().numpy()
    r0 = X @ W.T + b - T
    a = (X @ dW.T + db) / norm
    return (a ** 2).mean(), 2 * (r0 * a).mean(), (r0 ** 2).mean()


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_quadratic_model_gives_the_exact_parabola(dtype, rtol):
    torch.manual_seed(0)
    model = nn.Linear(6, 3).to(dtype)
    x, t = torch.randn(40, 6, dtype=dtype), torch.randn(40, 3, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    direction = {"weight": torch.randn(3, 6, generator=g, dtype=dtype), "bias": torch.randn(3, generator=g, dtype=dtype)}
    A, B, C = closed_form_parabola(model, direction, x, t)
    m = measure_line(model, x, t, direction, POSITIONS, loss="mse")
    np.testing.assert_allclose(m.loss, A * POSITIONS ** 2 + B * POSITIONS + C, rtol=rtol)
    assert m.slope0 == pytest.approx(B, rel=rtol)
    np.testing.assert_allclose(m.sample_slope0.mean(), B, rtol=rtol)
    if dtype == torch.float64:  # the measured points are an exact parabola with the closed-form vertex
        c2, c1, c0 = np.polyfit(POSITIONS, m.loss, 2)
        assert -c1 / (2 * c2) == pytest.approx(-B / (2 * A), rel=1e-9)
        assert np.abs(np.polyval(np.polyfit(POSITIONS, m.loss, 3), POSITIONS) - m.loss).max() < 1e-12
    assert np.isnan(m.accuracy).all()  # regression targets: accuracy undefined


def test_running_mode_does_not_depend_on_chunking(tiny):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(37)
    direction = tiny.random_direction(model)
    whole = measure_line(model, x, y, direction, POSITIONS)
    chunked = measure_line(model, x, y, direction, POSITIONS, chunk_size=5)
    tiny_budget = measure_line(model, x, y, direction, POSITIONS, memory_budget=20_000)
    one_point_at_a_time = measure_line(model, x, y, direction, POSITIONS, chunk_size=8, memory_budget=200)
    for other in (chunked, tiny_budget, one_point_at_a_time):
        np.testing.assert_allclose(other.sample_loss, whole.sample_loss, rtol=1e-12)
        np.testing.assert_allclose(other.loss, whole.loss, rtol=1e-12)
        assert other.slope0 == pytest.approx(whole.slope0, rel=1e-10)
        np.testing.assert_array_equal(other.accuracy, whole.accuracy)


def test_accuracy_counts_argmax_hits(tiny):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(30)
    direction = tiny.random_direction(model)
    m = measure_line(model, x, y, direction, [0.0, 0.3])
    model.eval()
    with torch.no_grad():
        acc0 = (model(x.double()).argmax(1) == y).double().mean().item()
    assert m.accuracy[0] == pytest.approx(acc0, abs=1e-15)


def test_flat_direction_equals_dict_direction_and_scale_does_not_matter(tiny):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(24)
    direction = tiny.random_direction(model)
    flat = torch.cat([direction[n].reshape(-1) for n, p in model.named_parameters()])
    a = measure_line(model, x, y, direction, POSITIONS)
    b = measure_line(model, x, y, 7.5 * flat, POSITIONS)
    np.testing.assert_allclose(a.sample_loss, b.sample_loss, rtol=1e-12)
    assert b.direction_length == pytest.approx(7.5 * a.direction_length, rel=1e-12)


def test_missing_direction_entries_are_zero_and_explicit_params_are_used(tiny):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(24)
    only_head = {"head.weight": torch.randn(5, 64, dtype=torch.float64)}
    full = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    full.update(only_head)
    a = measure_line(model, x, y, only_head, POSITIONS)
    b = measure_line(model, x, y, full, POSITIONS)
    np.testing.assert_array_equal(a.sample_loss, b.sample_loss)
    # params= overrides θ_t: measuring from θ_t + 0.3 û at s equals measuring from θ_t at s + 0.3
    norm = only_head["head.weight"].norm()
    moved = {"head.weight": model.head.weight.detach() + 0.3 * only_head["head.weight"] / norm}
    c = measure_line(model, x, y, only_head, POSITIONS - 0.3, params=moved)
    np.testing.assert_allclose(c.loss, a.loss, rtol=1e-12)


def test_evaluator_is_reusable_across_lines(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(32)
    ev = LineEvaluator(model, x, y, bn="batch", bn_group=16)
    d1, d2 = tiny.random_direction(model, seed=5), tiny.random_direction(model, seed=6)
    first = ev.measure(d1, POSITIONS)
    ev.measure(d2, POSITIONS)
    again = ev.measure(d1, POSITIONS)
    np.testing.assert_array_equal(first.sample_loss, again.sample_loss)


def test_mse_on_class_indices_measures_one_hot_squared_error_with_accuracy(tiny):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(20)
    direction = tiny.random_direction(model)
    m = measure_line(model, x, y, direction, [0.0, 0.2], loss="mse")
    model.eval()
    with torch.no_grad():
        out = model(x.double())
    expected = F.mse_loss(out, F.one_hot(y, 5).double(), reduction="none").mean(dim=1)
    np.testing.assert_allclose(m.sample_loss[0], expected.numpy(), rtol=1e-12)
    assert m.accuracy[0] == pytest.approx((out.argmax(1) == y).double().mean().item(), abs=1e-15)


@pytest.mark.parametrize("memory_format", ["channels_last", "contiguous"])
@pytest.mark.parametrize("bn, bn_group", [("running", None), ("batch", 16)])
def test_both_memory_formats_equal_the_float64_oracle(tiny, memory_format, bn, bn_group):
    """The channels-last fast path (default for image models with the loop strategy) and the
    contiguous one compute the same function: each equals the float64 oracle."""
    model = tiny.make_cnn(seed=4)
    x, y = tiny.make_data(32, seed=5)
    direction = tiny.random_direction(model, seed=6)
    positions = np.linspace(-0.4, 0.4, 7)
    expected, slope = tiny.float64_line(model, x, y, direction, positions, bn, bn_group)
    ev = LineEvaluator(copy.deepcopy(model).double(), x, y, bn=bn, bn_group=bn_group, memory_format=memory_format)
    assert ev.channels_last == (memory_format == "channels_last")
    assert ev.inputs.is_contiguous(memory_format=torch.channels_last) == ev.channels_last
    m = ev.measure(direction, positions)
    np.testing.assert_allclose(m.sample_loss, expected, rtol=1e-6, atol=1e-12)
    assert m.slope0 == pytest.approx(slope, rel=1e-6)
    m32 = measure_line(model, x, y, direction, positions, bn=bn, bn_group=bn_group, memory_format=memory_format)
    np.testing.assert_allclose(m32.sample_loss, expected, rtol=1e-3, atol=1e-4)


def test_memory_format_auto_and_its_errors(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    assert LineEvaluator(model, x, y).channels_last  # images + convolutions + loop
    assert not LineEvaluator(model, x, y, strategy="vmap").channels_last  # vmap has no fast rule for it
    with pytest.raises(ValueError, match="loop"):
        LineEvaluator(model, x, y, strategy="vmap", memory_format="channels_last")
    with pytest.raises(ValueError, match="valid: auto, channels_last, contiguous"):
        LineEvaluator(model, x, y, memory_format="nhwc")
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    assert not LineEvaluator(mlp, x, y).channels_last
