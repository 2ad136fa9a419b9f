"""CIFAR-style ResNet-18: basic blocks 64-128-256-512 with projection shortcuts.

Differs from the ImageNet ResNet-18 only in its stem: one 3x3 stride-1 convolution and no max
pooling, so 32x32 inputs reach the last stage at 4x4. Shortcuts that change shape are a 1x1
convolution with BatchNorm (option B). 11,173,962 parameters at width 1 with 10 classes.

Inputs ``[B, C, H, W]`` with any C >= 1 and H, W >= 1 (three stride-2 stages).
"""

from __future__ import annotations

import torch
from torch import nn

from losslines.models.cifar_resnet import BasicBlock, projection_shortcut
from losslines.models.initialization import init_weights
from losslines.models.width import scaled

STAGE_CHANNELS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)


class ResNet18Cifar(nn.Module):
    """``forward: [B, C, H, W] -> [B, num_classes]`` logits."""

    def __init__(self, num_classes: int, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        channels = [scaled(c, width) for c in STAGE_CHANNELS]
        self.conv1 = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        stages, current = [], channels[0]
        for index, (out, blocks) in enumerate(zip(channels, BLOCKS_PER_STAGE)):
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(current, out, 2 if (index > 0 and b == 0) else 1,
                                          shortcut=projection_shortcut))
                current = out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(current, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
