"""Readers of the official on-disk formats of the image datasets (file in, uint8 arrays out).

We read the files ourselves instead of through torchvision's dataset classes because those
insist on the official md5 sums of files already on disk, which rules out loading anything but
the exact official release (and test fixtures written in the same format). Downloads still go
through torchvision and are md5-checked there (:mod:`losslines.data.download`); files on disk
can be md5-checked on request (``verify_md5=True``).

Formats:

* CIFAR-10 / CIFAR-100 "python version": pickled dicts with ``data`` (uint8 ``[n, 3072]``, rows
  of R, G, B planes of 32x32) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100).
* MNIST / Fashion-MNIST IDX files (optionally gzipped): big-endian magic ``0x00000803``
  (uint8 images ``[n, rows, cols]``) and ``0x00000801`` (uint8 labels ``[n]``).
* SVHN cropped digits ``.mat``: ``X`` uint8 ``[32, 32, 3, n]``, ``y`` ``[n, 1]`` with label 10
  for the digit 0.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def _pick(entry: dict, key: str, path: Path):
    for k in (key, key.encode()):
        if k in entry:
            return entry[k]
    raise ValueError(f"{path}: not a CIFAR batch file (no {key!r} entry; keys: {sorted(map(str, entry))})")


def read_cifar_batches(paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate CIFAR python batch files.

    Args:
        paths: batch files in order (their concatenation defines the sample ids).
        label_key: ``"labels"`` (CIFAR-10) or ``"fine_labels"`` (CIFAR-100).

    Returns:
        ``(images [N, 3, 32, 32] uint8, labels [N] int64)``.
    """
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            try:
                entry = pickle.load(f, encoding="latin1")
            except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
                raise ValueError(f"{path}: cannot read CIFAR batch ({type(exc).__name__}: {exc})") from None
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: not a CIFAR batch file (expected a dict, got {type(entry).__name__})")
        data = np.asarray(_pick(entry, "data", path))
        lab = np.asarray(_pick(entry, label_key, path), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != lab.shape[0]:
            raise ValueError(
                f"{path}: expected uint8 data [n, 3072] and n labels, got {data.dtype} {data.shape}, {lab.shape[0]} labels"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot decompress ({type(exc).__name__}: {exc})") from None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one uint8 IDX file (plain or ``.gz``).

    Args:
        path: the file.
        magic: expected magic number (``IDX_IMAGES_MAGIC`` or ``IDX_LABELS_MAGIC``).

    Returns:
        uint8 array of the stored shape (``[n, rows, cols]`` or ``[n]``).
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: too short for an IDX file")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"{path}: IDX magic {got:#010x}, expected {magic:#010x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = int(np.prod(shape))
    if len(raw) != header + count:
        raise ValueError(f"{path}: IDX header says shape {shape} ({count} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an MNIST-style image/label file pair.

    Returns:
        ``(images [N, 1, rows, cols] uint8, labels [N] int64)``.
    """
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC).astype(np.int64)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_path}: {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels")
    return images[:, None, :, :], labels


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN ``*_32x32.mat`` file; label 10 (the digit 0) becomes 0.

    Returns:
        ``(images [N, 3, 32, 32] uint8, labels [N] int64)``.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise ValueError(f"{path}: cannot read .mat file ({type(exc).__name__}: {exc})") from None
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: SVHN .mat needs variables X and y")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != y.shape[0]:
        raise ValueError(f"{path}: expected X uint8 [H, W, 3, n] and y [n, 1], got X {x.dtype} {x.shape}, y {y.shape}")
    y = np.where(y == 10, 0, y)
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y
