"""Where each dataset's raw samples come from: files on disk, scikit-learn, or a seeded generator.

Each source returns a :class:`RawData` (unnormalised samples plus provenance); selecting
subsets and normalising is the registry's job (:mod:`losslines.data.registry`).

On-disk layout (``root`` = :func:`losslines.data.data_root`): files are looked for under
``root/<name>/`` (where downloads go) and then directly under ``root/`` (a torchvision-style
root shared by several datasets):

=============== ===================================================================
cifar10         ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``
cifar100        ``cifar-100-python/train``, ``test``
mnist           ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
fashion_mnist   ``FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
svhn            ``train_32x32.mat``, ``test_32x32.mat``
=============== ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from losslines.data import download as dl
from losslines.data import formats


@dataclass(frozen=True)
class RawData:
    """Unnormalised samples of a dataset before subset selection.

    Attributes:
        train_x: ``[N, ...]`` samples of the official train split (or of the single pool),
            uint8 or float32.
        train_y: ``[N]`` int64 labels.
        test_x, test_y: the official test split, or ``None`` for a pool dataset.
        scale: divisor that maps ``train_x`` to floats (255 for uint8 images, 1 for floats).
        scale_doc: how inputs are scaled before normalisation (recorded).
        source: provenance (directory or generator description).
        tokens: ``train_x`` holds token windows ``[N, T + 1]`` (inputs: the first T, targets:
            the last T); ``train_y`` is unused.
    """

    train_x: np.ndarray | torch.Tensor
    train_y: np.ndarray
    test_x: np.ndarray | torch.Tensor | None
    test_y: np.ndarray | None
    scale: float
    scale_doc: str
    source: str
    tokens: bool = False


# --------------------------------------------------------------------------- pool datasets


def load_digits(upsample: bool) -> RawData:
    """scikit-learn's 1,797 real 8x8 digits (values 0..16), as ``[N, 1, 8, 8]`` in [0, 1].

    Args:
        upsample: resize to ``[N, 3, 32, 32]`` (bilinear, the grey channel repeated three
            times), for CIFAR-shaped models.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    doc = "pixel / 16 (sklearn digits take values 0..16)"
    if upsample:
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        x = x.repeat(1, 3, 1, 1).contiguous()
        doc += ", bilinear upsampling 8x8 -> 32x32, grey repeated to 3 channels"
    return RawData(x, bunch.target.astype(np.int64), None, None, 1.0, doc, "sklearn.datasets.load_digits")


