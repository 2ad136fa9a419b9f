"""The dataset registry: :func:`load_dataset` by name, with seeded stable subsets and normalisation.

========================= ======== ====================== ===================================
name                      classes  sample shape           options (default)
========================= ======== ====================== ===================================
``digits``                10       1x8x8 (3x32x32)        ``upsample`` (False)
``synthetic``             option   option                 ``shape`` ((1, 8, 8)), ``num_classes``
                                                          (10), ``n_samples`` (1000), ``noise``
                                                          (1.0), ``data_seed`` (0)
``cifar10`` / ``cifar100`` 10/100  3x32x32                none
``mnist``/``fashion_mnist`` 10     1x28x28                none
``svhn``                  10       3x32x32                none
``python_source``         256      T byte tokens          ``seq_len`` (64), ``max_bytes`` (0 =
                          (V)      -> next bytes [T]      all), ``include_tests`` (False)
``synthetic_tokens``      vocab    T tokens               ``vocab`` (32), ``seq_len`` (16),
                                                          ``n_samples`` (512), ``data_seed`` (0)
``pkg.mod:loader``        yours    yours                  ``loader``'s keyword arguments
========================= ======== ====================== ===================================

Token datasets (``python_source``: :mod:`losslines.data.text`; ``synthetic_tokens``) give inputs
``[N, T]`` int64 token ids and targets ``[N, T]`` (the next token at each position), for
``measure.loss = "token_cross_entropy"``; normalisation does not apply to them. A loader named by
import path returns a :class:`~losslines.data.records.Dataset` (``make_dataset`` builds one from
tensors); of ``seed``, ``fraction``, ``n_val``, ``root`` and ``download`` it is given those its
signature names, and it selects its subsets itself.

Subsets (see :mod:`losslines.data.subsets`): for the file-backed datasets the training subset is
``fraction`` (or ``n_train`` samples) of the official train split and the held-out split is
``val_fraction`` (or ``n_val`` samples, default: all) of the official test split. ``digits`` and
``synthetic`` have one pool: ``n_val`` (default 297 for digits, ``n_samples // 5`` for synthetic)
or ``val_fraction`` of the pool is held out, and ``fraction``/``n_train`` apply to the rest. The
id convention is described in :mod:`losslines.data.records`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from losslines.data import sources, subsets, text
from losslines.data.external import is_import_path, load_from_path
from losslines.data.normalization import NORMALIZE_MODES, normalize_splits
from losslines.data.records import Dataset, Split

DATA_ENV = "LOSSLINES_DATA"
DIGITS_DEFAULT_VAL = 297


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry.

    Attributes:
        name: registry name.
        options: the dataset-specific options and their defaults.
        heldout_from: ``"pool"`` or ``"test"`` (see :class:`losslines.data.records.Dataset`).
    """

    name: str
    options: Mapping[str, object]
    heldout_from: str


_SPECS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec("digits", {"upsample": False}, "pool"),
    "synthetic": DatasetSpec(
        "synthetic", {"shape": (1, 8, 8), "num_classes": 10, "n_samples": 1000, "noise": 1.0, "data_seed": 0}, "pool"
    ),
    **{name: DatasetSpec(name, {}, "test") for name in sources.IMAGE_SOURCES},
    "python_source": DatasetSpec("python_source", {"seq_len": 64, "max_bytes": 0, "include_tests": False}, "pool"),
    "synthetic_tokens": DatasetSpec(
        "synthetic_tokens", {"vocab": 32, "seq_len": 16, "n_samples": 512, "data_seed": 0}, "pool"
    ),
}


