"""The model registry: shapes at tiny widths, parameter counts at full width, init, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losslines.models import build_model, model_names
from losslines.models.cifar_resnet import DEPTHS, ShortcutA
from losslines.models.width import divisible, scaled

OWN_MODELS = [n for n in model_names() if "<" not in n]  # the registry's own entries
IMAGE_MODELS = [n for n in OWN_MODELS if n != "byte_lm"]
TINY = {"mobilenetv2": dict(width=0.1, last_channel=16)}


def _tiny(name: str, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    kwargs = TINY.get(name, {"width": 0.125})
    return build_model(name, num_classes=num_classes, input_shape=input_shape, **kwargs)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_names():
    assert set(OWN_MODELS) == {f"resnet{d}" for d in DEPTHS} | {"resnet18", "mobilenetv2", "small_cnn", "mlp",
                                                                 "vit", "byte_lm"}
    assert {"torchvision:<name>", "hf:<type>", "<package.module>:<factory>"} <= set(model_names())


SHAPES = [(1, 32, 32), (3, 32, 32), (1, 8, 8), (3, 8, 8)]
# resnet110 runs at 8x8 only, for speed
FORWARD_CASES = [(n, s) for n in IMAGE_MODELS for s in SHAPES if not (n == "resnet110" and s[1] == 32)]


@pytest.mark.parametrize("name, input_shape", FORWARD_CASES)
def test_tiny_models_forward_to_logits(name, input_shape):
    torch.manual_seed(0)
    model = _tiny(name, 7, input_shape)
    assert model.training
    out = model(torch.randn(3, *input_shape))
    assert out.shape == (3, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_mlp_takes_flat_and_odd_shapes():
    for shape in [(20,), (2, 3, 5)]:
        model = build_model("mlp", num_classes=4, input_shape=shape, hidden=(8,), batch_norm=True)
        assert model(torch.randn(5, *shape)).shape == (5, 4)


# ------------------------------------------------------------------------ full-width parameter counts


def _resnet_a_count(n: int, classes: int = 10) -> int:
    """Oracle: parameters of ResNet-(6n+2) option A, counted by hand.

    3x3 convs without bias: stem 3->16; stage 1: 2n convs 16->16; stage 2: one 16->32 then 2n-1
    32->32; stage 3: one 32->64 then 2n-1 64->64. BatchNorm (2 per channel) after every conv;
    linear 64->classes with bias; option-A shortcuts add nothing.
    """
    convs = 9 * (3 * 16 + 2 * n * 16 * 16 + 16 * 32 + (2 * n - 1) * 32 * 32 + 32 * 64 + (2 * n - 1) * 64 * 64)
    bns = 2 * (16 + 2 * n * (16 + 32 + 64))
    return convs + bns + 64 * classes + classes


@pytest.mark.parametrize("depth", DEPTHS)
def test_resnet_option_a_parameter_counts(depth):
    model = build_model(f"resnet{depth}", num_classes=10, input_shape=(3, 32, 32))
    assert _count(model) == _resnet_a_count((depth - 2) // 6)


def test_known_parameter_counts():
    """Published figures: ResNet-20 0.27M, ResNet-56 0.85M (He et al. 2016, Table 6);
    CIFAR ResNet-18 11.17M; MobileNetV2 2.24M with a 10-way classifier."""
    counts = {
        name: _count(build_model(name, num_classes=10, input_shape=(3, 32, 32)))
        for name in ("resnet20", "resnet56", "resnet18", "mobilenetv2")
    }
    assert counts == {"resnet20": 269_722, "resnet56": 853_018, "resnet18": 11_173_962, "mobilenetv2": 2_236_682}


def test_resnet18_count_by_hand():
    def stage(c_in, c_out, strided):
        convs = 9 * c_in * c_out + 3 * 9 * c_out * c_out
        proj = (c_in * c_out + 2 * c_out) if strided else 0
        return convs + 4 * 2 * c_out + proj

    expected = 9 * 3 * 64 + 2 * 64 + stage(64, 64, False) + stage(64, 128, True) + stage(128, 256, True)
    expected += stage(256, 512, True) + 512 * 10 + 10
    assert _count(build_model("resnet18", num_classes=10, input_shape=(3, 32, 32))) == expected


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_mobilenetv2_has_torchvisions_parameter_count(width):
    """Oracle: the CIFAR variant only changes strides, so it has exactly torchvision's parameters."""
    import torchvision

    ours = build_model("mobilenetv2", num_classes=10, input_shape=(3, 32, 32), width=width)
    theirs = torchvision.models.mobilenet_v2(num_classes=10, width_mult=width)
    assert _count(ours) == _count(theirs)


