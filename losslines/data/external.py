"""Datasets from outside the registry: a loader of your own, by import path.

``data.name = "package.module:loader"``: ``loader(**options)`` returns a
:class:`~losslines.data.records.Dataset` (``losslines.data.make_dataset`` builds one from
tensors). Of ``seed``, ``fraction``, ``n_val``, ``root`` and ``download`` the loader is given
those its signature names; it selects and normalises its subsets itself.
"""

from __future__ import annotations

from losslines.data.records import Dataset
from losslines._imports import call_with_sizes, is_import_path, load_object

__all__ = ["is_import_path", "load_from_path"]


def load_from_path(path: str, *, root, fraction: float, n_val, seed: int, download: bool, **options) -> Dataset:
    """The dataset ``loader(**options)`` of ``path = "package.module:loader"`` returns.

    Raises:
        ValueError: not importable, options it does not take, or no ``Dataset`` returned.
    """
    loader = load_object(path, "dataset")
    settings = {"root": root, "fraction": fraction, "n_val": n_val, "seed": seed, "download": download}
    dataset = call_with_sizes(loader, f"dataset {path!r}", settings, options)
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset {path!r} returned {type(dataset).__name__}, not a losslines.data.Dataset "
                         "(build one with losslines.data.make_dataset)")
    return dataset
