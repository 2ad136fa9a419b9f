"""CIFAR-style MobileNetV2 (Sandler et al. 2018) with a width multiplier.

The ImageNet network with two strides set to 1 for 32x32 inputs: the 3x3 stem convolution and
the first 24-channel stage (total downsampling 8 instead of 32, so 32x32 ends at 4x4). Blocks
are inverted residuals ``1x1 expand (t x) -> 3x3 depthwise -> 1x1 linear projection``, BN after
every convolution, ReLU6 after the first two, and a residual connection where stride is 1 and
the channel count is kept. Channels ``c * width`` are rounded to multiples of ``round_to`` (8);
the last 1x1 convolution has ``last_channel * max(1, width)`` channels. The parameter count
equals torchvision's ``mobilenet_v2`` (strides carry no parameters): 2,236,682 at width 1 with
10 classes.

Dropout before the classifier is an option defaulting to 0 (measurement forbids active
dropout). Inputs ``[B, C, H, W]`` with any C >= 1 and H, W >= 1.
"""

from __future__ import annotations

import torch
from torch import nn

from losslines.models.initialization import init_weights
from losslines.models.width import divisible

# (expansion t, output channels c, blocks n, stride of the first block s)
CIFAR_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32


def _conv_bn(in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """``[B, in_c, H, W] -> [B, out_c, H / stride, W / stride]``."""

    def __init__(self, in_c: int, out_c: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_c * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn(in_c, hidden, 1))
        layers.append(_conv_bn(hidden, hidden, 3, stride=stride, groups=hidden))
        layers.append(_conv_bn(hidden, out_c, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MobileNetV2Cifar(nn.Module):
    """``forward: [B, C, H, W] -> [B, num_classes]`` logits."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        width: float = 1.0,
        *,
        dropout: float = 0.0,
        round_to: int = 8,
        last_channel: int = 1280,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"mobilenetv2 option 'dropout' must lie in [0, 1), got {dropout!r}")
        if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
            raise ValueError(f"mobilenetv2 option 'round_to' must be an int >= 1, got {round_to!r}")
        if isinstance(last_channel, bool) or not isinstance(last_channel, int) or last_channel < 1:
            raise ValueError(f"mobilenetv2 option 'last_channel' must be an int >= 1, got {last_channel!r}")
        current = divisible(STEM_CHANNELS, width, round_to)
        layers: list[nn.Module] = [_conv_bn(in_channels, current, 3, stride=1)]
        for t, c, n, s in CIFAR_SETTINGS:
            out = divisible(c, width, round_to)
            for i in range(n):
                layers.append(InvertedResidual(current, out, s if i == 0 else 1, t))
                current = out
        final = divisible(last_channel, max(1.0, width), round_to)
        layers.append(_conv_bn(current, final, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(final, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(self.dropout(x))
