"""The standard initialisation of the registry's own models.

Convolutions: Kaiming normal, fan-out mode, ReLU gain (He et al. 2015), no bias. BatchNorm:
weight 1, bias 0. Linear layers keep PyTorch's default (Kaiming uniform with a = sqrt(5), bias
uniform in ±1/sqrt(fan_in)). Everything draws from torch's global generator, so
``torch.manual_seed(s)`` before building makes the initial parameters reproducible.
"""

from __future__ import annotations

from torch import nn


def init_weights(model: nn.Module) -> nn.Module:
    """Initialise every Conv2d and BatchNorm of ``model`` in place; returns ``model``."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
