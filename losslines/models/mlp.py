"""``mlp``: a fully connected ReLU network on flattened inputs of any shape.

``flatten -> [linear -> (BN) -> ReLU] per hidden size -> linear(num_classes)``, hidden sizes
``hidden * width`` (default (256, 128)). BatchNorm is off by default (``batch_norm=True`` adds
BatchNorm1d after each hidden linear layer). Linear layers use PyTorch's default init.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from losslines.models.initialization import init_weights
from losslines.models.width import scaled


class MLP(nn.Module):
    """``forward: [B, *input_shape] -> [B, num_classes]`` logits."""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, ...],
        width: float = 1.0,
        *,
        hidden: tuple[int, ...] = (256, 128),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"mlp option 'hidden' must be a tuple of positive ints, got {hidden!r}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"mlp option 'batch_norm' must be True or False, got {batch_norm!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        current = math.prod(input_shape)
        for h in hidden:
            size = scaled(h, width)
            layers.append(nn.Linear(current, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            current = size
        layers.append(nn.Linear(current, num_classes))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
