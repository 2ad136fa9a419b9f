"""Models from outside the registry: a factory by import path, and HuggingFace models from a config."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslines.engine import measure_line
from losslines.models import build_model


def factory(num_classes, hidden=7, width=1.0):
    """A factory written for losslines: takes the dataset's sizes it names, and its own option."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, int(hidden * width)), torch.nn.ReLU(),
                               torch.nn.Linear(int(hidden * width), num_classes))


def test_a_factory_by_import_path_gets_its_options_and_the_sizes_it_names():
    model = build_model(f"{__name__}:factory", num_classes=3, input_shape=(4,), width=2.0, hidden=5)
    assert model[1].out_features == 10 and model[3].out_features == 3
    plain = build_model("torch.nn:Linear", num_classes=3, input_shape=(4,), in_features=4, out_features=3)
    assert isinstance(plain, torch.nn.Linear)


@pytest.mark.parametrize("name, options, match", [
    ("no_such_package_xyz:make", {}, "cannot import 'no_such_package_xyz'"),
    (f"{__name__}:missing", {}, "has no attribute 'missing'"),
    (f"{__name__}:factory", {"depth": 3}, r"option\(s\) \['depth'\] are not arguments"),
    ("torch.nn:Linear", {"in_features": 4, "out_features": 3, "width": 2.0}, "width"),
    ("torch:zeros", {"size": (2,)}, "not a torch.nn.Module"),
])
def test_import_path_errors_say_what_is_wrong(name, options, match):
    width = options.pop("width", 1.0)
    with pytest.raises(ValueError, match=match):
        build_model(name, num_classes=3, input_shape=(4,), width=width, **options)


def test_huggingface_needs_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ValueError, match=r"pip install 'losslines\[hf\]'"):
        build_model("hf:gpt2", num_classes=50, input_shape=(8,))


def test_a_huggingface_causal_lm_from_a_config_measures_exactly():
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = build_model("hf:gpt2", num_classes=40, input_shape=(10,), n_layer=2, n_embd=32, n_head=2)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (4, 11), generator=g)
    x = {"input_ids": ids[:, :-1], "attention_mask": torch.ones(4, 10, dtype=torch.long)}
    direction = {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters()}
    positions = [-0.2, 0.0, 0.3]
    norm = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
    expected = []
    for s in positions:  # by hand: a float64 copy with its parameters set, the token losses written out
        ref = copy.deepcopy(model).double().eval()
        with torch.no_grad():
            for (n, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
                p.copy_(q.detach().double() + s * direction[n].double() / norm)
            logits = ref(**x).logits
            expected.append(F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").mean(1).numpy())
    for strategy in ("loop", "vmap"):
        m = measure_line(model, x, ids[:, 1:], direction, positions, loss="token_cross_entropy", strategy=strategy)
        np.testing.assert_allclose(m.sample_loss, np.stack(expected), rtol=1e-4, atol=1e-6)
        assert np.isfinite(m.slope0)
    with pytest.raises(ValueError, match="unknown HuggingFace model type"):
        build_model("hf:no-such-type", num_classes=40, input_shape=(10,))
