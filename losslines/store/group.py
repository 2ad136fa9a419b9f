"""Opening a store's zarr group: the format check, the member listing and the layout read back.

Shared by the reader and the writer (docs/store-format.md, "Container").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from losslines.store.location import Location, location
from losslines.store.schema import DIRECTIONS_GROUP, FORMAT_ATTR, SPLITS, STEPS_GROUP, StoreLayout


def open_group_checked(where: str | os.PathLike[str] | Location, mode: str = "r", *,
                       storage_options: Mapping[str, Any] | None = None) -> tuple[Location, zarr.Group, int]:
    """Open the root group of a losslines store; return (location, group, format number).

    Args:
        where: a local path, a ``file://`` or fsspec URL, or a ``Location``.
        mode: ``"r"`` or ``"r+"``.
        storage_options: fsspec options of a URL.

    Raises:
        FileNotFoundError: nothing there.
        ValueError: not a losslines store.
    """
    loc = location(where, storage_options)
    if not loc.exists():
        raise FileNotFoundError(f"no losslines store at {loc}: the path does not exist")
    if not loc.is_zarr_group():
        raise ValueError(f"{loc} is not a losslines store (no zarr.json; expected a zarr v3 group)")
    try:
        group = zarr.open_group(store=loc.zarr_store(read_only=mode == "r"), mode=mode,  # type: ignore[arg-type]
                                use_consolidated=use_consolidated(loc, mode))
    except Exception as err:
        raise ValueError(f"{loc} is not a losslines store (cannot open as a zarr v3 group: {err})") from err
    fmt = group.attrs.get(FORMAT_ATTR)
    if fmt is None:
        if "losslines_recording" in group.attrs:
            raise ValueError(f"{loc} is a losslines recording, not a store: measure its lines with "
                             f"losslines measure {loc} --out STORE")
        raise ValueError(f"{loc} is a zarr group but not a losslines store (no {FORMAT_ATTR!r} attribute)")
    return loc, group, int(fmt)  # type: ignore[arg-type]


def lines_committed(where: Location) -> int:
    """Lines committed to the store or recording at ``where``, over all its groups: 0 also for a
    zarr group a writer was killed while creating (no format attribute yet)."""
    group = zarr.open_group(store=where.zarr_store(read_only=True), mode="r", use_consolidated=False)
    total = int(group.attrs.get("committed_lines", 0) or 0)  # type: ignore[arg-type]
    for name in member_names(group)[1]:
        total += int(group[name].attrs.get("committed_lines", 0) or 0)  # type: ignore[arg-type]
    return total


def use_consolidated(loc: Location, mode: str = "r") -> bool | None:
    """Whether to read a store's consolidated metadata (docs/store-format.md, "Container"): for a
    remote store opened to read, when it has some (one request opens it); never for a local one
    (reading the files themselves costs little and cannot be stale) nor for writing (a writer
    must see, and change, the arrays' own metadata)."""
    return None if not loc.is_local and mode == "r" else False


def member_names(group: zarr.Group) -> tuple[list[str], list[str]]:
    """Sorted names of the arrays and of the sub-groups directly in ``group``.

    On a local store this reads the child folders' ``zarr.json`` itself: zarr's own listing
    warns about (and a warning is an error in the tests) the temporary files a concurrent
    writer leaves for an instant while it atomically replaces a metadata file.
    """
    root = getattr(group.store, "root", None)
    if root is None:  # not a local store: zarr's listing
        return sorted(group.array_keys()), sorted(group.group_keys())
    arrays, groups = [], []
    folder = Path(root) / group.path
    for entry in os.scandir(folder):
        meta = Path(entry.path) / "zarr.json"
        if not entry.is_dir() or not meta.is_file():
            continue
        node_type = json.loads(meta.read_text()).get("node_type")
        (arrays if node_type == "array" else groups if node_type == "group" else []).append(entry.name)
    return sorted(arrays), sorted(groups)


def infer_layout(group: zarr.Group) -> StoreLayout:
    """The :class:`StoreLayout` a store was created with, read back from its arrays.

    ``sample_block`` is recovered from the chunks of the per-sample arrays (the default when
    the store has none); every other field is exact.
    """
    array_names, group_names = member_names(group)
    names = set(array_names)
    if "position" not in names or "step" not in names:
        raise ValueError("store lacks the 'position' or 'step' array; not a losslines store")

    def size(name: str, axis: int = -1) -> int:
        return int(group[name].shape[axis]) if name in names else 0

    sample_losses = tuple(s for s in SPLITS if f"sample_loss_{s}" in names)
    sample_dtype = "float16"
    sample_block = StoreLayout.sample_block
    if sample_losses:
        arrays = [group[f"sample_loss_{s}"] for s in sample_losses]
        sample_dtype = str(np.dtype(arrays[0].dtype))
        blocks = [(a.chunks[-1], a.shape[-1]) for a in arrays]
        partial = [c for c, n in blocks if c < n]
        sample_block = partial[0] if partial else max(c for c, _ in blocks)
    n_directions = 0
    if DIRECTIONS_GROUP in group_names:
        n_directions = int(group[DIRECTIONS_GROUP]["direction_norm"].shape[1])
    return StoreLayout(
        n_points=size("position"),
        n_train=size("sample_ids_train"),
        n_val=size("sample_ids_val"),
        batch_size=size("batch_ids"),
        sample_losses=sample_losses,
        sample_dtype=sample_dtype,  # type: ignore[arg-type]
        n_directions=n_directions,
        line_chunk=int(group["step"].chunks[0]),
        per_step=STEPS_GROUP in group_names,
        step_chunk=int(group[STEPS_GROUP]["step"].chunks[0]) if STEPS_GROUP in group_names else StoreLayout.step_chunk,
        sample_block=int(sample_block),
        interpolation="interpolated" in names,
    )
