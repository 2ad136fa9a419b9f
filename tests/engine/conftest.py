"""Tiny models and data for the engine tests (CPU, seconds)."""

from __future__ import annotations

import pytest
import torch
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


class _Tiny:
    """Factories for the tests (a fixture, because test modules cannot import a conftest safely)."""

    TinyCNN = TinyCNN
    make_cnn = staticmethod(make_cnn)
    make_data = staticmethod(make_data)
    random_direction = staticmethod(random_direction)


@pytest.fixture
def tiny() -> type[_Tiny]:
    return _Tiny
