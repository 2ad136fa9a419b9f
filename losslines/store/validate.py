"""Validation of what a writer is given: line records, creation inputs, an existing store's arrays.

Every check runs in the caller's thread and fails with a one-line error naming the offending
array, split or attribute, what was got and what is expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from losslines.store.schema import COMMITTED_ATTR, FORMAT_ATTR, STATUS_ATTR, ArraySpec, SampleSlice, StoreLayout

RESERVED_ATTRS = (FORMAT_ATTR, STATUS_ATTR, COMMITTED_ATTR, "created", "finished", "status_reason")


def check_json(attrs: Mapping[str, Any], what: str) -> None:
    """Raise unless ``attrs`` is plain JSON and sets none of the attributes the writer owns."""
    reserved = sorted(set(attrs) & set(RESERVED_ATTRS))
    if reserved:
        raise ValueError(f"{what} may not set {reserved}: the writer owns {list(RESERVED_ATTRS)}")
    try:
        json.dumps(dict(attrs), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable (no NaN, numpy or objects): {err}") from err


def validate_record(record: Mapping[str, Any], specs: Mapping[str, ArraySpec], sizes: Mapping[str, int],
                    what: str) -> dict[str, np.ndarray]:
    """Check one line record against its specs; return copies cast to the stored dtypes.

    Raises:
        ValueError: unknown name, missing ``step``, wrong shape or an uncastable dtype.
    """
    if not isinstance(record, Mapping):
        raise TypeError(f"{what} takes a mapping of array name -> values, got {type(record).__name__}")
    unknown = [k for k in record if k not in specs]
    if unknown:
        raise ValueError(f"{what}: unknown array name(s) {unknown}; valid names: {', '.join(specs)}")
    if "step" not in record:
        raise ValueError(f"{what}: the record has no 'step' (the training step of the line)")
    out = {}
    for name, value in record.items():
        spec = specs[name]
        expected = tuple(sizes[d] for d in spec.dims[1:])
        if isinstance(value, SampleSlice):  # a shard of the samples: [offset, offset + n) of the last dimension
            arr = np.asarray(value.values)
            full = expected[-1]
            if arr.shape[:-1] != expected[:-1] or not 0 <= value.offset <= value.offset + arr.shape[-1] <= full:
                raise ValueError(f"{what}: samples [{value.offset}, {value.offset + arr.shape[-1]}) of array {name!r} "
                                 f"with shape {arr.shape} do not fit {expected}")
            with np.errstate(over="ignore"):
                out[name] = SampleSlice(int(value.offset), np.array(arr, dtype=spec.dtype, copy=True))
            continue
        arr = np.asarray(value)
        if arr.shape != expected:
            raise ValueError(
                f"{what}: array {name!r} has shape {arr.shape}, expected {expected} "
                f"(dims {spec.dims[1:]})"
            )
        if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
            raise ValueError(f"{what}: array {name!r} has dtype {arr.dtype}, cannot be stored as {spec.dtype}")
        with np.errstate(over="ignore"):  # losses beyond the float16 range are stored as inf
            out[name] = np.array(arr, dtype=spec.dtype, copy=True)
    return out


def check_sample_ids(sample_ids: Mapping[str, np.ndarray], layout: StoreLayout) -> dict[str, np.ndarray]:
    """The ``{"train": [N], "val": [N_val]}`` ids as int64, checked against ``layout``."""
    unknown = sorted(set(sample_ids) - {"train", "val"})
    if unknown:
        raise ValueError(f"sample_ids has unknown split(s) {unknown}; valid: 'train', 'val'")
    out = {}
    for split in ("train", "val"):
        n = layout.split_size(split)
        if n == 0:
            if split in sample_ids and len(sample_ids[split]) > 0:
                raise ValueError(f"sample_ids[{split!r}] given but layout has no {split} samples")
            continue
        if split not in sample_ids:
            raise ValueError(f"sample_ids[{split!r}] is required: the layout has {n} {split} samples")
        ids = np.asarray(sample_ids[split])
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"sample_ids[{split!r}] must be integers of shape ({n},), got {ids.dtype} {ids.shape}")
        out[split] = ids.astype(np.int64)
    return out


def check_arrays(group: zarr.Group, specs: list[ArraySpec], layout: StoreLayout, where: Path) -> None:
    """Raise if ``group`` lacks an array of ``specs`` or holds it with other dims/dtype/shape."""
    sizes = layout.dim_sizes()
    for spec in specs:
        try:
            array = group[spec.name]
        except KeyError:
            raise ValueError(f"{where} lacks array {spec.name!r}; cannot resume a store of another layout") from None
        dims = tuple(array.metadata.dimension_names or ())  # type: ignore[union-attr]
        tail = tuple(sizes[d] for d in spec.dims[1:])
        if dims != spec.dims or np.dtype(array.dtype) != spec.dtype or tuple(array.shape[1:]) != tail:
            raise ValueError(f"{where}: array {spec.name!r} is {dims} {array.dtype} {array.shape}, "
                             f"expected {spec.dims} {spec.dtype} (*, {tail})")
