"""``ShardWriter``: one process's share of the per-sample arrays of a store another process commits.

In a measurement sharded over processes (``losslines.runner.distributed``) process 0 owns the
store: it creates or reopens it, writes the line-level arrays and its own samples' columns, and
advances ``committed_lines``. Every other process opens the same store with a ``ShardWriter`` and
writes only the per-sample columns of its samples, synchronously, before process 0 appends the
line (the processes hand the store over to each other with barriers, so no two ever write one
chunk at the same time). It follows the same line counters as process 0: it starts at the
committed lines it finds when it opens the store and counts every line it appends.

It has the parts of ``StoreWriter``'s interface a training loop uses (``flush``, ``close``,
``update_attrs``, the committed counters, a ``with`` block) as no-ops or counters, so the loop does
not care which process it runs in.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Mapping

from losslines.records import DirectionsRecord, LineRecord, StepRecord
from losslines.store.group import infer_layout, open_group_checked
from losslines.store.location import Location
from losslines.store.schema import (COMMITTED_ATTR, DIRECTIONS_GROUP, SampleSlice, directions_arrays, line_specs,
                                    record_arrays)
from losslines.store.validate import validate_record

ROOT = ""


class ShardWriter:
    """Writes this process's per-sample columns into an existing store (see the module docstring).

    Args:
        path: the store (a local path, an fsspec URL or a ``Location``).
        storage_options: fsspec options of a URL.

    Raises:
        FileNotFoundError / ValueError: no losslines store there.
    """

    def __init__(self, path: str | os.PathLike[str] | Location, *,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self._path, self._root, _ = open_group_checked(path, mode="r+", storage_options=storage_options)
        self._layout = infer_layout(self._root)
        self._groups = {ROOT: self._root}
        self._specs = {ROOT: {s.name: s for s in line_specs(self._layout)}}
        if self._layout.n_directions > 0:
            self._groups[DIRECTIONS_GROUP] = self._root[DIRECTIONS_GROUP]
            self._specs[DIRECTIONS_GROUP] = {s.name: s for s in line_specs(self._layout, directions=True)}
        self._next = {key: int(group.attrs[COMMITTED_ATTR]) for key, group in self._groups.items()}
        self._sizes = self._layout.dim_sizes()

    @property
    def path(self) -> Location:
        return self._path

    @property
    def layout(self):
        return self._layout

    @property
    def committed_lines(self) -> int:
        """Lines appended so far (process 0 commits them)."""
        return self._next[ROOT]

    @property
    def pending_lines(self) -> int:
        return 0

    @property
    def committed_direction_lines(self) -> int:
        return self._next.get(DIRECTIONS_GROUP, 0)

    @property
    def committed_steps(self) -> int:
        return 0

    def append(self, record: LineRecord) -> int:
        """Write this process's per-sample columns of the next line; returns its index."""
        return self._write(ROOT, record_arrays(record, self._layout), "append")

    def append_directions(self, record: DirectionsRecord) -> int:
        """Write this process's per-sample columns of the next ``directions/`` line."""
        return self._write(DIRECTIONS_GROUP, directions_arrays(record, self._layout), "append_directions")

    def append_step(self, record: StepRecord) -> int:
        """Per-step entries hold no per-sample values: process 0 writes them."""
        return 0

    def _write(self, key: str, arrays: Mapping[str, Any], what: str) -> int:
        specs = self._specs[key]
        mine = {name: value for name, value in arrays.items() if isinstance(value, SampleSlice)}
        index = self._next[key]
        group = self._groups[key]
        for name, value in validate_record({"step": arrays["step"], **mine}, specs, self._sizes, what).items():
            if name == "step":
                continue
            array = group[name]
            if array.shape[0] <= index:
                raise ValueError(f"{self._path}: line {index} of {name!r} is not allocated yet (process 0 allocates "
                                 "the lines of a sharded run up front); a store of another run?")
            array[index, ..., value.offset:value.offset + value.values.shape[-1]] = value.values
        self._next[key] = index + 1
        return index

    def flush(self) -> None:
        """Nothing is buffered: every append has written its columns."""

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Attributes are process 0's to write."""

    def close(self, status: str = "complete", reason: str | None = None) -> None:
        """The status is process 0's to set."""

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None
