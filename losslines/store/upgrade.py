"""``losslines upgrade STORE [--out NEW]``: convert a format 1 store to format 2.

The committed lines are copied block by block into a new format 2 store (the codecs, dimension
names, coordinates and attribute encoding of format 2; ``sample_slope0_*``, which format 1 did
not keep, read as not measured); nothing past ``committed_lines`` is copied. The status stays
what it was, so a ``running`` or ``failed`` store can be resumed after its upgrade; a
``complete`` one ends trimmed and consolidated like any closed format 2 store.

In place (no ``--out``, local stores only) the new store is built beside the old one
(``<store>.upgrading``) and swapped in by two renames only when it is complete: an interrupted
upgrade leaves the old store as it was. Checkpoints (``<store>.ckpt``) stay valid: line indices
do not change.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, Mapping

import numpy as np
import zarr

from losslines.store.group import infer_layout, member_names, open_group_checked
from losslines.store.location import Location, location
from losslines.store.schema import (COMMITTED_ATTR, DIRECTIONS_GROUP, FORMAT_ATTR, FORMAT_VERSION, STATUS_ATTR,
                                    STEPS_GROUP, decode_attrs, encode_attrs, line_specs, step_specs)
from losslines.store.writer import consolidate, create_layout, drop_fill_marks

_ROWS_PER_BLOCK = 256


def upgrade_store(source: str | os.PathLike[str] | Location, out: str | os.PathLike[str] | Location | None = None, *,
                  storage_options: Mapping[str, Any] | None = None) -> Location:
    """Convert the format 1 store at ``source`` to format 2, at ``out`` or in place; return where.

    Raises:
        FileNotFoundError / ValueError: not a store; already format 2 (nothing to do); ``out``
            exists; an in-place upgrade of a remote store (give ``out``).
    """
    src, group, fmt = open_group_checked(source, storage_options=storage_options)
    if fmt == FORMAT_VERSION:
        raise ValueError(f"{src} is format {fmt} already; nothing to upgrade")
    if fmt != 1:
        raise ValueError(f"{src} has losslines_format={fmt}; losslines upgrade converts format 1 to {FORMAT_VERSION}")
    if out is None:
        if not src.is_local:
            raise ValueError(f"{src} is not a local folder: upgrade it to a new location with --out URL")
        target = src.sibling(".upgrading")
        if target.exists():  # what an interrupted in-place upgrade left: never a store in use
            target.remove()
    else:
        target = location(out, storage_options)
        if target.exists():
            raise FileExistsError(f"{target} already exists; choose another --out or remove it")
    _convert(group, target)
    if out is not None:
        return target
    backup = src.sibling(".format1")
    os.rename(src.path, backup.path)
    os.rename(target.path, src.path)
    backup.remove()
    return src


def _convert(v1: zarr.Group, target: Location) -> None:
    layout = infer_layout(v1)
    attrs = decode_attrs(v1.attrs.asdict())
    committed = {"": int(attrs[COMMITTED_ATTR])}
    complete = attrs.get(STATUS_ATTR) == "complete"
    _, v1_groups = member_names(v1)
    for name in (DIRECTIONS_GROUP, STEPS_GROUP):
        if name in v1_groups:
            committed[name] = int(v1[name].attrs[COMMITTED_ATTR])  # type: ignore[arg-type]

    def allocation(key: str) -> int:  # a store that may be resumed keeps its allocation
        if complete:
            return max(committed[key], 0)
        group = v1 if key == "" else v1[key]
        return int(group["step"].shape[0])  # type: ignore[index]

    ids = {split: v1[f"sample_ids_{split}"][:] for split in ("train", "val") if layout.split_size(split) > 0}
    root = create_layout(target, layout, positions=v1["position"][:], sample_ids=ids, lines=max(allocation(""), 1),
                         direction_lines=max(allocation(DIRECTIONS_GROUP) if DIRECTIONS_GROUP in committed else 0, 1))
    groups = {"": (root, line_specs(layout))}
    if DIRECTIONS_GROUP in committed:
        groups[DIRECTIONS_GROUP] = (root[DIRECTIONS_GROUP], line_specs(layout, directions=True))  # type: ignore[assignment]
    if STEPS_GROUP in committed:
        groups[STEPS_GROUP] = (root[STEPS_GROUP], step_specs(layout))  # type: ignore[assignment]
    for key, (group, specs) in groups.items():
        old = v1 if key == "" else v1[key]
        n = committed[key]
        for spec in specs:
            array = group[spec.name]
            if array.shape[0] < n:  # the steps/ group is created with one chunk of entries
                array.resize((n,) + tuple(array.shape[1:]))
            if spec.name not in old:  # sample_slope0_*: not kept by format 1, not measured here
                continue
            for start in range(0, n, _ROWS_PER_BLOCK):
                stop = min(start + _ROWS_PER_BLOCK, n)
                array[start:stop] = np.asarray(old[spec.name][start:stop])  # type: ignore[index]
            if complete and array.shape[0] != n:
                array.resize((n,) + tuple(array.shape[1:]))
        if complete:
            drop_fill_marks(group)
        if key:
            group.update_attributes({COMMITTED_ATTR: n})
    upgraded = {"from_format": int(attrs[FORMAT_ATTR]), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    attrs = {k: v for k, v in attrs.items() if k != FORMAT_ATTR}
    # the format number last, as at creation: a half-converted folder is not a store
    root.update_attributes(encode_attrs({**attrs, "upgraded": upgraded, FORMAT_ATTR: FORMAT_VERSION}, set()))
    if complete:
        consolidate(target)