def test_mobilenetv2_downsamples_by_8_and_has_ten_residuals():
    model = build_model("mobilenetv2", num_classes=10, input_shape=(3, 32, 32), width=0.1, last_channel=16)
    assert model.features(torch.randn(2, 3, 32, 32)).shape[-2:] == (4, 4)
    full = build_model("mobilenetv2", num_classes=10, input_shape=(3, 32, 32))
    # residual wherever stride 1 keeps the channels: 1 (24) + 2 (32) + 3 (64) + 2 (96) + 2 (160)
    assert sum(getattr(m, "residual", False) for m in full.modules()) == 10


def test_option_a_shortcut_has_no_parameters_and_pads_zeros():
    model = build_model("resnet20", num_classes=10, input_shape=(3, 32, 32))
    shortcuts = [m for m in model.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2 and all(_count(s) == 0 for s in shortcuts)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())
    x = torch.randn(2, 16, 6, 5)
    out = ShortcutA(16, 32, 2)(x)
    assert out.shape == (2, 32, 3, 3)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.equal(out[:, :8], torch.zeros(2, 8, 3, 3)) and torch.equal(out[:, 24:], torch.zeros(2, 8, 3, 3))


def test_width_rounding():
    assert scaled(16, 0.125) == 2 and scaled(16, 0.01) == 1 and scaled(64, 1.5) == 96
    assert divisible(32, 1.0) == 32 and divisible(24, 0.1) == 8 and divisible(96, 0.75) == 72
    model = build_model("resnet20", num_classes=3, input_shape=(1, 8, 8), width=0.25)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][:1] == [4]
    assert model.fc.in_features == 16


# ------------------------------------------------------------------------------ init and dropout


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "mobilenetv2", "small_cnn", "mlp", "torchvision:resnet18"])
def test_init_is_deterministic_under_manual_seed(name):
    kwargs = dict(num_classes=5, input_shape=(3, 8, 8))
    if name != "torchvision:resnet18":
        kwargs.update(TINY.get(name, {"width": 0.25}))
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        states.append(build_model(name, **kwargs).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_convs_get_kaiming_fan_out_init():
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10, input_shape=(3, 32, 32), width=0.5)
    conv = model.layer4[0].conv2  # 256 -> 256, 3x3
    expected_std = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in bns)


@pytest.mark.parametrize("name", OWN_MODELS)
def test_no_active_dropout_by_default(name):
    model = _tiny(name, 3, (8,) if name == "byte_lm" else (3, 8, 8))
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


def test_mobilenetv2_dropout_is_an_option():
    model = build_model("mobilenetv2", num_classes=3, input_shape=(3, 8, 8), width=0.1, last_channel=16, dropout=0.3)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3]


# ------------------------------------------------------------------------------ torchvision models


