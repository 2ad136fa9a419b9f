"""Lazy, read-only access to a losslines store (formats 1 and 2).

A store is written line by line while a run is going; a line exists only once the group's
``committed_lines`` attribute covers it. :func:`open_store` takes a snapshot of that number and
every read through the returned :class:`LineStore` is cut to it, so data past the commit mark
(partially written, or preallocated and never written) is never seen. ``refresh()`` takes a
new snapshot for a store that is still being written.

The analysis reads stores only through this module; it imports neither torch nor the engine.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import zarr

from losslines.store.group import infer_layout, member_names, open_group_checked, use_consolidated
from losslines.store.location import Location
from losslines.store.schema import (COMMITTED_ATTR, COORDINATES, DIRECTIONS_GROUP, FORMAT_ATTR, GROWING_DIMS,
                                    READABLE_FORMATS, STATUS_ATTR, STEPS_GROUP, StoreLayout, decode_attrs, encode_attrs)

_SAMPLE_ID_SPLITS = ("train", "val")


class StoreArray:
    """One array of a store, cut to the committed lines.

    Indexing follows numpy basic indexing (ints, slices with any step, ``...``); along the
    ``line`` dimension indices are relative to the committed lines (``a[-1]`` is the last
    committed line) and nothing past them is ever returned.

    Attributes:
        name: array name inside its group.
        dims: dimension names, e.g. ``("line", "point")``.
        dtype: numpy dtype of the values.
        shape: shape with the ``line`` dimension equal to the committed lines.
        chunks: chunk shape on disk.
    """

    def __init__(self, array: zarr.Array, name: str, committed_lines: int) -> None:
        self._array = array
        self.name = name
        self.dims: tuple[str, ...] = tuple(array.metadata.dimension_names or ())
        if len(self.dims) != array.ndim:
            raise ValueError(f"array {name!r} has no dimension names; not a losslines array")
        self.dtype = np.dtype(array.dtype)
        self.chunks: tuple[int, ...] = tuple(array.chunks)
        shape = tuple(array.shape)
        if self.per_line:
            if shape[0] < committed_lines:
                raise ValueError(
                    f"array {name!r} holds {shape[0]} lines but {committed_lines} are committed; "
                    "the store is corrupt"
                )
            shape = (committed_lines,) + shape[1:]
        self.shape: tuple[int, ...] = shape

    @property
    def per_line(self) -> bool:
        """Does the array grow with the run (first dimension ``line``, or ``step`` in ``steps/``)?"""
        return bool(self.dims) and self.dims[0] in GROWING_DIMS

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the committed values in memory (not on disk)."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError(f"len() of 0-d array {self.name!r}")
        return self.shape[0]

    def __repr__(self) -> str:
        dims = ", ".join(f"{d}={n}" for d, n in zip(self.dims, self.shape))
        return f"StoreArray({self.name!r}, {dims}, {self.dtype})"

    def read(self) -> np.ndarray:
        """All committed values as a numpy array."""
        return self[...]

    def __getitem__(self, key: Any) -> np.ndarray:
        parts = _expand_key(key, self.ndim, self.name)
        zarr_key: list[int | slice] = []
        flip: list[int] = []
        out_axis = 0
        for part, n in zip(parts, self.shape):
            if isinstance(part, (int, np.integer)):
                i = int(part)
                if not -n <= i < n:
                    raise IndexError(f"index {i} out of range for {self.name!r} axis of size {n}")
                zarr_key.append(i % n)
                continue
            start, stop, step = part.indices(n)
            idx = range(start, stop, step)
            if len(idx) == 0:
                zarr_key.append(slice(0, 0))
            elif step > 0:
                zarr_key.append(slice(idx[0], idx[-1] + 1, step))
            else:  # read ascending, reverse afterwards (zarr has no negative steps)
                zarr_key.append(slice(idx[-1], idx[0] + 1, -step))
                flip.append(out_axis)
            out_axis += 1
        if any(isinstance(k, slice) and k.start == k.stop for k in zarr_key):
            shape = [len(range(*k.indices(n))) for k, n in zip(zarr_key, self.shape) if isinstance(k, slice)]
            return np.empty(shape, dtype=self.dtype)
        out = np.asarray(self._array[tuple(zarr_key)])
        for axis in flip:
            out = np.flip(out, axis=axis)
        return out


def _expand_key(key: Any, ndim: int, name: str) -> list[int | slice]:
    """Normalise a basic-indexing key to one int or slice per dimension."""
    key = key if isinstance(key, tuple) else (key,)
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    for k in key:
        if k is not Ellipsis and not isinstance(k, (int, np.integer, slice)) or isinstance(k, bool):
            raise TypeError(
                f"unsupported index {k!r} for {name!r}: use ints, slices and '...' "
                "(read() the array first for fancy indexing)"
            )
    n_given = len(key) - n_ellipsis
    if n_given > ndim:
        raise IndexError(f"too many indices for {name!r}: {ndim}-d array, {n_given} indices given")
    if n_ellipsis:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - n_given) + key[at + 1:]
    else:
        key = key + (slice(None),) * (ndim - n_given)
    return list(key)


class LineStore:
    """A losslines store opened read-only (or its ``directions/`` sub-group).

    Attributes:
        path: where the (sub-)group lives (a ``losslines.store.location.Location``: a local
            folder or an fsspec URL; ``str(path)`` is the path or URL).
        attrs: the group attributes at the last snapshot (open or ``refresh()``).
    """

    def __init__(self, path: Location, group: zarr.Group, *, root: LineStore | None = None) -> None:
        self.path = path
        self._group = group
        self._root = root
        self._arrays: dict[str, StoreArray] = {}
        self.attrs: dict[str, Any] = decode_attrs(group.attrs.asdict())
        if COMMITTED_ATTR not in self.attrs:
            raise ValueError(f"{path} has no {COMMITTED_ATTR!r} attribute; the store is corrupt")
        self._committed = int(self.attrs[COMMITTED_ATTR])
        self._names, self._groups = member_names(group)

    # -- snapshot -------------------------------------------------------------------------
    def refresh(self) -> LineStore:
        """Re-read the attributes (``committed_lines``, ``status``) of a store being written."""
        if self._root is not None:
            self._root.refresh()
        self._group = zarr.open_group(store=self.path.zarr_store(read_only=True), mode="r",
                                      use_consolidated=use_consolidated(self.path))
        self.attrs = decode_attrs(self._group.attrs.asdict())
        self._committed = int(self.attrs[COMMITTED_ATTR])
        self._names, self._groups = member_names(self._group)
        self._arrays = {}  # shapes may have grown; reopen arrays after the new snapshot
        return self

    @property
    def committed_lines(self) -> int:
        """Number of complete lines ``[0, committed_lines)`` at the last snapshot."""
        return self._committed

    n_lines = committed_lines

    @property
    def allocated_lines(self) -> int:
        """Lines preallocated on disk (>= committed_lines; informative only, never read past)."""
        return int(self._group["step"].shape[0])

    @property
    def format(self) -> int:
        return int(self._root_attrs[FORMAT_ATTR])

    @property
    def status(self) -> str:
        """``running``, ``complete`` or ``failed`` (of the root group)."""
        return str(self._root_attrs[STATUS_ATTR])

    @property
    def config(self) -> dict[str, Any]:
        """The resolved run config stored at creation (empty when none was given)."""
        return dict(self._root_attrs.get("config") or {})

    @property
    def _root_attrs(self) -> dict[str, Any]:
        return self._root.attrs if self._root is not None else self.attrs

    # -- arrays ---------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Names of the arrays in this group, sorted."""
        return list(self._names)

    def has(self, name: str) -> bool:
        return name in self._names

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has(name)

    def __getitem__(self, name: str) -> StoreArray:
        if name not in self._names:
            raise KeyError(f"store {self.path} has no array {name!r}; present: {', '.join(self._names)}")
        if name not in self._arrays:
            self._arrays[name] = StoreArray(self._group[name], name, self._committed)
        return self._arrays[name]

    def stored_array(self, name: str) -> zarr.Array:
        """The zarr array ``name`` as stored: its whole allocation, rows past the committed lines
        included (for checks of the store itself; read data through ``self[name]``)."""
        if name not in self._names:
            raise KeyError(f"store {self.path} has no array {name!r}")
        return self._group[name]  # type: ignore[return-value]

    @property
    def position(self) -> np.ndarray:
        """Grid of step sizes s, ``[K]`` float64, distance along the unit update direction."""
        if self._root is not None:
            return self._root.position
        return self["position"].read()

    @property
    def layout(self) -> StoreLayout:
        """The layout the store was created with (see :func:`infer_layout`)."""
        if self._root is not None:
            return self._root.layout
        return infer_layout(self._group)

    def sample_ids(self, split: str) -> np.ndarray:
        """Stable dataset ids ``[N_split]`` int64 of ``"train"`` or ``"val"`` (empty if absent)."""
        if split not in _SAMPLE_ID_SPLITS:
            raise ValueError(
                f"unknown split {split!r}; valid: {_SAMPLE_ID_SPLITS} (direction-batch ids are "
                "per line, in 'batch_ids')"
            )
        source = self._root if self._root is not None else self
        name = f"sample_ids_{split}"
        if not source.has(name):
            return np.empty(0, dtype=np.int64)
        return source[name].read()

    @property
    def directions(self) -> LineStore | None:
        """The ``directions/`` sub-group (its own ``committed_lines``), or None."""
        if self._root is not None or DIRECTIONS_GROUP not in self._groups:
            return None
        return LineStore(self.path / DIRECTIONS_GROUP, self._group[DIRECTIONS_GROUP], root=self)

    @property
    def steps(self) -> LineStore | None:
        """The ``steps/`` sub-group of the per-step mode (its own ``committed_lines``: steps), or None."""
        if self._root is not None or STEPS_GROUP not in self._groups:
            return None
        return LineStore(self.path / STEPS_GROUP, self._group[STEPS_GROUP], root=self)

    def iter_blocks(self, name: str, lines_per_block: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, values[start:start + b])`` over the committed lines of ``name``.

        ``b`` defaults to the chunk size along ``line``, so memory stays at one chunk row.
        """
        array = self[name]
        if not array.per_line:
            raise ValueError(f"array {name!r} has dims {array.dims}; iter_blocks needs a per-line array")
        block = lines_per_block if lines_per_block is not None else array.chunks[0]
        if block < 1:
            raise ValueError(f"lines_per_block must be >= 1, got {block}")
        for start in range(0, array.shape[0], block):
            yield start, array[start:start + block]

    def nbytes_stored(self) -> int:
        """Bytes the (sub-)group occupies in storage, metadata included."""
        return self.path.size()

    def to_xarray(self) -> Any:
        """An xarray Dataset of lazy dask arrays, cut to the committed lines.

        Dimensions come from the stored dimension names; ``position`` is the coordinate of
        ``point``, ``step`` and ``epoch`` of the lines, ``sample_ids_*`` of the sample dimensions
        (as plain ``xarray.open_zarr`` shows a format 2 store); attributes are netCDF-safe (objects
        as JSON text, listed in ``json_attrs``), so ``to_netcdf`` works. Requires xarray and dask.
        """
        try:
            import dask.array as da
            import xarray as xr
        except ImportError as err:  # pragma: no cover - both are installed in the dev env
            raise ImportError(f"to_xarray() needs xarray and dask ({err}); pip install xarray dask") from err
        data_vars, coords = {}, {}
        for name in self._names:
            array = self[name]
            token = f"losslines-{self.path}-{name}-{self._committed}"
            lazy = da.from_array(array, chunks=array.chunks, name=token, asarray=True)
            attrs = {k: v for k, v in self._group[name].attrs.asdict().items() if k in ("description",)}
            (coords if name in COORDINATES else data_vars)[name] = xr.Variable(array.dims, lazy, attrs=attrs)
        if self._root is not None:  # a sub-group: the root's grid and sample ids apply
            coords["position"] = xr.Variable(("point",), self.position)
            for split in _SAMPLE_ID_SPLITS:
                ids = self.sample_ids(split)
                if ids.size:
                    coords[f"sample_ids_{split}"] = xr.Variable((f"sample_{split}",), ids)
        return xr.Dataset(data_vars, coords=coords, attrs=encode_attrs(self.attrs, set()))

    def __repr__(self) -> str:
        return f"LineStore({str(self.path)!r}, status={self.status!r}, committed_lines={self._committed})"


def _open(path: Location, group: zarr.Group) -> LineStore:
    return LineStore(path, group)


# format number -> reader. Formats 1 and 2 differ in names (the line dimension of directions/,
# sample_slope0_*), codecs and attribute encoding, all of which LineStore reads by name.
_READERS: dict[int, Callable[[Location, zarr.Group], LineStore]] = {v: _open for v in READABLE_FORMATS}


def open_store(path: str | os.PathLike[str] | Location, *, storage_options: Mapping[str, Any] | None = None) -> LineStore:
    """Open a losslines store lazily and read-only.

    Args:
        path: a local folder, a ``file://`` or fsspec URL (``s3://``, ``gs://``, ``memory://``...).
        storage_options: fsspec options of a URL (credentials, endpoints).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: not a losslines store, or a format this version cannot read.
    """
    path, group, fmt = open_group_checked(path, storage_options=storage_options)
    if fmt not in _READERS:
        raise ValueError(
            f"{path} has losslines_format={fmt}; this losslines reads format(s) "
            f"{sorted(_READERS)}; upgrade losslines to read it"
        )
    return _READERS[fmt](path, group)
