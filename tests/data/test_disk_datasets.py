"""File-backed datasets: official on-disk formats written here, loaded through the registry.

No test touches the network: missing data is exercised with ``download=False`` or with the
download function replaced by one that fails (or that writes the files, as a download would).
"""

from __future__ import annotations

import socket
import urllib.error

import numpy as np
import pytest
import torch

from losslines.data import download as dl
from losslines.data import load_dataset


def _assert_matches(split, written_x: np.ndarray, written_y: np.ndarray) -> None:
    ids = split.ids.numpy()
    expected = torch.from_numpy(written_x[ids].astype(np.float32) / 255.0)
    torch.testing.assert_close(split.inputs, expected, rtol=0, atol=0)
    assert split.targets.tolist() == written_y[ids].tolist()


@pytest.mark.parametrize("variant, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickles_load_exactly(tmp_path, disk_writers, variant, classes):
    written = disk_writers.cifar(tmp_path / variant, variant)
    ds = load_dataset(variant, root=tmp_path, normalize="none", download=False)
    assert ds.num_classes == classes and ds.input_shape == (3, 32, 32) and ds.heldout_from == "test"
    assert len(ds.train) == len(written["train"][1]) and len(ds.val) == len(written["test"][1])
    assert ds.train.ids.tolist() == list(range(len(ds.train)))
    _assert_matches(ds.train, *written["train"])
    _assert_matches(ds.val, *written["test"])
    assert ds.source == str(tmp_path / variant)


def test_cifar10_row_layout_is_rgb_planes(tmp_path, disk_writers):
    """Oracle of the decoding: pixel (c, y, x) of an image is byte c*1024 + y*32 + x of its row."""
    written = disk_writers.cifar(tmp_path / "cifar10", "cifar10")
    ds = load_dataset("cifar10", root=tmp_path, normalize="none", download=False)
    row = written["train"][0][0].reshape(-1)
    img = ds.train.inputs[0]
    for c, y, x in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 17, 3)]:
        assert img[c, y, x].item() == pytest.approx(row[c * 1024 + y * 32 + x] / 255.0)


def test_torchvision_root_layout_is_accepted(tmp_path, disk_writers):
    written = disk_writers.cifar(tmp_path, "cifar10")  # files directly under root, as torchvision keeps them
    ds = load_dataset("cifar10", root=tmp_path, normalize="none", download=False)
    _assert_matches(ds.val, *written["test"])
    assert ds.source == str(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_load_exactly(tmp_path, disk_writers, name, folder, gz):
    written = disk_writers.idx(tmp_path / name, folder, gz=gz)
    ds = load_dataset(name, root=tmp_path, normalize="none", download=False)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    _assert_matches(ds.train, *written["train"])
    _assert_matches(ds.val, *written["test"])


def test_idx_reader_agrees_with_torchvision(tmp_path, disk_writers):
    """Oracle: torchvision's own MNIST class reads the same files to the same arrays."""
    from torchvision.datasets import MNIST

    disk_writers.idx(tmp_path / "mnist", "MNIST", gz=False)
    ds = load_dataset("mnist", root=tmp_path, normalize="none", download=False)
    for train, split in ((True, ds.train), (False, ds.val)):
        tv = MNIST(str(tmp_path / "mnist"), train=train, download=False)
        assert torch.equal((split.inputs[:, 0] * 255).round().to(torch.uint8), tv.data[split.ids])
        assert torch.equal(split.targets, tv.targets[split.ids])


def test_svhn_mat_loads_with_label_10_as_0(tmp_path, disk_writers):
    written = disk_writers.svhn(tmp_path / "svhn")
    ds = load_dataset("svhn", root=tmp_path, normalize="none", download=False)
    assert ds.input_shape == (3, 32, 32)
    _assert_matches(ds.train, *written["train"])
    _assert_matches(ds.val, *written["test"])
    assert 0 in ds.train.targets.tolist() and int(ds.train.targets.max()) <= 9


def test_file_backed_subsets_and_train_normalisation(tmp_path, disk_writers):
    disk_writers.idx(tmp_path / "mnist", "MNIST", gz=True)
    ds = load_dataset("mnist", root=tmp_path, n_train=4, n_val=2, seed=3)
    assert len(ds.train) == 4 and len(ds.val) == 2
    assert ds.selection["train_pool_size"] == 6 and ds.selection["heldout_pool_size"] == 4
    assert abs(ds.train.inputs.double().mean().item()) < 1e-6
    assert ds.train.inputs.double().std(correction=0).item() == pytest.approx(1.0, abs=1e-5)
    again = load_dataset("mnist", root=tmp_path, n_train=4, n_val=2, seed=3)
    assert torch.equal(ds.train.ids, again.train.ids) and torch.equal(ds.val.ids, again.val.ids)


# ----------------------------------------------------------------------------- missing / broken data


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist", "svhn"])
def test_missing_dataset_without_download_is_one_clear_line(tmp_path, name):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / name) in msg and "download disabled" in msg
    assert "--data-root" in msg and "LOSSLINES_DATA" in msg
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_failed_download_is_one_line_with_reason(tmp_path, monkeypatch):
    seen_timeouts = []

    def offline(cls, directory):
        seen_timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution\nsecond line of noise")

    monkeypatch.setattr(dl, "download_cifar", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path, download=True)
    msg = str(info.value)
    assert "\n" not in msg and "second line" not in msg
    assert "download failed: URLError" in msg and "name resolution" in msg
    assert str(tmp_path / "cifar10") in msg and "cifar-10-batches-py" in msg and "LOSSLINES_DATA" in msg
    assert seen_timeouts == [dl.DOWNLOAD_TIMEOUT_S]
    assert socket.getdefaulttimeout() == before


def test_mnist_download_tries_every_mirror_and_reports_in_one_line(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils
    from torchvision.datasets import MNIST

    tried = []

    def refuse(url, download_root, filename=None, md5=None):
        tried.append(url)
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", refuse)
    with pytest.raises(FileNotFoundError, match=r"^mnist not found under .*download failed: RuntimeError") as info:
        load_dataset("mnist", root=tmp_path)
    assert "\n" not in str(info.value)
    assert tried == [m + MNIST.resources[0][0] for m in MNIST.mirrors]


def test_download_that_delivers_the_files_is_loaded(tmp_path, monkeypatch, disk_writers):
    calls = []

    def fake_download(cls, directory):
        calls.append(directory)
        disk_writers.cifar(directory, "cifar10")

    monkeypatch.setattr(dl, "download_cifar", fake_download)
    ds = load_dataset("cifar10", root=tmp_path, download=True)
    assert calls == [tmp_path / "cifar10"] and len(ds.train) == 15
    load_dataset("cifar10", root=tmp_path, download=True)  # present now: no second download
    assert len(calls) == 1


def test_corrupt_file_names_the_file(tmp_path, disk_writers):
    disk_writers.cifar(tmp_path / "cifar10", "cifar10")
    bad = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, download=False)


def test_truncated_idx_file_names_the_file(tmp_path, disk_writers):
    disk_writers.idx(tmp_path / "mnist", "MNIST", gz=False)
    path = tmp_path / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_file_backed_datasets_take_no_options(tmp_path, disk_writers):
    disk_writers.svhn(tmp_path / "svhn")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'upsample' for dataset 'svhn'; valid options: none"):
        load_dataset("svhn", root=tmp_path, download=False, upsample=True)
