"""losslines.models: a registry of classification architectures, sized by a width multiplier.

``build_model(name, num_classes=..., input_shape=..., width=...)`` builds CIFAR-style ResNets
(option A: 20/32/44/56/110; ResNet-18), a CIFAR MobileNetV2, ``small_cnn``, ``mlp`` and any
torchvision classification model as ``"torchvision:<name>"``. See
:mod:`losslines.models.registry`.
"""

from losslines.models.registry import build_model, model_names

__all__ = ["build_model", "model_names"]
