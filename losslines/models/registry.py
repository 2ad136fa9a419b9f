"""The model registry: :func:`build_model` by name, with width multipliers and checked options.

=================== ===================================== ==================================
name                architecture                          options (default)
=================== ===================================== ==================================
``resnet20/32/44/`` CIFAR ResNet, option-A shortcuts      none
``56/110``          (:mod:`.cifar_resnet`)
``resnet18``        CIFAR ResNet-18, projection shortcuts none
                    (:mod:`.resnet18`)
``mobilenetv2``     CIFAR MobileNetV2 (:mod:`.mobilenetv2`) ``dropout`` (0.0), ``round_to`` (8),
                                                          ``last_channel`` (1280)
``small_cnn``       2 conv layers + pool + linear         ``channels`` ((32, 64)),
                                                          ``batch_norm`` (True)
``mlp``             fully connected, any input shape      ``hidden`` ((256, 128)),
                                                          ``batch_norm`` (False)
``vit``             Vision Transformer, 4x4 patches       ``dim`` (192), ``depth`` (6),
                    (:mod:`.transformer`)                 ``heads`` (3), ``mlp_ratio`` (2.0),
                                                          ``patch`` (4), ``dropout`` (0.0)
``byte_lm``         causal transformer LM over token ids  ``dim`` (256), ``depth`` (4),
                    [n, T] -> logits [n, T, V]            ``heads`` (4), ``mlp_ratio`` (4.0),
                    (V = num_classes, T = input_shape)    ``dropout`` (0.0), ``tie`` (True)
``torchvision:X``   any torchvision classification model  ``dropout`` (0.0) + X's builder
                    (:mod:`.torchvision_models`)          keyword arguments
``hf:TYPE``         a HuggingFace ``transformers`` causal  ``hf`` config fields (e.g.
                    LM built from a config, no download   ``n_layer``, ``n_embd``); extra
                    (:mod:`.external`)                    ``pip install losslines[hf]``
``pkg.mod:factory`` your own model: ``factory(**options)`` its keyword arguments (plus
                    (:mod:`.external`)                    ``num_classes``, ``input_shape``,
                                                          ``width`` if it takes them)
=================== ===================================== ==================================

Convolutional models and ``vit`` need ``input_shape = (C, H, W)`` with any C >= 1 and H, W >= 1
(8x8 digits work for the CNNs); ``mlp`` takes any shape; ``byte_lm`` takes ``(T,)``. No model has
active dropout by default.
``torch.manual_seed(s)`` before :func:`build_model` makes the initial parameters reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from torch import nn

from losslines.models.cifar_resnet import DEPTHS, CifarResNet
from losslines.models.external import HF_PREFIX, build_from_path, build_huggingface, is_import_path
from losslines.models.mlp import MLP
from losslines.models.mobilenetv2 import MobileNetV2Cifar
from losslines.models.resnet18 import ResNet18Cifar
from losslines.models.small_cnn import SmallCNN
from losslines.models.torchvision_models import PREFIX, build_torchvision
from losslines.models.transformer import ByteTransformerLM, VisionTransformer
from losslines.models.width import check_width


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Attributes:
        name: registry name.
        build: ``(num_classes, input_shape, width, **options) -> nn.Module``.
        options: accepted options and their defaults.
        image: needs ``input_shape = (C, H, W)``.
    """

    name: str
    build: Callable[..., nn.Module]
    options: Mapping[str, object]
    image: bool = True


def _resnet(depth: int) -> Callable[..., nn.Module]:
    return lambda num_classes, input_shape, width: CifarResNet(depth, num_classes, input_shape[0], width)


_SPECS: dict[str, ModelSpec] = {
    **{f"resnet{d}": ModelSpec(f"resnet{d}", _resnet(d), {}) for d in DEPTHS},
    "resnet18": ModelSpec(
        "resnet18", lambda num_classes, input_shape, width: ResNet18Cifar(num_classes, input_shape[0], width), {}
    ),
    "mobilenetv2": ModelSpec(
        "mobilenetv2",
        lambda num_classes, input_shape, width, **o: MobileNetV2Cifar(num_classes, input_shape[0], width, **o),
        {"dropout": 0.0, "round_to": 8, "last_channel": 1280},
    ),
    "small_cnn": ModelSpec(
        "small_cnn",
        lambda num_classes, input_shape, width, **o: SmallCNN(num_classes, input_shape[0], width, **o),
        {"channels": (32, 64), "batch_norm": True},
    ),
    "mlp": ModelSpec(
        "mlp",
        lambda num_classes, input_shape, width, **o: MLP(num_classes, input_shape, width, **o),
        {"hidden": (256, 128), "batch_norm": False},
        image=False,
    ),
    "vit": ModelSpec(
        "vit",
        lambda num_classes, input_shape, width, **o: VisionTransformer(num_classes, input_shape, width, **o),
        {"dim": 192, "depth": 6, "heads": 3, "mlp_ratio": 2.0, "patch": 4, "dropout": 0.0},
    ),
    "byte_lm": ModelSpec(
        "byte_lm",
        lambda num_classes, input_shape, width, **o: ByteTransformerLM(num_classes, input_shape, width, **o),
        {"dim": 256, "depth": 4, "heads": 4, "mlp_ratio": 4.0, "dropout": 0.0, "tie": True},
        image=False,
    ),
}  # fmt: skip


def model_names() -> tuple[str, ...]:
    """Names accepted by :func:`build_model`; ``"torchvision:<name>"``, ``"hf:<type>"`` and
    ``"package.module:factory"`` are accepted as well."""
    return tuple(_SPECS) + (PREFIX + "<name>", HF_PREFIX + "<type>", "<package.module>:<factory>")


def build_model(
    name: str, *, num_classes: int, input_shape: tuple[int, ...], width: float = 1.0, **options
) -> nn.Module:
    """Build a freshly initialised classification model.

    Args:
        name: one of :func:`model_names`, ``"torchvision:<model>"``, ``"hf:<type>"`` or
            ``"package.module:factory"``.
        num_classes: number of output logits (>= 1; the vocabulary of a language model).
        input_shape: shape of one sample, e.g. ``(3, 32, 32)`` or ``(1, 8, 8)``.
        width: channel / hidden-size multiplier (> 0); tiny widths give tiny models.
        **options: model-specific options (see the module table).

    Returns:
        ``nn.Module`` in training mode mapping ``[B, *input_shape]`` to ``[B, num_classes]``
        (language models: ``[B, T]`` token ids to ``[B, T, num_classes]`` logits).

    Raises:
        ValueError: unknown name (the error lists the valid names), unknown or invalid option,
            or an input shape the model cannot take.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    input_shape = tuple(input_shape)
    if not input_shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in input_shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}")
    width = check_width(width)
    if name.startswith(HF_PREFIX):
        return build_huggingface(name[len(HF_PREFIX):], num_classes=num_classes, input_shape=input_shape,
                                 width=width, **options)
    if is_import_path(name):
        return build_from_path(name, num_classes=num_classes, input_shape=input_shape, width=width, **options)
    if name.startswith(PREFIX):
        tv_name = name[len(PREFIX) :]
        return build_torchvision(tv_name, num_classes=num_classes, input_shape=input_shape, width=width, **options)
    if name not in _SPECS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    spec = _SPECS[name]
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) or "none"
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; valid options: {valid}")
    if spec.image and len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs input_shape (C, H, W), got {input_shape}; use 'mlp' for flat inputs")
    return spec.build(num_classes, input_shape, width, **{**spec.options, **options})
