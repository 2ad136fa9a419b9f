"""strategy="vmap": equal to the loop and to a float64 oracle for every registry model, in both
BatchNorm modes; the model untouched; chunking by a memory budget; CUDA cases marked ``gpu``."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslines.engine.evaluator import LineEvaluator, measure_line
from losslines.engine.line import LinePoints
from losslines.engine.memory import (CPU_MEMORY_BUDGET, CUDA_FREE_FRACTION, ForwardProfile, default_memory_budget,
                                     vmap_points)
from losslines.engine.strategies import VmapStrategy
from losslines.models import build_model

POSITIONS = np.array([-0.3, 0.0, 0.2])
N, GROUP = 8, 4

# every registry model at a tiny width, on the smallest input it takes comfortably
REGISTRY = {
    **{f"resnet{d}": (dict(width=0.125), (3, 8, 8)) for d in (20, 32, 44, 56, 110)},
    "resnet18": (dict(width=0.125), (3, 8, 8)),
    "mobilenetv2": (dict(width=0.1, last_channel=16), (3, 8, 8)),
    "small_cnn": (dict(width=0.125), (3, 8, 8)),
    "mlp": (dict(width=0.125, batch_norm=True), (3, 4, 4)),
    "torchvision:mobilenet_v3_small": (dict(width_mult=0.25), (3, 16, 16)),
}


def tiny_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    kwargs, shape = REGISTRY[name]
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, input_shape=shape, **kwargs)
    with torch.no_grad():  # running statistics away from their initial values
        model.train()
        model(torch.randn(16, *shape) * 1.3 + 0.2)
    return model, shape


@pytest.mark.parametrize("bn", ["running", "batch"])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_vmap_equals_loop_equals_float64_oracle_for_every_registry_model(tiny, name, bn):
    model, shape = tiny_model(name)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N, *shape, generator=g), torch.randint(0, 5, (N,), generator=g)
    direction = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    expected, _ = tiny.float64_line(model, x, y, direction, POSITIONS, bn, GROUP)
    model64 = copy.deepcopy(model).double()
    kwargs = dict(bn=bn, bn_group=GROUP if bn == "batch" else None, slope=False)
    loop = measure_line(model64, x, y, direction, POSITIONS, strategy="loop", **kwargs)
    vmapped = measure_line(model64, x, y, direction, POSITIONS, strategy="vmap", point_chunk=2, **kwargs)
    assert vmapped.strategy == "vmap" and vmapped.sample_loss.shape == (3, N)
    np.testing.assert_allclose(vmapped.sample_loss, loop.sample_loss, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(loop.sample_loss, expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(vmapped.sample_loss, expected, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(vmapped.loss, expected.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(vmapped.accuracy, loop.accuracy)


@pytest.mark.parametrize("bn, training", [("batch", True), ("running", True), ("batch", False)])
def test_vmap_measurement_leaves_the_model_bit_identical(tiny, bn, training):
    model = tiny.make_cnn()
    model.bn_momentum_free = nn.BatchNorm1d(5, momentum=None)  # cumulative average: counts batches
    model.train(training)
    x, y = tiny.make_data(24)
    model.head.weight.grad = torch.ones_like(model.head.weight)
    before = tiny.snapshot(model)
    m = measure_line(model, x, y, tiny.random_direction(model), POSITIONS, bn=bn,
                     bn_group=8 if bn == "batch" else None, strategy="vmap", point_chunk=2)
    assert np.isfinite(m.loss).all()
    tiny.assert_same(before, tiny.snapshot(model))


@pytest.mark.parametrize("bn", ["running", "batch"])
def test_vmap_does_not_depend_on_the_point_chunk(tiny, bn):
    model = tiny.make_cnn().double()
    x, y = tiny.make_data(20)
    direction = tiny.random_direction(model)
    positions = np.linspace(-0.5, 0.5, 7)
    kwargs = dict(bn=bn, bn_group=10 if bn == "batch" else None, strategy="vmap")
    whole = measure_line(model, x, y, direction, positions, point_chunk=7, **kwargs)
    for chunk in (1, 3):
        other = measure_line(model, x, y, direction, positions, point_chunk=chunk, **kwargs)
        np.testing.assert_allclose(other.sample_loss, whole.sample_loss, rtol=1e-12)
        assert other.slope0 == whole.slope0  # slopes are shared with the loop: same code path


def test_vmap_points_are_the_loops_points_bit_for_bit(tiny):
    """float32 model: fl(θ_t + s·û) built inside vmap equals the loop's point, so s = 0 gives
    exactly the model's own output on a purely linear model."""
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    x = torch.randn(5, 6)
    direction = {"weight": torch.randn(3, 6), "bias": torch.randn(3)}
    line = LinePoints(model, direction)
    positions = np.array([0.0, 0.1, -0.37])
    with torch.no_grad():
        batched = VmapStrategy().outputs(line, positions, x)
        for j, s in enumerate(positions):
            p = line.params_at(s)
            torch.testing.assert_close(batched[j], F.linear(x, p["weight"], p["bias"]), rtol=1e-6, atol=1e-6)
        assert torch.equal(batched[0], model(x))


def test_vmap_uses_the_same_randomness_for_every_point():
    """randomness="same": a (checked-off) noise layer draws the same numbers at every point."""

    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x) + torch.randn_like(self.lin(x))

    torch.manual_seed(0)
    model = Noisy()
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    direction = {"lin.weight": torch.ones(3, 4)}
    with torch.no_grad():
        out = VmapStrategy().outputs(LinePoints(model, direction), np.array([0.1, 0.1, 0.1]), x)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    with pytest.raises(RuntimeError, match="not deterministic"):  # the safeguard is on by default
        LineEvaluator(model, x, y, strategy="vmap").measure(direction, [0.1, 0.1], slope=False)