def dataset_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_dataset` (and ``"package.module:loader"``)."""
    return tuple(_SPECS)


def data_root(root: str | Path | None = None) -> Path:
    """Directory holding the datasets: ``root`` if given, else ``$LOSSLINES_DATA``, else
    ``~/.cache/losslines``. Each dataset lives in ``<data_root>/<name>/``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV, "")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "losslines"


def _spec(name: str) -> DatasetSpec:
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_SPECS)}")
    return _SPECS[name]


def _resolve_options(spec: DatasetSpec, options: Mapping[str, object]) -> dict:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) or "none"
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown option(s) {names} for dataset {spec.name!r}; valid options: {valid}")
    return {**spec.options, **options}


def _load_raw(spec: DatasetSpec, opts: dict, root: Path, download: bool) -> tuple[sources.RawData, int, int | None]:
    """Raw data, number of classes, and default held-out size for pool datasets."""
    if spec.name == "digits":
        if not isinstance(opts["upsample"], bool):
            raise ValueError(f"digits option 'upsample' must be True or False, got {opts['upsample']!r}")
        return sources.load_digits(opts["upsample"]), 10, DIGITS_DEFAULT_VAL
    if spec.name == "python_source":
        windows, provenance = text.load_python_source(opts["seq_len"], opts["max_bytes"], opts["include_tests"])
        raw = sources.RawData(windows, np.zeros(len(windows), dtype=np.int64), None, None, 1.0, "byte tokens",
                              provenance, tokens=True)
        return raw, 256, max(1, len(windows) // 50)
    if spec.name == "synthetic_tokens":
        raw = sources.make_synthetic_tokens(opts["vocab"], opts["seq_len"], opts["n_samples"], opts["data_seed"])
        return raw, opts["vocab"], opts["n_samples"] // 5
    if spec.name == "synthetic":
        shape = opts["shape"]
        shape = tuple(shape) if isinstance(shape, (list, tuple)) else shape
        raw = sources.make_synthetic(shape, opts["num_classes"], opts["n_samples"], float(opts["noise"]), opts["data_seed"])
        return raw, opts["num_classes"], opts["n_samples"] // 5
    src = sources.IMAGE_SOURCES[spec.name]
    return sources.load_image_source(src, root, download), src.num_classes, None


def _take(x: np.ndarray | torch.Tensor, ids: np.ndarray, scale: float) -> torch.Tensor:
    """Rows ``ids`` of ``x`` as float32 divided by ``scale``."""
    rows = x[ids] if isinstance(x, np.ndarray) else x[torch.from_numpy(ids)]
    rows = torch.from_numpy(np.ascontiguousarray(rows)) if isinstance(rows, np.ndarray) else rows
    out = rows.to(torch.float32)
    return out / scale if scale != 1.0 else out.clone()


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    fraction: float = 1.0,
    n_train: int | None = None,
    n_val: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    normalize: str = "train",
    download: bool = True,
    **options,
) -> Dataset:
    """Load a dataset by name: a seeded training subset and held-out split with stable ids.

    Args:
        name: one of :func:`dataset_names`.
        root: data directory (default :func:`data_root`).
        fraction: share of the training pool to use (e.g. 0.08 of CIFAR-10 = 4,000 images);
            exclusive with ``n_train``.
        n_train: absolute training subset size.
        n_val, val_fraction: held-out size, absolute or as a share of its pool (at most one).
        seed: selects the subsets; the same seed and sizes give the same ids, larger sizes
            contain smaller ones.
        normalize: ``"train"`` | ``"per_split"`` | ``"none"`` (see
            :mod:`losslines.data.normalization`).
        download: fetch missing file-backed datasets (md5-checked, 10 s socket timeout).
        **options: dataset-specific options (see the module table).

    Returns:
        :class:`Dataset` with float32 inputs ``[N, *input_shape]``.

    Raises:
        ValueError: unknown name, option, mode, or sizes that do not fit.
        FileNotFoundError: a file-backed dataset is missing (one line: path, reason, fix).
    """
    if is_import_path(name):
        return load_from_path(name, root=root, fraction=fraction, n_val=n_val, seed=seed, download=download,
                              **options)
    spec = _spec(name)
    opts = _resolve_options(spec, options)
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"unknown normalize mode {normalize!r}; valid modes: {', '.join(NORMALIZE_MODES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if n_train is not None and fraction != 1.0:
        raise ValueError(f"give either fraction ({fraction}) or n_train ({n_train}), not both")
    train_fraction = None if n_train is not None else fraction

    raw, num_classes, pool_default_val = _load_raw(spec, opts, data_root(root), download)
    if raw.test_x is None:  # one pool: held-out suffix, training prefix of one permutation
        total = len(raw.train_y)
        nv = subsets.resolve_count(total, fraction=val_fraction, count=n_val, what="held-out", default=pool_default_val)
        nt = subsets.resolve_count(total - nv, fraction=train_fraction, count=n_train, what="training", default=total - nv)
        train_ids, val_ids = subsets.select_from_pool(total, nt, nv, int(seed))
        val_x, val_y, heldout_pool = raw.train_x, raw.train_y, total
        train_pool = total - nv
    else:
        train_pool, heldout_pool = len(raw.train_y), len(raw.test_y)
        nt = subsets.resolve_count(train_pool, fraction=train_fraction, count=n_train, what="training", default=train_pool)
        nv = subsets.resolve_count(heldout_pool, fraction=val_fraction, count=n_val, what="held-out", default=heldout_pool)
        train_ids = subsets.select(train_pool, nt, int(seed), subsets.STREAM_TRAIN)
        val_ids = subsets.select(heldout_pool, nv, int(seed), subsets.STREAM_HELDOUT)
        val_x, val_y = raw.test_x, raw.test_y
    if nt == 0:
        raise ValueError(f"the training subset of {name!r} is empty (fraction={fraction}, n_train={n_train})")

    if raw.tokens:  # windows [M, T + 1]: inputs the first T tokens, targets the next token at each
        train_w, val_w = (torch.from_numpy(np.ascontiguousarray(w).astype(np.int64))
                          for w in (raw.train_x[train_ids], val_x[val_ids]))
        train = Split(train_w[:, :-1].contiguous(), train_w[:, 1:].contiguous(), torch.from_numpy(train_ids))
        val = Split(val_w[:, :-1].contiguous(), val_w[:, 1:].contiguous(), torch.from_numpy(val_ids))
        record = {"mode": "none", "reason": "token ids are not normalised", "scale": raw.scale_doc}
        train_in = train.inputs
    else:
        train_in, val_in, record = normalize_splits(
            _take(raw.train_x, train_ids, raw.scale), _take(val_x, val_ids, raw.scale), normalize, scale=raw.scale_doc
        )
        train = Split(train_in, torch.from_numpy(raw.train_y[train_ids]), torch.from_numpy(train_ids))
        val = Split(val_in, torch.from_numpy(val_y[val_ids]), torch.from_numpy(val_ids))
    selection = {
        "seed": int(seed),
        "n_train": nt,
        "n_val": nv,
        "train_pool_size": train_pool,
        "heldout_pool_size": heldout_pool,
        "method": "sorted prefix of one seeded PCG64 permutation per split (nested in the size)",
    }
    return Dataset(
        name=name,
        train=train,
        val=val,
        num_classes=num_classes,
        input_shape=tuple(train_in.shape[1:]),
        normalization=record,
        source=raw.source,
        heldout_from=spec.heldout_from,
        selection=selection,
    )
