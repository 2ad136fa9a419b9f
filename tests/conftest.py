"""Writers of tiny datasets in the official on-disk formats, as pytest fixtures.

Each writer creates the files a real download would leave (same names, same encodings) with a
handful of random images, and returns the arrays it wrote so tests can compare exactly.
"""

from __future__ import annotations

import copy
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from losslines.runner.config import apply_overrides, parse_config

if not torch.cuda.is_available():
    # Triton fixes interpreted vs compiled when it is first imported, and frameworks that some tests
    # import (Lightning, transformers, accelerate) import it too, before the kernel tests would set
    # this at their top: decide for the whole session, here (regression: 77 kernel tests failed in CI)
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_cifar(base: Path, variant: str, seed: int = 0, per_file: dict[str, int] | None = None) -> dict:
    """CIFAR-10 (``variant="cifar10"``: 5 train batches of 3 + test batch of 4) or CIFAR-100
    (``"cifar100"``: train of 7, test of 5) python pickles under ``base``; ``per_file`` overrides
    the images per file (``per_file={"train": n, "test": m}``).

    Returns:
        ``{"train": (uint8 [N, 3, 32, 32], int64 [N]), "test": (...)}`` in id order.
    """
    rng = np.random.default_rng(seed)
    if variant == "cifar10":
        folder, label_key, classes = base / "cifar-10-batches-py", "labels", 10
        splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        sizes = {"train": 3, "test": 4}
        meta_name, meta = "batches.meta", {"label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}
    else:
        folder, label_key, classes = base / "cifar-100-python", "fine_labels", 100
        splits = {"train": ["train"], "test": ["test"]}
        sizes = {"train": 7, "test": 5}
        meta_name, meta = "meta", {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": []}
    sizes.update(per_file or {})
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, files in splits.items():
        xs, ys = [], []
        for fname in files:
            x = _images(rng, sizes[split], (3, 32, 32))
            y = rng.integers(0, classes, size=sizes[split]).astype(np.int64)
            entry = {"batch_label": fname, "data": x.reshape(len(x), -1), label_key: [int(v) for v in y]}
            if variant == "cifar100":
                entry["coarse_labels"] = [int(v) // 5 for v in y]
            with open(folder / fname, "wb") as f:
                pickle.dump(entry, f, protocol=2)
            xs.append(x)
            ys.append(y)
        written[split] = (np.concatenate(xs), np.concatenate(ys))
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return written


def _idx_bytes(arr: np.ndarray) -> bytes:
    magic = 0x0800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx(base: Path, folder: str, gz: bool, seed: int = 0) -> dict:
    """MNIST-style ``<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
    (train 6, test 4 images of 28x28)."""
    rng = np.random.default_rng(seed)
    raw = base / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, prefix, n in (("train", "train", 6), ("test", "t10k", 4)):
        x = _images(rng, n, (28, 28))
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            path = raw / f"{prefix}-{kind}-ubyte"
            data = _idx_bytes(arr)
            if gz:
                with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
                    f.write(data)
            else:
                path.write_bytes(data)
        written[split] = (x[:, None], y.astype(np.int64))
    return written


def write_svhn(base: Path, seed: int = 0) -> dict:
    """SVHN ``train_32x32.mat`` (5 images) and ``test_32x32.mat`` (3 images), X ``[32, 32, 3, n]``,
    y ``[n, 1]`` with label 10 for the digit 0 (always present in both files)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    base.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", 5), ("test", 3)):
        x = _images(rng, n, (3, 32, 32))  # [n, C, H, W]
        digits = rng.integers(0, 10, size=n)
        digits[0] = 0
        y_file = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(base / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y_file})
        written[split] = (x, digits.astype(np.int64))
    return written


@pytest.fixture
def disk_writers():
    """The writers above, as a namespace: ``disk_writers.cifar(base, "cifar10")`` etc."""

    class Writers:
        cifar = staticmethod(write_cifar)
        idx = staticmethod(write_idx)
        svhn = staticmethod(write_svhn)

    return Writers


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    """Tiny models run fastest on one thread, and the CI cores are shared; restored after each test.
    OMP_NUM_THREADS=1 makes a run's ``threads = 0`` (runner.threads) choose one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(before)


def _toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return repr(value)


def dump_toml(table: dict, prefix: str = "") -> str:
    """A (nested) dict of scalars, lists and tables as TOML text (enough for config tests)."""
    out = "".join(f"{k} = {_toml_literal(v)}\n" for k, v in table.items() if not isinstance(v, dict))
    for key, value in table.items():
        if isinstance(value, dict):
            out += f"[{prefix}{key}]\n" + dump_toml(value, prefix=f"{prefix}{key}.")
    return out


@pytest.fixture(scope="session")
def toml_dumps():
    """:func:`dump_toml`, for tests that write config files."""
    return dump_toml


# A training run that finishes in about a second: synthetic 8x8 data, a quarter-width CNN,
# 12 momentum-SGD steps, a line every 2 steps with every per-sample loss.
TINY_RUN = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "synthetic", "n_val": 24,
             "options": {"shape": [1, 8, 8], "num_classes": 4, "n_samples": 120}},
    "model": {"name": "small_cnn", "width": 0.25},
    "train": {"steps": 12, "batch_size": 16, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
              "checkpoint_every": 4},
    "measure": {"direction": "sgd", "schedule": "every", "every": 2, "spacing": 0.05, "half_width": 0.3,
                "bn": "batch", "bn_group": 16, "sample_losses": ["train", "val", "batch"],
                "sample_dtype": "float32"},
    "store": {"line_chunk": 4},
}


def make_tiny_config(tmp_path, *overrides: str, name: str = "run"):
    """A validated tiny RunConfig writing to ``tmp_path/<name>.zarr``, with ``--set``-style overrides."""
    table = copy.deepcopy(TINY_RUN)
    table["store"]["path"] = str(tmp_path / f"{name}.zarr")
    apply_overrides(table, overrides)
    return parse_config(table)


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`make_tiny_config`."""
    return make_tiny_config