def test_vmap_point_chunk_follows_the_memory_budget(tiny):
    model = tiny.make_cnn()
    x, y = tiny.make_data(16)
    calls = []

    class Spy(VmapStrategy):
        def outputs(self, line, positions, xs):
            calls.append(len(positions))
            return super().outputs(line, positions, xs)

    ev = LineEvaluator(model, x, y, strategy=Spy(), memory_budget=10**9)
    ev.measure(tiny.random_direction(model), np.linspace(-0.5, 0.5, 11), slope=False)
    profile = ev._profile
    per_point = vmap_points(profile, rows=16, outputs_per_row=5, element_size=4, k_total=10**6, budget=10**9)
    assert calls[0] == 1 and calls[1] == min(10, per_point)  # first call sizes the outputs
    # a budget of exactly three points' cost gives three points per call
    calls.clear()
    cost = 10**9 // per_point
    three = max(c for c in range(3 * cost, 4 * cost) if vmap_points(
        profile, rows=16, outputs_per_row=5, element_size=4, k_total=100, budget=c) == 3)
    LineEvaluator(model, x, y, strategy=Spy(), memory_budget=three).measure(
        tiny.random_direction(model), np.linspace(-0.5, 0.5, 11), slope=False)
    assert calls == [1, 3, 3, 3, 1]


def test_memory_formula_and_defaults():
    profile = ForwardProfile(sum_bytes=1000, max_bytes=100, peak_bytes=None, param_bytes=4000, largest_param=50)
    assert profile.live_bytes_per_row == 400  # LIVE_FACTOR x the largest output off CUDA
    # per point: 2 * 10 rows * 400 + 4000 + 16 * 50 + 10 rows * 5 outputs * 4 bytes = 13000 bytes
    assert vmap_points(profile, rows=10, outputs_per_row=5, element_size=4, k_total=100, budget=13000 * 7) == 7
    assert vmap_points(profile, rows=10, outputs_per_row=5, element_size=4, k_total=100, budget=13000 * 7 - 1) == 6
    assert vmap_points(profile, rows=10, outputs_per_row=5, element_size=4, k_total=4, budget=10**12) == 4
    assert vmap_points(profile, rows=10, outputs_per_row=5, element_size=4, k_total=4, budget=1) == 1
    measured = ForwardProfile(sum_bytes=1000, max_bytes=100, peak_bytes=250, param_bytes=0, largest_param=0)
    assert measured.live_bytes_per_row == 250
    assert default_memory_budget("cpu") == CPU_MEMORY_BUDGET


# ------------------------------------------------------------------------------------------ CUDA

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("bn", ["running", "batch"])
def test_vmap_equals_loop_on_cuda(tiny, bn):
    model, shape = tiny_model("resnet20")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, *shape, generator=g), torch.randint(0, 5, (32,), generator=g)
    direction = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    positions = np.linspace(-0.5, 0.5, 11)
    kwargs = dict(bn=bn, bn_group=8 if bn == "batch" else None)
    cpu = measure_line(copy.deepcopy(model).double(), x, y, direction, positions, **kwargs)
    cuda64 = copy.deepcopy(model).double().cuda()
    d64 = {n: d.double().cuda() for n, d in direction.items()}
    before = tiny.snapshot(cuda64)
    loop = measure_line(cuda64, x, y, d64, positions, strategy="loop", **kwargs)
    vmapped = measure_line(cuda64, x, y, d64, positions, strategy="vmap", point_chunk=4, **kwargs)
    tiny.assert_same(before, tiny.snapshot(cuda64))
    np.testing.assert_allclose(vmapped.sample_loss, loop.sample_loss, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(vmapped.sample_loss, cpu.sample_loss, rtol=1e-6, atol=1e-12)
    assert vmapped.slope0 == pytest.approx(cpu.slope0, rel=1e-6)
    cuda32 = copy.deepcopy(model).cuda()
    f32 = measure_line(cuda32, x, y, {n: d.cuda() for n, d in direction.items()}, positions, strategy="vmap",
                       **kwargs)
    np.testing.assert_allclose(f32.loss, cpu.loss, rtol=5e-3)  # TF32 convolutions


@pytest.mark.gpu
@gpu
def test_default_budget_on_cuda_is_a_fraction_of_free_memory():
    free, _ = torch.cuda.mem_get_info()
    budget = default_memory_budget("cuda")
    assert 0 < budget <= CUDA_FREE_FRACTION * free * 1.05 + 2**20
    model, shape = tiny_model("small_cnn")
    ev = LineEvaluator(model.cuda(), torch.randn(8, *shape), torch.randint(0, 5, (8,)), memory_budget=None)
    assert 0 < ev.memory_budget <= free


def test_auto_strategy_handles_batchnorm1d_in_batch_mode():
    """Regression: `auto` sized its chunks from a one-row forward, which train-mode BatchNorm1d rejects."""
    from torch import nn

    from losslines.engine.evaluator import measure_line

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    direction = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    positions = np.linspace(-0.2, 0.2, 5)
    loop = measure_line(model, x, y, direction, positions, bn="batch", bn_group=16)
    auto = measure_line(model, x, y, direction, positions, bn="batch", bn_group=16, strategy="auto")
    np.testing.assert_allclose(auto.loss, loop.loss, rtol=1e-5)
