"""Tiny models and data for the engine tests (CPU, seconds)."""

from __future__ import annotations

import copy

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn


class TinyCNN(nn.Module):
    """conv-BN-ReLU-conv-BN-ReLU-pool-linear on [n, 3, 8, 8] inputs, 5 classes."""

    def __init__(self, width: int = 4, classes: int = 5, dropout: float = 0.0):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width * 16, classes)

    def forward(self, x):
        return self.head(self.drop(self.features(x).flatten(1)))


def make_cnn(seed: int = 0, dropout: float = 0.0, warm: bool = True) -> TinyCNN:
    """A TinyCNN whose BN running statistics are no longer the initial ones (``warm``)."""
    torch.manual_seed(seed)
    model = TinyCNN(dropout=dropout)
    if warm:
        with torch.no_grad():
            model.train()
            for _ in range(3):
                model(torch.randn(16, 3, 8, 8) * 1.5 + 0.3)
    return model


def make_data(n: int, seed: int = 1, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)


def random_direction(model: nn.Module, seed: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()
            if p.requires_grad}


@pytest.fixture
def cnn() -> TinyCNN:
    return make_cnn()


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return make_data(48)


def float64_line(model, x, y, direction, positions, bn, bn_group):
    """The oracle of every strategy: a plain float64 loop on a deep copy, parameters set by hand
    (θ_t + s·û), BatchNorm mode set on the copy, per-group train-mode statistics; the slope at 0
    by reverse mode. Returns ``(sample losses [K, N], slope0)``."""
    ref = copy.deepcopy(model).double()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    norm = torch.sqrt(sum((direction[n].double() ** 2).sum() for n in names))
    uhat = {n: direction[n].double() / norm for n in names}
    theta = {n: p.detach().double().clone() for n, p in ref.named_parameters()}
    x, groups = x.double(), []
    losses = []
    for s in positions:
        with torch.no_grad():
            for n, p in ref.named_parameters():
                p.copy_(theta[n] + float(s) * uhat[n] if n in uhat else theta[n])
            if bn == "running":
                ref.eval()
                losses.append(F.cross_entropy(ref(x), y, reduction="none"))
            else:
                ref.train()  # momentum is irrelevant: the copy's buffers are thrown away
                groups = range(0, x.shape[0], bn_group)
                losses.append(torch.cat([F.cross_entropy(ref(x[i:i + bn_group]), y[i:i + bn_group], reduction="none")
                                         for i in groups]))
    # slope at 0 by reverse mode on the copy: ∇L(θ_t) · û
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(theta[n])
    ref.zero_grad()
    if bn == "running":
        ref.eval()
        total = F.cross_entropy(ref(x), y, reduction="sum")
    else:
        ref.train()
        total = sum(F.cross_entropy(ref(x[i:i + bn_group]), y[i:i + bn_group], reduction="sum")
                    for i in range(0, x.shape[0], bn_group))
    (total / x.shape[0]).backward()
    params = dict(ref.named_parameters())
    slope = sum((params[n].grad * uhat[n]).sum() for n in names).item()
    return torch.stack(losses).numpy(), slope


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "ptrs": {k: v.data_ptr() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "rng": (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()),
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        w = after["state"][k]
        assert v.dtype == w.dtype and torch.equal(v, w), k  # bit-identical
    assert before["ptrs"] == after["ptrs"]
    assert before["requires_grad"] == after["requires_grad"] and before["training"] == after["training"]
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(before["rng"][0], after["rng"][0]) and before["rng"][1] == after["rng"][1]
    np.testing.assert_array_equal(before["rng"][2], after["rng"][2])


class _Tiny:
    """Factories for the tests (a fixture, because test modules cannot import a conftest safely)."""

    TinyCNN = TinyCNN
    make_cnn = staticmethod(make_cnn)
    make_data = staticmethod(make_data)
    random_direction = staticmethod(random_direction)
    float64_line = staticmethod(float64_line)
    snapshot = staticmethod(snapshot)
    assert_same = staticmethod(assert_same)


@pytest.fixture
def tiny() -> type[_Tiny]:
    return _Tiny
