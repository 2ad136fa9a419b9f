"""losslines.data: datasets as in-memory splits with stable sample ids.

``load_dataset(name, ...)`` returns a :class:`Dataset` (training subset + held-out split, each a
:class:`Split` of normalised inputs, labels and stable ids); ``augment_batch`` augments training
batches (never measurement data). See :mod:`losslines.data.registry` for the datasets and
options, :mod:`losslines.data.records` for the sample-id convention.
"""

from losslines.data.augment import AUGMENTATIONS, augment_batch
from losslines.data.normalization import NORMALIZE_MODES
from losslines.data.records import Dataset, Split, make_dataset
from losslines.data.registry import data_root, dataset_names, load_dataset

__all__ = [
    "AUGMENTATIONS",
    "NORMALIZE_MODES",
    "Dataset",
    "Split",
    "augment_batch",
    "data_root",
    "dataset_names",
    "load_dataset",
    "make_dataset",
]
