"""CIFAR ResNets with option-A shortcuts: ResNet-20/32/44/56/110 (He et al. 2016, §4.2).

Layout for depth ``6n + 2``: a 3x3 stem convolution to 16 channels, three stages of ``n``
basic blocks with 16, 32 and 64 channels (times ``width``), the first block of stages 2 and 3
with stride 2, global average pooling and one linear layer. Each basic block is
``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``.

Option-A shortcut: where the shape changes, the input is subsampled with stride 2
(``x[:, :, ::2, ::2]``) and padded with zero channels, half before and half after; it has no
parameters. Parameter counts at width 1 and 10 classes: ResNet-20 269,722, ResNet-32 464,154,
ResNet-44 658,586, ResNet-56 853,018, ResNet-110 1,727,962.

Inputs ``[B, C, H, W]`` with any C >= 1 and H, W >= 1 (each stride-2 stage halves, rounding up;
8x8 digits end at 2x2, 32x32 CIFAR at 8x8).
"""

from __future__ import annotations

import torch
from torch import nn

from losslines.models.initialization import init_weights
from losslines.models.width import scaled

DEPTHS = (20, 32, 44, 56, 110)
STAGE_CHANNELS = (16, 32, 64)


class ShortcutA(nn.Module):
    """Parameter-free shortcut: stride-``stride`` subsampling plus zero channel padding.

    ``[B, c_in, H, W] -> [B, c_out, ceil(H / stride), ceil(W / stride)]``, ``c_out >= c_in``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option-B shortcut: 1x1 convolution + BN (ResNet-18)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a residual connection.

    The shortcut is the identity where shapes match, else ``shortcut(in, out, stride)``:
    ``ShortcutA`` (parameter-free, the CIFAR ResNet-20/32/56 of He et al.) or
    :func:`projection_shortcut` (ResNet-18).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut=ShortcutA) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; ``forward: [B, C, H, W] -> [B, num_classes]`` logits."""

    def __init__(self, depth: int, num_classes: int, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"CIFAR ResNet depth must be one of {DEPTHS}, got {depth}")
        blocks = (depth - 2) // 6
        channels = [scaled(c, width) for c in STAGE_CHANNELS]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        stages, current = [], channels[0]
        for index, out in enumerate(channels):
            layers = []
            for b in range(blocks):
                stride = 2 if (index > 0 and b == 0) else 1
                layers.append(BasicBlock(current, out, stride))
                current = out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(current, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
