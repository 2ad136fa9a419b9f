"""The dataset registry on the bundled datasets: digits and synthetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from losslines.data import Dataset, Split, data_root, dataset_names, load_dataset
from losslines.data.registry import DIGITS_DEFAULT_VAL


def test_names():
    names = dataset_names()
    assert set(names) == {"digits", "synthetic", "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn",
                          "python_source", "synthetic_tokens"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar11'; valid names: digits, synthetic, cifar10"):
        load_dataset("cifar11")


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'upsampel' for dataset 'digits'; valid options: upsample"):
        load_dataset("digits", upsampel=True)


def test_bad_option_value_is_named():
    with pytest.raises(ValueError, match="'upsample' must be True or False"):
        load_dataset("digits", upsample="yes")
    with pytest.raises(ValueError, match="'num_classes' must be an int >= 2"):
        load_dataset("synthetic", num_classes=1)
    with pytest.raises(ValueError, match="'shape' must be a non-empty tuple"):
        load_dataset("synthetic", shape=(3, 0))


def test_unknown_normalize_mode_lists_modes():
    with pytest.raises(ValueError, match="valid modes: train, per_split, none"):
        load_dataset("digits", normalize="zscore")


def test_digits_default_split():
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset) and isinstance(ds.train, Split)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (1, 8, 8)
    assert len(ds.train) == 1797 - DIGITS_DEFAULT_VAL == 1500 and len(ds.val) == DIGITS_DEFAULT_VAL
    assert ds.train.inputs.shape == (1500, 1, 8, 8) and ds.train.inputs.dtype == torch.float32
    assert ds.train.targets.dtype == torch.int64 and ds.train.ids.dtype == torch.int64
    all_ids = torch.cat([ds.train.ids, ds.val.ids]).sort().values
    assert torch.equal(all_ids, torch.arange(1797))  # a partition of the pool
    assert ds.heldout_from == "pool" and ds.source == "sklearn.datasets.load_digits"


def test_digits_ids_index_the_sklearn_arrays():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = load_dataset("digits", normalize="none", n_train=50, n_val=20, seed=4)
    for split in (ds.train, ds.val):
        ids = split.ids.numpy()
        assert split.targets.tolist() == bunch.target[ids].tolist()
        expected = torch.from_numpy(bunch.data[ids].reshape(-1, 1, 8, 8).astype(np.float32) / 16.0)
        torch.testing.assert_close(split.inputs, expected, rtol=0, atol=0)


def test_digits_upsample():
    ds = load_dataset("digits", upsample=True, n_train=10, n_val=5, normalize="none")
    assert ds.input_shape == (3, 32, 32) and ds.train.inputs.shape == (10, 3, 32, 32)
    x = ds.train.inputs
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    small = load_dataset("digits", n_train=10, n_val=5, normalize="none")
    assert torch.equal(small.train.ids, ds.train.ids)
    # bilinear 4x upsampling keeps the image mean closely (up to border effects)
    torch.testing.assert_close(x[:, 0].mean(dim=(1, 2)), small.train.inputs[:, 0].mean(dim=(1, 2)), atol=0.03, rtol=0)


def test_synthetic_is_deterministic_and_shaped():
    a = load_dataset("synthetic", shape=(2, 4, 4), num_classes=3, n_samples=60, seed=1)
    b = load_dataset("synthetic", shape=[2, 4, 4], num_classes=3, n_samples=60, seed=1)
    assert a.input_shape == (2, 4, 4) and a.num_classes == 3 and len(a.train) + len(a.val) == 60
    assert len(a.val) == 12
    for sa, sb in ((a.train, b.train), (a.val, b.val)):
        assert torch.equal(sa.inputs, sb.inputs) and torch.equal(sa.targets, sb.targets) and torch.equal(sa.ids, sb.ids)
    other = load_dataset("synthetic", shape=(2, 4, 4), num_classes=3, n_samples=60, seed=1, data_seed=5)
    assert not torch.equal(a.train.inputs, other.train.inputs)


def test_synthetic_seed_selects_subsets_of_one_fixed_pool():
    a = load_dataset("synthetic", shape=(6,), n_samples=100, seed=0, normalize="none")
    b = load_dataset("synthetic", shape=(6,), n_samples=100, seed=1, normalize="none")
    assert not torch.equal(a.train.ids, b.train.ids)
    common, ia, ib = np.intersect1d(a.train.ids.numpy(), b.train.ids.numpy(), return_indices=True)
    assert len(common) > 0
    assert torch.equal(a.train.inputs[ia], b.train.inputs[ib])  # same id -> same sample


def test_synthetic_classes_are_separated():
    ds = load_dataset("synthetic", shape=(8,), num_classes=4, n_samples=400, noise=0.5, normalize="none")
    x, y = ds.train.inputs, ds.train.targets
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    dists = torch.cdist(means, means)
    assert float(dists[~torch.eye(4, dtype=torch.bool)].min()) > 1.0
    # nearest class mean classifies the held-out split far above chance
    pred = torch.cdist(ds.val.inputs, means).argmin(1)
    assert (pred == ds.val.targets).float().mean() > 0.9
    assert sorted(torch.bincount(torch.cat([y, ds.val.targets])).tolist()) == [100] * 4


def test_same_seed_same_ids_and_nested_fractions():
    small = load_dataset("digits", fraction=0.1, seed=7)
    again = load_dataset("digits", fraction=0.1, seed=7)
    large = load_dataset("digits", fraction=0.5, seed=7)
    assert torch.equal(small.train.ids, again.train.ids)
    assert len(small.train) == 150 and len(large.train) == 750
    assert bool(torch.isin(small.train.ids, large.train.ids).all())
    assert torch.equal(small.val.ids, large.val.ids)
    other_seed = load_dataset("digits", fraction=0.1, seed=8)
    assert not torch.equal(small.train.ids, other_seed.train.ids)


def test_heldout_nested_and_train_unchanged_by_n_val():
    a = load_dataset("digits", n_train=100, n_val=50, seed=2)
    b = load_dataset("digits", n_train=100, n_val=200, seed=2)
    assert torch.equal(a.train.ids, b.train.ids)
    assert bool(torch.isin(a.val.ids, b.val.ids).all())


def test_val_fraction_and_empty_val():
    ds = load_dataset("digits", val_fraction=0.1, n_train=20)
    assert len(ds.val) == round(0.1 * 1797)
    empty = load_dataset("digits", n_val=0, n_train=20)
    assert len(empty.val) == 0 and empty.val.inputs.shape == (0, 1, 8, 8)
    per_split = load_dataset("digits", n_val=0, n_train=20, normalize="per_split")
    assert per_split.normalization["val"] is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fraction=0.5, n_train=10), "either fraction"),
        (dict(n_val=10, val_fraction=0.1), "either the held-out fraction or the held-out count"),
        (dict(fraction=1.5), r"training fraction must lie in \[0, 1\]"),
        (dict(n_train=1700), r"training count must lie in \[0, 1500\]"),
        (dict(n_val=5000), r"held-out count must lie in \[0, 1797\]"),
        (dict(fraction=0.0), "training subset of 'digits' is empty"),
        (dict(seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_bad_sizes_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


def test_normalize_train_gives_unit_train_statistics_per_channel():
    ds = load_dataset("synthetic", shape=(3, 4, 4), n_samples=300, seed=0)
    x = ds.train.inputs.double()
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    raw = load_dataset("synthetic", shape=(3, 4, 4), n_samples=300, seed=0, normalize="none")
    mean = torch.tensor(ds.normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ds.normalization["std"]).view(1, 3, 1, 1)
    # the val split is transformed with the TRAIN statistics
    torch.testing.assert_close(ds.val.inputs.double(), (raw.val.inputs.double() - mean) / std, atol=1e-5, rtol=0)
    assert ds.normalization["mode"] == "train" and "training subset (240 samples)" in ds.normalization["computed_on"]


def test_normalize_per_split_and_none():
    per = load_dataset("synthetic", shape=(2, 3, 3), n_samples=200, normalize="per_split")
    for split in (per.train, per.val):
        x = split.inputs.double()
        torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(2, dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
    assert set(per.normalization) >= {"train", "val"}
    none = load_dataset("digits", normalize="none")
    assert float(none.train.inputs.min()) == 0.0 and float(none.train.inputs.max()) == 1.0
    assert none.normalization == {"mode": "none", "scale": "pixel / 16 (sklearn digits take values 0..16)"}


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("LOSSLINES_DATA", raising=False)
    assert data_root() == Path.home() / ".cache" / "losslines"
    monkeypatch.setenv("LOSSLINES_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root(str(tmp_path)) == tmp_path


def test_split_to_device_keeps_ids_on_cpu():
    ds = load_dataset("digits", n_train=8, n_val=4)
    moved = ds.train.to("cpu")
    assert torch.equal(moved.inputs, ds.train.inputs) and moved.ids.device.type == "cpu"


def test_split_rejects_inconsistent_fields():
    x = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match="ids must be int64 of shape"):
        Split(x, torch.zeros(3, dtype=torch.int64), torch.arange(2))
    with pytest.raises(ValueError, match="strictly increasing"):
        Split(x, torch.zeros(3, dtype=torch.int64), torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="targets hold 2 samples, the inputs 3"):
        Split(x, torch.zeros(2, dtype=torch.int64), torch.arange(3))
    with pytest.raises(ValueError, match="must share dim 0"):
        Split({"ids": x, "mask": torch.ones(2, 4)}, torch.zeros(3, dtype=torch.int64), torch.arange(3))
    # any batched structure of any dtype: token ids, dict inputs
    tokens = Split({"input_ids": torch.zeros(3, 5, dtype=torch.int64), "attention_mask": torch.ones(3, 5)},
                   torch.zeros(3, 5, dtype=torch.int64), torch.arange(3))
    assert len(tokens) == 3 and len(tokens.to("cpu")) == 3


def test_dataset_rejects_overlapping_pool_ids_and_wrong_shapes():
    split = Split(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), torch.tensor([3, 5]))
    common = dict(name="x", num_classes=2, normalization={}, source="test")
    with pytest.raises(ValueError, match="overlap"):
        Dataset(train=split, val=split, input_shape=(1, 2, 2), heldout_from="pool", **common)
    Dataset(train=split, val=split, input_shape=(1, 2, 2), heldout_from="test", **common)  # separate id spaces
    with pytest.raises(ValueError, match="expected input_shape"):
        Dataset(train=split, val=split, input_shape=(1, 4), heldout_from="test", **common)