def test_torchvision_resnet18():
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=10, input_shape=(3, 32, 32))
    assert model.fc.out_features == 10 and model.training
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_torchvision_one_channel_inputs_adapt_the_stem():
    model = build_model("torchvision:resnet18", num_classes=4, input_shape=(1, 16, 16))
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_torchvision_dropout_is_zeroed_unless_asked():
    model = build_model("torchvision:squeezenet1_1", num_classes=10, input_shape=(3, 32, 32))
    ps = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert ps and all(p == 0.0 for p in ps)
    model = build_model("torchvision:squeezenet1_1", num_classes=10, input_shape=(3, 32, 32), dropout=0.5)
    assert all(m.p == 0.5 for m in model.modules() if isinstance(m, nn.Dropout))


def test_torchvision_probe_does_not_touch_buffers():
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", num_classes=3, input_shape=(3, 16, 16))
    assert all(int(m.num_batches_tracked) == 0 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)


def test_torchvision_errors():
    not_classifier = r"'fasterrcnn_resnet50_fpn' is not a torchvision classification model; valid names: .*resnet18"
    with pytest.raises(ValueError, match=not_classifier):
        build_model("torchvision:fasterrcnn_resnet50_fpn", num_classes=10, input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match=r"torchvision:resnet18 rejected options \['foo'\]"):
        build_model("torchvision:resnet18", num_classes=10, input_shape=(3, 32, 32), foo=1)
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(3, 8, 8\)"):
        build_model("torchvision:squeezenet1_1", num_classes=10, input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="does not take width=0.5"):
        build_model("torchvision:resnet18", num_classes=10, input_shape=(3, 32, 32), width=0.5)


# ------------------------------------------------------------------------------ registry errors


def test_unknown_model_lists_names():
    listing = (r"unknown model .resnet21.; valid names: resnet20, resnet32, .*mlp, vit, byte_lm, torchvision:<name>, "
               r"hf:<type>, <package.module>:<factory>")
    with pytest.raises(ValueError, match=listing):
        build_model("resnet21", num_classes=10, input_shape=(3, 32, 32))


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("resnet20", dict(dropout=0.1), r"unknown option\(s\) 'dropout' for model 'resnet20'; valid options: none"),
        ("mlp", dict(hiden=(3,)), r"unknown option\(s\) 'hiden' for model 'mlp'; valid options: hidden, batch_norm"),
        ("mlp", dict(hidden=(3, 0)), "'hidden' must be a tuple of positive ints"),
        ("small_cnn", dict(channels=(4,)), "'channels' must be two positive ints"),
        ("mobilenetv2", dict(dropout=1.0), r"'dropout' must lie in \[0, 1\)"),
        ("resnet20", dict(width=0.0), "width must be a finite number > 0"),
        ("resnet20", dict(num_classes=0), "num_classes must be a positive int"),
        ("resnet20", dict(input_shape=(64,)), r"needs input_shape \(C, H, W\), got \(64,\); use 'mlp'"),
        ("small_cnn", dict(input_shape=(3, 0, 8)), "input_shape must be a non-empty tuple of positive ints"),
    ],
)
def test_bad_arguments_are_clear_errors(name, kwargs, match):
    args = dict(num_classes=10, input_shape=(3, 8, 8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_model(name, **args)


# ------------------------------------------------------------------------------ torch.func contract


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "mobilenetv2", "small_cnn", "mlp"])
def test_functional_call_under_vmap_matches_a_loop(name):
    """The engine evaluates theta + s * u for a chunk of s with functional_call under vmap
    (eval-mode BN); every model must give the same logits as one call per point."""
    from torch.func import functional_call, vmap

    torch.manual_seed(0)
    model = _tiny(name, 4, (3, 8, 8)).double().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    direction = {k: torch.randn_like(v) for k, v in params.items()}

    def logits(s):
        return functional_call(model, ({k: params[k] + s * direction[k] for k in params}, buffers), (x,))

    steps = torch.tensor([-0.1, 0.0, 0.05], dtype=torch.float64)
    batched = vmap(logits)(steps)
    looped = torch.stack([logits(s) for s in steps])
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(looped[1], model(x), rtol=0, atol=0)
