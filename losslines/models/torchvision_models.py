"""Any torchvision classification model, by name: ``"torchvision:<name>"``.

Built with ``weights=None`` (random init; nothing is downloaded) and ``num_classes`` passed to
the builder; extra options go to the builder as keyword arguments (e.g. ``width_mult=0.5`` for
``mobilenet_v2``). Adaptations, all explicit:

* **Input channels**: when ``input_shape[0] != 3`` the first ``Conv2d`` (in registration
  order) is replaced by one with the same geometry and ``input_shape[0]`` input channels,
  Kaiming-normal initialised.
* **Dropout**: every ``nn.Dropout*`` and ``StochasticDepth`` module gets ``p = dropout``
  (option, default 0), since measurement forbids active dropout randomness.
* **Input size**: one forward of a zero batch in eval mode (no grad, buffers untouched)
  checks that the model takes ``input_shape`` and returns ``[1, num_classes]``; if not, a
  ``ValueError`` names the shape. (ImageNet models with five stride-2 stages still run on
  32x32, but their last feature map is 1x1.)

``width`` must stay 1 (use the builder's own option where it has one).
"""

from __future__ import annotations

import torch
from torch import nn

PREFIX = "torchvision:"


def classification_names() -> tuple[str, ...]:
    """Names of torchvision's classification models (``torchvision.models`` top level)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


def _replace_first_conv(model: nn.Module, in_channels: int, name: str) -> None:
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if module.groups != 1:
                raise ValueError(
                    f"torchvision:{name}: cannot adapt grouped first convolution {path!r} to {in_channels} channels"
                )
            new = nn.Conv2d(
                in_channels, module.out_channels, module.kernel_size, stride=module.stride, padding=module.padding,
                dilation=module.dilation, bias=module.bias is not None, padding_mode=module.padding_mode,
            )  # fmt: skip
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            if new.bias is not None:
                nn.init.zeros_(new.bias)
            parent_path, _, attr = path.rpartition(".")
            setattr(model.get_submodule(parent_path) if parent_path else model, attr, new)
            return
    raise ValueError(f"torchvision:{name} has no Conv2d to adapt to {in_channels} input channels")


def _probe(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, name: str) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *input_shape)))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"torchvision:{name} cannot take inputs of shape {tuple(input_shape)}: {first}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"torchvision:{name} returned {got} for one input, expected (1, {num_classes})")


def build_torchvision(
    name: str, *, num_classes: int, input_shape: tuple[int, ...], width: float, dropout: float = 0.0, **builder_options
) -> nn.Module:
    """Build ``torchvision.models.<name>(weights=None, num_classes=..., **builder_options)``.

    Raises:
        ValueError: not a torchvision classification model (lists the valid names), width != 1,
            input_shape not ``(C, H, W)``, an option the builder rejects, or an input size the
            model cannot take.
    """
    import torchvision
    from torchvision.ops import StochasticDepth

    names = classification_names()
    if name not in names:
        raise ValueError(f"{name!r} is not a torchvision classification model; valid names: {', '.join(names)}")
    if width != 1.0:
        raise ValueError(f"torchvision:{name} does not take width={width}; pass the builder's own option (e.g. width_mult)")
    if len(input_shape) != 3:
        raise ValueError(f"torchvision:{name} needs input_shape (C, H, W), got {tuple(input_shape)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"option 'dropout' must lie in [0, 1), got {dropout!r}")
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **builder_options)
    except TypeError as exc:
        raise ValueError(f"torchvision:{name} rejected options {sorted(builder_options)}: {exc}") from None
    if input_shape[0] != 3:
        _replace_first_conv(model, input_shape[0], name)
    random_layers = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, StochasticDepth)
    for module in model.modules():
        if isinstance(module, random_layers):
            module.p = dropout
    _probe(model, input_shape, num_classes, name)
    return model
