"""``small_cnn``: two conv+BN+ReLU layers, global average pooling, one linear layer.

``conv3x3(C -> c1) -> BN -> ReLU -> conv3x3(c1 -> c2, stride 2) -> BN -> ReLU -> avgpool ->
linear(c2 -> num_classes)`` with ``(c1, c2) = channels * width`` (default (32, 64)). Works on
any ``[B, C, H, W]`` with H, W >= 1 (8x8 digits, 28x28 MNIST, 32x32 CIFAR). With
``batch_norm=False`` the convolutions carry biases instead.
"""

from __future__ import annotations

import torch
from torch import nn

from losslines.models.initialization import init_weights
from losslines.models.width import scaled


class SmallCNN(nn.Module):
    """``forward: [B, C, H, W] -> [B, num_classes]`` logits."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        *,
        channels: tuple[int, int] = (32, 64),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        if len(channels) != 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"small_cnn option 'channels' must be two positive ints, got {channels!r}")
        if not isinstance(batch_norm, bool):
            raise ValueError(f"small_cnn option 'batch_norm' must be True or False, got {batch_norm!r}")
        c1, c2 = (scaled(c, width) for c in channels)

        def block(i: int, o: int, stride: int) -> list[nn.Module]:
            conv = nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=not batch_norm)
            return [conv, nn.BatchNorm2d(o), nn.ReLU()] if batch_norm else [conv, nn.ReLU()]

        self.features = nn.Sequential(*block(in_channels, c1, 1), *block(c1, c2, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c2, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
