"""The loss registry: one record per loss, one call to add one, and the dispatch between backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import losslines.kernels as kernels
import losslines.losses as losses
from losslines.engine import measure_line
from losslines.engine.all_directions import batch_gradient
from losslines.kernels import LossReduction
from losslines.losses import Loss, get_loss, loss_names, reduce_loss, register_kernel, register_loss, select_kernel


@pytest.fixture
def registries(monkeypatch):
    """Registries that are restored after the test (registering is global)."""
    monkeypatch.setattr(losses, "_LOSSES", dict(losses._LOSSES))
    monkeypatch.setattr(kernels, "_BACKENDS", dict(kernels._BACKENDS))
    monkeypatch.setattr(kernels, "AUTO_ORDER", list(kernels.AUTO_ORDER))
    monkeypatch.setattr(losses, "AUTO_ORDER", kernels.AUTO_ORDER)


def _abs_targets(targets, dtype, device):
    if not targets.is_floating_point():
        raise ValueError("abs_error targets must be floats")
    return targets.reshape(targets.shape[0], -1).to(device=device, dtype=dtype), False


def _abs_check(rows, targets):
    if targets.shape != rows.shape:
        raise ValueError(f"abs_error targets must have the outputs' shape {tuple(rows.shape)}")


ABS_ERROR = Loss(
    name="abs_error", doc="mean_c |z_c - y_c|", prepare_targets=_abs_targets,
    as_rows=lambda out: out.reshape(out.shape[0], -1), check=_abs_check,
    reference=lambda rows, t: ((rows - t).abs().mean(dim=1), None),
    training_loss=lambda out, t: (out.reshape(out.shape[0], -1) - t.reshape(t.shape[0], -1)).abs().mean(),
)


def test_builtin_losses_and_unknown_names():
    assert {"cross_entropy", "mse"} <= set(loss_names())
    assert get_loss("mse").name == "mse" and get_loss(get_loss("mse")) is get_loss("mse")
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid losses: cross_entropy, mse"):
        get_loss("hinge")


def test_a_new_loss_is_one_call_and_measures_end_to_end(registries):
    register_loss(ABS_ERROR)
    assert "abs_error" in loss_names()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    x, t = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 2, dtype=torch.float64)
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    m = measure_line(model, x, t, direction, [-0.1, 0.0, 0.2], loss="abs_error")
    norm = torch.sqrt(sum((d ** 2).sum() for d in direction.values()))
    for j, s in enumerate([-0.1, 0.0, 0.2]):  # the oracle: the model moved by hand
        with torch.no_grad():
            moved = {n: p + s * direction[n] / norm for n, p in model.named_parameters()}
            out = torch.func.functional_call(model, moved, (x,))
        assert m.loss[j] == pytest.approx(float((out - t).abs().mean()), rel=1e-12)
    assert np.isnan(m.accuracy).all() and np.isfinite(m.slope0)
    grads = batch_gradient(model, x, t, params=dict(model.named_parameters()), buffers={}, loss="abs_error")
    model.zero_grad()
    ABS_ERROR.training_loss(model(x), t).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad)


def test_the_config_accepts_registered_losses_only(registries, tiny_config, tmp_path):
    from losslines.runner.config import ConfigError

    with pytest.raises(ConfigError, match="'measure.loss': 'abs_error' is not one of 'cross_entropy', 'mse'"):
        tiny_config(tmp_path, "measure.loss=abs_error")
    register_loss(ABS_ERROR)
    assert tiny_config(tmp_path, "measure.loss=abs_error").measure.loss == "abs_error"


def _fake_kernel(rows, targets, *, lines, n):
    sample = torch.full((rows.shape[0],), 7.0)
    return LossReduction(sample, sample.double().view(lines, n).sum(1), torch.zeros(lines, dtype=torch.int64))


def test_a_backend_runs_only_the_losses_it_has_kernels_for(registries):
    kernels.register_backend("fake")  # available and automatic for any outputs
    kernels.AUTO_ORDER.insert(0, "fake")
    register_loss(ABS_ERROR)
    register_kernel("mse", "fake", _fake_kernel)
    rows, y = torch.randn(6, 3), torch.randn(6, 3)
    # mse has a fake kernel: auto takes it, a forced "fake" too
    assert select_kernel("mse", "auto", rows)[0] == "fake"
    assert reduce_loss(rows, y, loss="mse", lines=2, backend="fake").sample_loss.eq(7.0).all()
    # abs_error has none: auto falls back to the reference, a forced "fake" is refused, naming the loss
    assert select_kernel("abs_error", "auto", rows)[0] == "torch"
    ref = reduce_loss(rows, y, loss="abs_error", lines=2)
    torch.testing.assert_close(ref.sample_loss, (rows - y).abs().mean(1))
    with pytest.raises(ValueError, match="'fake' has no kernel for loss 'abs_error'.*backend='auto'"):
        reduce_loss(rows, y, loss="abs_error", lines=2, backend="fake")


def test_kernels_name_registered_backends_and_never_torch(registries):
    with pytest.raises(ValueError, match="registered backends other than 'torch'"):
        register_loss(Loss(**{**ABS_ERROR.__dict__, "kernels": {"cuda-magic": _fake_kernel}}))
    with pytest.raises(ValueError, match="registered backends other than 'torch'"):
        register_loss(Loss(**{**ABS_ERROR.__dict__, "kernels": {"torch": _fake_kernel}}))
    with pytest.raises(ValueError, match="takes a Loss record"):
        register_loss("abs_error")


def test_targets_and_outputs_are_checked_before_any_backend():
    with pytest.raises(ValueError, match="cross_entropy targets must be 1-D integer class indices"):
        get_loss("cross_entropy").prepare_targets(torch.zeros(4, 2), torch.float32, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"cross_entropy needs model outputs \[n, C\]"):
        reduce_loss(torch.randn(4, 2, 3), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="mse targets must be floats of the outputs' shape"):
        reduce_loss(torch.randn(4, 3), torch.randn(4, 2), loss="mse")