def make_synthetic(shape: tuple[int, ...], num_classes: int, n_samples: int, noise: float, data_seed: int) -> RawData:
    """A seeded class-conditional Gaussian pool: ``x = mu[y] + noise * eps``.

    ``mu[c] ~ N(0, I)`` per class, ``eps ~ N(0, I)``, labels balanced (``i mod C``, shuffled).
    Fully determined by ``(shape, num_classes, n_samples, noise, data_seed)``.

    Returns:
        RawData with ``train_x`` ``[n_samples, *shape]`` float32.
    """
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"synthetic option 'shape' must be a non-empty tuple of positive ints, got {shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"synthetic option 'num_classes' must be an int >= 2, got {num_classes!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < num_classes:
        raise ValueError(f"synthetic option 'n_samples' must be an int >= num_classes ({num_classes}), got {n_samples!r}")
    if not noise >= 0:
        raise ValueError(f"synthetic option 'noise' must be >= 0, got {noise!r}")
    g = torch.Generator().manual_seed(int(data_seed))
    means = torch.randn((num_classes, *shape), generator=g)
    labels = (torch.arange(n_samples) % num_classes)[torch.randperm(n_samples, generator=g)]
    x = means[labels] + noise * torch.randn((n_samples, *shape), generator=g)
    source = (
        f"synthetic Gaussian classes (shape={tuple(shape)}, num_classes={num_classes}, "
        f"n_samples={n_samples}, noise={noise}, data_seed={data_seed})"
    )
    return RawData(x.float(), labels.numpy().astype(np.int64), None, None, 1.0, "none (generated floats)", source)


def make_synthetic_tokens(vocab: int, seq_len: int, n_samples: int, data_seed: int) -> RawData:
    """Seeded token sequences from a random first-order Markov chain (each token has a few
    likely successors), so a language model has something to learn: windows ``[n, T + 1]``.

    Fully determined by ``(vocab, seq_len, n_samples, data_seed)``.
    """
    for name, value, low in (("vocab", vocab, 2), ("seq_len", seq_len, 1), ("n_samples", n_samples, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"synthetic_tokens option {name!r} must be an int >= {low}, got {value!r}")
    rng = np.random.default_rng(int(data_seed))
    logits = rng.normal(size=(vocab, vocab)) * 3.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    cumulative = probs.cumsum(axis=1)
    windows = np.empty((n_samples, seq_len + 1), dtype=np.int64)
    windows[:, 0] = rng.integers(0, vocab, n_samples)
    for t in range(1, seq_len + 1):
        u = rng.random(n_samples)[:, None]
        windows[:, t] = np.minimum((u > cumulative[windows[:, t - 1]]).sum(axis=1), vocab - 1)
    source = f"synthetic Markov tokens (vocab={vocab}, seq_len={seq_len}, n_samples={n_samples}, data_seed={data_seed})"
    return RawData(windows, np.zeros(n_samples, dtype=np.int64), None, None, 1.0, "token ids", source, tokens=True)


# --------------------------------------------------------------------------- on-disk image datasets


@dataclass(frozen=True)
class ImageSource:
    """An image dataset with an official train/test split stored in files.

    Attributes:
        name: registry name.
        num_classes: number of classes.
        input_shape: ``(C, H, W)``.
        train_files, test_files: file paths relative to the dataset directory, in id order.
            For IDX files a ``.gz`` twin is accepted.
        read: reader of one split's files -> ``(uint8 [N, C, H, W], int64 [N])``.
        fetch: downloads the official files into a directory (md5-checked by torchvision).
        hint: the layout shown in the "not found" error.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    read: Callable[[list[Path]], tuple[np.ndarray, np.ndarray]]
    fetch: Callable[[Path], None]
    hint: str

    def locate(self, base: Path, rel: str) -> Path | None:
        """The existing file for ``rel`` under ``base`` (or its ``.gz`` twin for IDX files)."""
        for candidate in (base / rel, base / (rel + ".gz")) if "idx" in rel else (base / rel,):
            if candidate.is_file():
                return candidate
        return None

    def find(self, root: Path) -> tuple[Path, list[Path], list[Path]] | None:
        """The first base directory (``root/<name>``, then ``root``) that holds every file."""
        for base in (root / self.name, root):
            train = [self.locate(base, rel) for rel in self.train_files]
            test = [self.locate(base, rel) for rel in self.test_files]
            if all(p is not None for p in train + test):
                return base, train, test  # type: ignore[return-value]
        return None


def _cifar_reader(label_key: str) -> Callable[[list[Path]], tuple[np.ndarray, np.ndarray]]:
    return lambda paths: formats.read_cifar_batches(paths, label_key)


def _idx_reader(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    return formats.read_idx_pair(paths[0], paths[1])


def _svhn_reader(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    return formats.read_svhn_mat(paths[0])


def _fetch_cifar10(directory: Path) -> None:
    from torchvision.datasets import CIFAR10

    dl.download_cifar(CIFAR10, directory)


def _fetch_cifar100(directory: Path) -> None:
    from torchvision.datasets import CIFAR100

    dl.download_cifar(CIFAR100, directory)


def _fetch_mnist(directory: Path) -> None:
    from torchvision.datasets import MNIST

    dl.download_mnist(MNIST, directory)


def _fetch_fashion_mnist(directory: Path) -> None:
    from torchvision.datasets import FashionMNIST

    dl.download_mnist(FashionMNIST, directory)


def _fetch_svhn(directory: Path) -> None:
    dl.download_svhn("train", directory)
    dl.download_svhn("test", directory)


def _idx_files(folder: str, split: str) -> tuple[str, str]:
    return (f"{folder}/raw/{split}-images-idx3-ubyte", f"{folder}/raw/{split}-labels-idx1-ubyte")


_C10 = "cifar-10-batches-py"
_C100 = "cifar-100-python"
IMAGE_SOURCES: dict[str, ImageSource] = {
    s.name: s
    for s in (
        ImageSource(
            "cifar10", 10, (3, 32, 32),
            tuple(f"{_C10}/data_batch_{i}" for i in range(1, 6)), (f"{_C10}/test_batch",),
            _cifar_reader("labels"), _fetch_cifar10, f"{_C10}/data_batch_1..5, {_C10}/test_batch",
        ),
        ImageSource(
            "cifar100", 100, (3, 32, 32),
            (f"{_C100}/train",), (f"{_C100}/test",),
            _cifar_reader("fine_labels"), _fetch_cifar100, f"{_C100}/train, {_C100}/test",
        ),
        ImageSource(
            "mnist", 10, (1, 28, 28), _idx_files("MNIST", "train"), _idx_files("MNIST", "t10k"),
            _idx_reader, _fetch_mnist, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
        ),
        ImageSource(
            "fashion_mnist", 10, (1, 28, 28), _idx_files("FashionMNIST", "train"), _idx_files("FashionMNIST", "t10k"),
            _idx_reader, _fetch_fashion_mnist, "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
        ),
        ImageSource(
            "svhn", 10, (3, 32, 32), ("train_32x32.mat",), ("test_32x32.mat",),
            _svhn_reader, _fetch_svhn, "train_32x32.mat, test_32x32.mat",
        ),
    )
}  # fmt: skip


def load_image_source(src: ImageSource, root: Path, download: bool) -> RawData:
    """Read an on-disk dataset, downloading it first if it is missing and ``download`` is set.

    Raises:
        FileNotFoundError: files missing (and the download disabled or failed), in one line
            naming the directory, the reason and the fix.
        ValueError: a file exists but is not in the expected format, or holds samples of the
            wrong shape or labels out of range.
    """
    found = src.find(root)
    if found is None:
        target = root / src.name
        if download:

            def action() -> None:
                target.mkdir(parents=True, exist_ok=True)
                src.fetch(target)

            reason = dl.fetch(action)
            found = src.find(root)
            if found is None and reason is None:
                reason = "download finished but the expected files are still missing"
        else:
            reason = "download disabled"
        if found is None:
            raise FileNotFoundError(
                f"{src.name} not found under {target} (download failed: {reason}); put the official files "
                f"there ({src.hint}) or pass --data-root/set LOSSLINES_DATA"
                if download
                else f"{src.name} not found under {target} ({reason}); put the official files there "
                f"({src.hint}), pass --data-root/set LOSSLINES_DATA, or enable downloads (data.download = true)"
            )
    base, train_paths, test_paths = found
    train_x, train_y = src.read(train_paths)
    test_x, test_y = src.read(test_paths)
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if tuple(x.shape[1:]) != src.input_shape:
            raise ValueError(f"{src.name} {split} images under {base} have shape {x.shape[1:]}, expected {src.input_shape}")
        if y.size and (y.min() < 0 or y.max() >= src.num_classes):
            raise ValueError(f"{src.name} {split} labels under {base} lie outside [0, {src.num_classes})")
    return RawData(train_x, train_y, test_x, test_y, 255.0, "uint8 / 255", str(base))
