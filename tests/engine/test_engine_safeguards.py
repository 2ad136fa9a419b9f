"""Measuring changes nothing, and every safeguard fires with a message that names the fix."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine.evaluator import LineEvaluator, measure_line

POSITIONS = np.linspace(-0.3, 0.3, 7)


def full_state(model: nn.Module) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "training": [m.training for m in model.modules()],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
    }


def assert_same_state(before: dict, after: dict) -> None:
    for group in ("params", "buffers"):
        for name, value in before[group].items():
            assert torch.equal(value, after[group][name]), f"{group} {name} changed"
    for name, grad in before["grads"].items():
        assert (grad is None and after["grads"][name] is None) or torch.equal(grad, after["grads"][name]), name
    assert before["requires_grad"] == after["requires_grad"]
    assert before["training"] == after["training"]
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert np.array_equal(before["numpy_rng"], after["numpy_rng"])
    assert before["python_rng"] == after["python_rng"]


@pytest.mark.parametrize("bn, bn_group", [("running", None), ("batch", 8)])
def test_measuring_changes_nothing(tiny, bn, bn_group):
    model = tiny.make_cnn(dropout=0.3)
    x, y = tiny.make_data(24)
    model.train()
    model.features[1].eval()  # mixed per-module flags must come back exactly
    model.features[0].weight.requires_grad_(False)  # a frozen parameter
    F.cross_entropy(model(x), y).backward()  # populated .grad (and one BN update)
    torch.manual_seed(11), np.random.seed(12), random.seed(13)
    before = full_state(model)
    direction = tiny.random_direction(model)
    m = measure_line(model, x, y, direction, POSITIONS, bn=bn, bn_group=bn_group)
    assert np.isfinite(m.loss).all() and np.isfinite(m.slope0)
    assert_same_state(before, full_state(model))


def test_dropout_is_the_identity_when_off(tiny):
    x, y = tiny.make_data(16)
    without = tiny.make_cnn(seed=4, dropout=0.0)
    with_dropout = tiny.TinyCNN(dropout=0.5)
    with_dropout.load_state_dict(without.state_dict())
    direction = tiny.random_direction(without)
    a = measure_line(with_dropout, x, y, direction, POSITIONS)
    b = measure_line(without, x, y, direction, POSITIONS)
    np.testing.assert_array_equal(a.sample_loss, b.sample_loss)


def test_active_dropout_is_an_error_when_asked(tiny):
    model = tiny.make_cnn(dropout=0.2)
    x, y = tiny.make_data(8)
    with pytest.raises(ValueError, match="active dropout.*dropout='off'"):
        measure_line(model, x, y, tiny.random_direction(model), POSITIONS, dropout="error")
    measure_line(tiny.make_cnn(dropout=0.0), x, y, tiny.random_direction(model), POSITIONS, dropout="error")


class NoisyHead(nn.Module):
    """Hidden randomness: noise from the global RNG inside forward, whatever the mode."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x) + 1e-3 * torch.randn(x.shape[0], 3)


def test_hidden_randomness_is_caught_by_the_double_evaluation_and_rng_is_restored():
    model = NoisyHead()
    x, y = torch.randn(10, 4), torch.randint(0, 3, (10,))
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="same point twice"):
        measure_line(model, x, y, {"lin.weight": torch.ones(3, 4)}, POSITIONS)
    assert torch.equal(state, torch.get_rng_state())


def test_zero_and_non_finite_directions_are_refused(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    zero = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="direction is zero"):
        measure_line(model, x, y, zero, POSITIONS)
    zero["head.bias"][0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        measure_line(model, x, y, zero, POSITIONS)


def test_bad_direction_names_and_shapes_are_refused(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    with pytest.raises(ValueError, match="not trainable parameters"):
        measure_line(model, x, y, {"head.weights": torch.ones(5, 64)}, POSITIONS)
    with pytest.raises(ValueError, match="has shape"):
        measure_line(model, x, y, {"head.weight": torch.ones(64, 5)}, POSITIONS)
    with pytest.raises(ValueError, match="flat direction must be 1-D with"):
        measure_line(model, x, y, torch.ones(7), POSITIONS)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"bn": "train"}, ValueError, "valid modes: running, batch"),
    ({"loss": "nll"}, ValueError, "valid losses: cross_entropy, mse"),
    ({"strategy": "fast"}, ValueError, "valid strategies: loop, vmap, compiled, auto"),
    ({"memory_budget": 0}, ValueError, "memory budget must be a positive number of bytes"),
    ({"point_chunk": 0}, ValueError, "point_chunk must be a positive integer"),
    ({"dropout": "on"}, ValueError, "valid modes: off, error"),
    ({"bn": "batch"}, ValueError, "needs bn_group"),
    ({"bn": "batch", "bn_group": 0}, ValueError, "bn_group must be a positive integer"),
    ({"bn": "batch", "bn_group": 4, "chunk_size": 4}, ValueError, "chunk_size applies to bn='running'"),
])
def test_bad_settings_name_the_valid_choices(tiny, kwargs, error, match):
    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    with pytest.raises(error, match=match):
        LineEvaluator(model, x, y, **kwargs)


def test_bad_data_and_positions_are_refused(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(8)
    with pytest.raises(ValueError, match="same, non-zero number of samples"):
        LineEvaluator(model, x, y[:5])
    with pytest.raises(ValueError, match="class indices"):
        LineEvaluator(model, x, y.float())
    ev = LineEvaluator(model, x, y)
    with pytest.raises(ValueError, match="positions"):
        ev.measure(tiny.random_direction(model), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="NaN or inf"):
        ev.measure(tiny.random_direction(model), [0.0, float("inf")])


def test_running_mode_refuses_bn_without_running_statistics():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.Linear(6, 3))
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    with pytest.raises(ValueError, match="track_running_stats=False.*bn='batch'"):
        LineEvaluator(model, x, y, bn="running")
    m = measure_line(model, x, y, {"0.weight": torch.ones(6, 4)}, POSITIONS, bn="batch", bn_group=6)
    assert np.isfinite(m.loss).all()


@pytest.mark.parametrize("category", [FutureWarning, DeprecationWarning])
def test_torch_jit_script_deprecation_from_first_jvp_is_silenced_in_either_category(category):
    """Regression: torch 2.11 (seen on an H200) warns with DeprecationWarning where 2.14 warns with
    FutureWarning when forward-mode AD first scripts its decompositions; only the FutureWarning was
    silenced, so every slope on such a torch failed under ``-W error``. Other warnings still pass."""
    import warnings

    from losslines.engine.evaluator import _quiet_jit_deprecation

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _quiet_jit_deprecation():
            warnings.warn("`torch.jit.script` is deprecated. Please switch to `torch.compile`.", category)
    with pytest.warns(category, match="something else"):
        with _quiet_jit_deprecation():
            warnings.warn("something else", category)
