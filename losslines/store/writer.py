"""Streaming writer of losslines stores (format 2).

The measuring thread calls :meth:`StoreWriter.append` once per line; a background thread
writes. Validation and copying happen in the caller's thread, so a bad record fails at the
call that made it and the caller may reuse its buffers. The queue between the two threads is
bounded (``append`` blocks when ``max_queued_lines`` lines wait), so memory never grows with
the run length.

Commit protocol (docs/store-format.md, "Commit protocol"): per-sample arrays are written as each
line arrives (their chunks hold one line); the small per-line arrays are buffered and written
every ``commit_every`` lines (default: every line, rewriting the line-chunk being filled) and
at each line-chunk boundary; only after the data is stored does the group attribute
``committed_lines`` advance. ``flush()`` writes and commits what is buffered (before a
checkpoint). A crash leaves at most the lines since the last commit past ``committed_lines``;
readers ignore them and :meth:`StoreWriter.resume` overwrites them. Closing a complete store
trims every per-line array to its committed lines and consolidates the metadata (one read opens
it); a running or failed store keeps its allocation, its unwritten rows hold the fill value. zarr's ``LocalStore`` replaces every file
(metadata included) by an atomic rename, so a concurrent reader sees the old or the new
attributes, never a torn file.

The caller's waits on the writer are timed (``store.stall``): :attr:`StoreWriter.stall`, and
the ``writer_stall`` attribute written at close.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Mapping

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from losslines.records import DirectionsRecord, LineRecord, StepRecord
from losslines.store.group import infer_layout, member_names, open_group_checked
from losslines.store.location import Location, location
from losslines.store.stall import StallClock, WriterStall
from losslines.store.schema import (
    COMMITTED_ATTR,
    DIRECTIONS_GROUP,
    GROWING_DIMS,
    STEPS_GROUP,
    SampleSlice,
    FORMAT_ATTR,
    FORMAT_VERSION,
    STATUS_ATTR,
    STATUSES,
    ArraySpec,
    StoreLayout,
    coordinates_attr,
    directions_arrays,
    encode_attrs,
    json_keys,
    line_specs,
    record_arrays,
    static_specs,
    step_arrays,
    step_specs,
)
from losslines.store.validate import check_arrays, check_json, check_sample_ids, validate_record

ROOT = ""
_POLL_S = 0.1


class WriterError(RuntimeError):
    """The background writer thread failed; the cause is chained as ``__cause__``."""


def _caller_side(method):
    """Count a caller-side method's wall time in the writer's ``StallClock``."""

    @functools.wraps(method)
    def timed(self, *args, **kwargs):
        with self._clock.caller():
            return method(self, *args, **kwargs)

    return timed


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _codecs(spec: ArraySpec) -> tuple[BloscCodec, Crc32cCodec]:
    """Blosc-zstd, then a CRC-32C checksum of every chunk (a corrupt chunk fails to read)."""
    shuffle = "bitshuffle" if spec.name.startswith("sample_loss_") else "shuffle"
    return BloscCodec(cname="zstd", clevel=3, shuffle=shuffle), Crc32cCodec()


@dataclass
class _GroupState:
    """Writer-thread state of one group (root, ``directions/`` or ``steps/``)."""

    group: zarr.Group
    specs: dict[str, ArraySpec]
    arrays: dict[str, zarr.Array]
    line_chunk: int
    committed: int
    allocated: int
    buffer_start: int = 0
    buffer: list[dict[str, np.ndarray]] = field(default_factory=list)
    written: int = 0  # buffered lines already written by a flush

    def __post_init__(self) -> None:
        self.buffer_start = self.committed

    @property
    def sample_names(self) -> list[str]:
        return [n for n, spec in self.specs.items() if spec.per_sample]

    @property
    def small_names(self) -> list[str]:
        return [n for n, spec in self.specs.items() if not spec.per_sample]


class StoreWriter:
    """Append lines to a store from a background thread; see the module docstring.

    Use :meth:`create` or :meth:`resume`, then ``append`` / ``append_directions`` per line and
    ``close()`` (or a ``with`` block: an exception marks the store ``failed`` and keeps the
    lines appended so far).
    """

    def __init__(self, path: Location, root: zarr.Group, layout: StoreLayout, *, max_queued_lines: int,
                 commit_every: int = 1) -> None:
        if max_queued_lines < 1:
            raise ValueError(f"max_queued_lines must be >= 1, got {max_queued_lines}")
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1 (lines per commit), got {commit_every}")
        self._commit_every = commit_every
        self._json_keys = json_keys(root.attrs.asdict())
        self._path = path
        self._root = root
        self._layout = layout
        self._sizes = layout.dim_sizes()
        self._states: dict[str, _GroupState] = {ROOT: self._state(root, line_specs(layout))}
        if layout.n_directions > 0:
            self._states[DIRECTIONS_GROUP] = self._state(
                root[DIRECTIONS_GROUP], line_specs(layout, directions=True))  # type: ignore[arg-type]
        if layout.per_step:
            self._states[STEPS_GROUP] = self._state(root[STEPS_GROUP], step_specs(layout),  # type: ignore[arg-type]
                                                    chunk=layout.step_chunk)
        self._next = {key: st.committed for key, st in self._states.items()}
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=max_queued_lines)
        self._error: BaseException | None = None
        self._closed = False
        self._order = threading.Lock()  # several producer threads: line indices follow queue order
        self._clock = StallClock()
        self._thread = threading.Thread(target=self._run, name=f"losslines-writer:{path.name}", daemon=True)
        self._thread.start()

    def _state(self, group: zarr.Group, specs: list[ArraySpec], chunk: int | None = None) -> _GroupState:
        arrays = {s.name: group[s.name] for s in specs}
        return _GroupState(group=group, specs={s.name: s for s in specs}, arrays=arrays,  # type: ignore[misc]
                           line_chunk=chunk or self._layout.line_chunk,
                           committed=int(group.attrs[COMMITTED_ATTR]),  # type: ignore[arg-type]
                           # a crash mid-resize can leave arrays of different lengths
                           allocated=min(int(a.shape[0]) for a in arrays.values()))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str] | Location, layout: StoreLayout, *, positions: np.ndarray,
               sample_ids: Mapping[str, np.ndarray], attrs: Mapping[str, Any], capacity: int | None = None,
               overwrite: bool = False, max_queued_lines: int = 16,
               storage_options: Mapping[str, Any] | None = None,
               directions_capacity: int | None = None, commit_every: int = 1) -> StoreWriter:
        """Create a new store and return a writer positioned at line 0.

        Args:
            path: the new zarr v3 group: a local folder, or an fsspec URL (``s3://``, ``memory://``...).
            layout: sizes of every dimension but ``line``.
            positions: ``[K]`` float64 grid, distance along the unit update direction.
            sample_ids: ``{"train": [N], "val": [N_val]}`` int64 stable dataset ids.
            attrs: JSON-serialisable root attributes (config, semantics, grid, versions, ...).
            capacity: lines to preallocate (default: one line-chunk); arrays grow as needed.
            overwrite: replace an existing store at ``path``.
            max_queued_lines: lines that may wait for the writer thread before ``append`` blocks.
            storage_options: fsspec options of a URL (credentials, endpoints).
            directions_capacity: lines of ``directions/`` to preallocate (default: one line-chunk).
            commit_every: lines per commit (1: every line becomes visible to readers, and
                survives a crash, as soon as it is written; larger values write the small
                arrays less often).

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false.
            ValueError: inconsistent positions, sample ids or attributes.
        """
        path = location(path, storage_options)
        check_json(attrs, "attrs")
        positions = np.asarray(positions)
        if positions.shape != (layout.n_points,) or not np.issubdtype(positions.dtype, np.floating):
            raise ValueError(f"positions must be a float array of shape ({layout.n_points},), "
                             f"got {positions.dtype} {positions.shape}")
        if not np.all(np.isfinite(positions)):
            raise ValueError("positions must be finite (the grid is allocated at its widest)")
        ids = check_sample_ids(sample_ids, layout)
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        _clear_target(path, overwrite)

        root = create_layout(path, layout, positions=positions, sample_ids=ids,
                             lines=layout.line_chunk if capacity is None else max(capacity, 1),
                             direction_lines=max(layout.line_chunk, directions_capacity or 0))
        # the format attribute comes last: a half-created folder is not a losslines store
        root.update_attributes(encode_attrs({**dict(attrs), STATUS_ATTR: "running", COMMITTED_ATTR: 0,
                                             "created": _now(), FORMAT_ATTR: FORMAT_VERSION}, set()))
        return cls(path, root, layout, max_queued_lines=max_queued_lines, commit_every=commit_every)

    @classmethod
    def resume(cls, path: str | os.PathLike[str] | Location, *, at_line: int | None = None,
               at_direction_line: int | None = None, at_step: int | None = None,
               max_queued_lines: int = 16, storage_options: Mapping[str, Any] | None = None,
               commit_every: int = 1) -> StoreWriter:
        """Reopen a ``running`` or ``failed`` store and continue appending.

        Args:
            path: the store.
            at_line: roll the root group back to this many committed lines (a training
                checkpoint taken at ``at_line`` lines; the lines after it are measured again
                and overwrite the old ones). Default: continue at ``committed_lines``.
            at_direction_line: the same for the ``directions/`` group.
            at_step: the same for the ``steps/`` group (the per-step mode).
            max_queued_lines, commit_every: as in :meth:`create`.

        Raises:
            FileNotFoundError / ValueError: not a losslines store, another format version, a
                complete store, arrays that do not match the format, or ``at_line`` beyond
                the committed lines.
        """
        path, root, fmt = open_group_checked(path, mode="r+", storage_options=storage_options)
        if fmt != FORMAT_VERSION:
            hint = f"; convert it first: losslines upgrade {path}" if fmt < FORMAT_VERSION else ""
            raise ValueError(f"{path} has losslines_format={fmt}; this writer resumes only format {FORMAT_VERSION}{hint}")
        status = root.attrs.get(STATUS_ATTR)
        if status not in ("running", "failed"):
            raise ValueError(f"{path} has status {status!r}; only 'running' or 'failed' stores can be resumed")
        layout = infer_layout(root)
        check_arrays(root, line_specs(layout), layout, path)
        groups: list[tuple[zarr.Group, int | None, str]] = [(root, at_line, "at_line")]
        if layout.n_directions > 0:
            sub = root[DIRECTIONS_GROUP]
            check_arrays(sub, line_specs(layout, directions=True), layout, path / DIRECTIONS_GROUP)  # type: ignore[arg-type]
            groups.append((sub, at_direction_line, "at_direction_line"))  # type: ignore[arg-type]
        elif at_direction_line not in (None, 0):
            raise ValueError(f"at_direction_line={at_direction_line} but {path} has no directions/ group")
        if layout.per_step:
            sub = root[STEPS_GROUP]
            check_arrays(sub, step_specs(layout), layout, path / STEPS_GROUP)  # type: ignore[arg-type]
            groups.append((sub, at_step, "at_step"))  # type: ignore[arg-type]
        elif at_step not in (None, 0):
            raise ValueError(f"at_step={at_step} but {path} has no steps/ group")
        _remove_partial_files(path)
        for group, at, what in groups:  # check all before changing anything
            committed = int(group.attrs[COMMITTED_ATTR])  # type: ignore[arg-type]
            if at is not None and not 0 <= at <= committed:
                raise ValueError(f"{what}={at} is outside [0, {committed}] (the committed lines of {path})")
        for group, at, _ in groups:
            if at is not None:
                group.update_attributes({COMMITTED_ATTR: int(at)})
                _clear_after(group, at)  # rows past the rollback point read as unwritten again
        root.update_attributes(encode_attrs({STATUS_ATTR: "running", "status_reason": None, "finished": None},
                                            json_keys(root.attrs.asdict())))
        return cls(path, root, layout, max_queued_lines=max_queued_lines, commit_every=commit_every)

    # -- properties -----------------------------------------------------------------------
    @property
    def path(self) -> Location:
        """Where the store lives (``str(path)``: its local path or URL)."""
        return self._path

    @property
    def layout(self) -> StoreLayout:
        return self._layout

    @property
    def committed_lines(self) -> int:
        """Lines of the root group on disk and committed (lags ``append`` until a flush)."""
        return self._states[ROOT].committed

    @property
    def pending_lines(self) -> int:
        """Lines of the root group appended but not yet committed."""
        return self._next[ROOT] - self._states[ROOT].committed

    @property
    def committed_steps(self) -> int:
        """Committed entries of the ``steps/`` group (0 without one)."""
        st = self._states.get(STEPS_GROUP)
        return st.committed if st is not None else 0

    @property
    def committed_direction_lines(self) -> int:
        """Committed lines of the ``directions/`` group (0 without one)."""
        st = self._states.get(DIRECTIONS_GROUP)
        return st.committed if st is not None else 0

    @property
    def stall(self) -> WriterStall:
        """How long the caller has waited on this writer so far (``store.stall``)."""
        return self._clock.read()

    # -- caller side ----------------------------------------------------------------------
    @_caller_side
    def append(self, record: LineRecord | Mapping[str, Any]) -> int:
        """Queue one line of the root group; return its line index.

        Args:
            record: a ``losslines.records.LineRecord`` (what a sampler emits; mapped to arrays by
                ``schema.record_arrays``), or the arrays themselves: per-line array name ->
                value without the ``line`` dimension (``step`` is required; e.g. ``loss_train``
                [K], ``sample_loss_train`` [K, N], ``batch_ids`` [B]). Missing arrays are stored
                as their fill value (NaN: not measured).
        """
        if isinstance(record, LineRecord):
            record = record_arrays(record, self._layout)
        return self._enqueue(ROOT, record, "append")

    @_caller_side
    def append_directions(self, record: DirectionsRecord | Mapping[str, Any]) -> int:
        """Queue one line of ``directions/``: a ``DirectionsRecord`` (M lines from one θ_t), or
        its arrays with a leading ``direction`` dim [M, ...] (``step``, ``epoch``, ``lr`` scalar)."""
        if DIRECTIONS_GROUP not in self._states:
            raise ValueError("this store has no directions/ group; create it with layout.n_directions > 0")
        if isinstance(record, DirectionsRecord):
            record = directions_arrays(record, self._layout)
        return self._enqueue(DIRECTIONS_GROUP, record, "append_directions")

    @_caller_side
    def append_step(self, record: StepRecord | Mapping[str, Any]) -> int:
        """Queue one entry of ``steps/`` (the per-step mode): a ``StepRecord`` or its arrays."""
        if STEPS_GROUP not in self._states:
            raise ValueError("this store has no steps/ group; create it with layout.per_step = True")
        if isinstance(record, StepRecord):
            record = step_arrays(record, self._layout)
        return self._enqueue(STEPS_GROUP, record, "append_step")

    @_caller_side
    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Merge JSON-serialisable attributes into the root group (written in order with lines)."""
        self._check_usable()
        check_json(attrs, "update_attrs")
        self._put(("attrs", dict(attrs)))

    @_caller_side
    def flush(self) -> None:
        """Block until every queued line is written and committed (may write a partial chunk)."""
        self._check_usable()
        with self._clock.part("flush_wait_s"):
            done = threading.Event()
            self._put(("flush", done))
            while not done.wait(_POLL_S):
                if not self._thread.is_alive():  # pragma: no cover - the thread never exits before stop
                    raise WriterError("the store writer thread died")
        self._raise_if_failed()

    def close(self, status: str = "complete", reason: str | None = None) -> None:
        """Flush, stop the thread and set the store's status; a second call does nothing.

        Args:
            status: ``"complete"`` or ``"failed"``.
            reason: why, stored as the ``status_reason`` attribute (e.g. how to continue).

        Raises:
            WriterError: the background thread had failed (the status is then ``failed``).
        """
        if status not in STATUSES or status == "running":
            raise ValueError(f"close(status=...) must be 'complete' or 'failed', got {status!r}")
        if self._closed:
            return
        failure: BaseException | None = None
        try:
            self.flush()
        except BaseException as err:
            failure = err
        self._put(("stop",), check=False)
        self._thread.join()
        self._closed = True
        self._clock.stop()
        final = {STATUS_ATTR: status if failure is None else "failed", "finished": _now(),
                 "writer_stall": self.stall.as_attrs()}
        if failure is not None:
            reason = f"background writer failed: {failure.__cause__ or failure!r}"
        if final[STATUS_ATTR] == "complete":  # final: exactly the committed lines
            for st in self._states.values():
                _trim(st)
        self._set_root_attrs({**final, "status_reason": reason})
        if final[STATUS_ATTR] == "complete":
            consolidate(self._path)
        if failure is not None:
            raise failure

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close("complete")
            return
        try:
            self.close("failed", reason=f"{type(exc).__name__}: {exc}")
        except BaseException as err:  # keep the original exception, note the second one
            exc.add_note(f"while closing the store {self._path} after this error: {err!r}")

    def _enqueue(self, key: str, record: Mapping[str, Any], what: str) -> int:
        self._check_usable()
        arrays = validate_record(record, self._states[key].specs, self._sizes, what)
        with self._order:
            index = self._next[key]
            self._put(("line", key, index, arrays))
            self._next[key] = index + 1
        self._clock.count_line()
        return index

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"the writer of {self._path} is closed; use StoreWriter.resume() to continue")
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriterError(
                f"the background writer of {self._path} failed ({self._error!r}); lines "
                f"[0, {self.committed_lines}) are committed and kept"
            ) from self._error

    def _put(self, item: tuple[Any, ...], check: bool = True) -> None:
        if item[0] == "flush":  # its wait is counted whole in flush_wait_s
            self._put_now(item, check)
            return
        with self._clock.part("queue_wait_s"):
            self._put_now(item, check)

    def _put_now(self, item: tuple[Any, ...], check: bool) -> None:
        while True:  # blocks while the queue is full, but notices a failed writer
            if check:
                self._raise_if_failed()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if not self._thread.is_alive():  # pragma: no cover - defensive
                    raise WriterError(f"the writer thread of {self._path} is gone") from self._error

    # -- writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            kind = item[0]
            try:
                if self._error is None:  # after a failure: drain, write nothing
                    with self._clock.part("write_s"):
                        self._handle(item)
            except BaseException as err:
                self._error = err
            finally:
                if kind == "flush":
                    item[1].set()
            if kind == "stop":
                return

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "line":
            self._write_line(self._states[item[1]], item[2], item[3])
        elif kind == "flush":
            for st in self._states.values():
                self._write_buffer(st)
        elif kind == "attrs":
            self._set_root_attrs(item[1])

    def _write_line(self, st: _GroupState, index: int, record: dict[str, np.ndarray]) -> None:
        if index != st.buffer_start + len(st.buffer):
            raise RuntimeError(f"line {index} out of order (expected {st.buffer_start + len(st.buffer)})")
        self._require_folder()
        self._ensure_capacity(st, index + 1)
        for name in st.sample_names:
            value = record.get(name)
            if isinstance(value, SampleSlice):  # this process's shard of the samples
                st.arrays[name][index, ..., value.offset:value.offset + value.values.shape[-1]] = value.values
            else:
                st.arrays[name][index] = value if value is not None else self._fill(st.specs[name])
        st.buffer.append({n: record[n] for n in st.small_names if n in record})
        if (index + 1) % st.line_chunk == 0:
            self._write_buffer(st)
            st.buffer_start, st.buffer, st.written = index + 1, [], 0
        elif len(st.buffer) - st.written >= self._commit_every:
            self._write_buffer(st)  # rewrites the chunk being filled, committed rows unchanged

    def _write_buffer(self, st: _GroupState) -> None:
        """Write the buffered small arrays, then advance ``committed_lines`` (last)."""
        n = len(st.buffer)
        if n == st.written:
            return
        self._require_folder()
        for name in st.small_names:
            spec = st.specs[name]
            block = np.stack([rec[name] if name in rec else self._fill(spec) for rec in st.buffer])
            st.arrays[name][st.buffer_start:st.buffer_start + n] = block
        st.group.update_attributes({COMMITTED_ATTR: st.buffer_start + n})
        st.committed = st.buffer_start + n
        st.written = n

    def _ensure_capacity(self, st: _GroupState, needed: int) -> None:
        if needed <= st.allocated:
            return
        grown = max(needed, 2 * st.allocated)
        grown = -(-grown // st.line_chunk) * st.line_chunk
        for array in st.arrays.values():
            if array.shape[0] < grown:
                array.resize((grown,) + tuple(array.shape[1:]))
        st.allocated = grown

    def _set_root_attrs(self, attrs: Mapping[str, Any]) -> None:
        self._require_folder()
        self._root.update_attributes(encode_attrs(attrs, self._json_keys))

    def _require_folder(self) -> None:
        """Refuse to write on when a local store's folder vanished: zarr would silently recreate the
        folders of each key it writes, leaving a headless store."""
        if self._path.is_local and not (self._path.path / "zarr.json").is_file():
            raise FileNotFoundError(f"the store folder {self._path} vanished while it was written (deleted or "
                                    "unmounted?); nothing more is written to it")

    def _fill(self, spec: ArraySpec) -> np.ndarray:
        return np.full(tuple(self._sizes[d] for d in spec.dims[1:]), spec.fill_value, dtype=spec.dtype)


def _clear_target(path: Location, overwrite: bool) -> None:
    if not path.exists():
        return
    if not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or use "
            f"StoreWriter.resume({str(path)!r}) to continue it"
        )
    if path.is_zarr_group() or path.is_empty_folder():
        path.remove()
        return
    raise FileExistsError(f"refusing to overwrite {path}: it is not a zarr store; remove it yourself")


def create_layout(path: Location, layout: StoreLayout, *, positions: np.ndarray, sample_ids: Mapping[str, np.ndarray],
                  lines: int, direction_lines: int) -> zarr.Group:
    """Create the group and every array of ``layout`` at ``path`` (no root attributes yet: the
    caller adds them, the format number last), with ``lines`` / ``direction_lines`` allocated."""
    root = zarr.open_group(store=path.zarr_store(), mode="w-")
    _create_arrays(root, static_specs(layout), layout, lines, static_specs(layout) + line_specs(layout))
    root["position"][:] = np.asarray(positions, dtype=np.float64)
    for split, values in sample_ids.items():
        root[f"sample_ids_{split}"][:] = values
    _create_arrays(root, line_specs(layout), layout, lines, static_specs(layout) + line_specs(layout))
    if layout.n_directions > 0:
        sub = root.create_group(DIRECTIONS_GROUP, attributes={COMMITTED_ATTR: 0})
        specs = line_specs(layout, directions=True)
        _create_arrays(sub, specs, layout, direction_lines, specs)
    if layout.per_step:
        sub = root.create_group(STEPS_GROUP, attributes={COMMITTED_ATTR: 0})
        _create_arrays(sub, step_specs(layout), layout, layout.step_chunk, step_specs(layout))
    return root


def _create_arrays(group: zarr.Group, specs: list[ArraySpec], layout: StoreLayout, n_lines: int,
                   group_specs: list[ArraySpec]) -> None:
    sizes = layout.dim_sizes()
    for spec in specs:
        shape = tuple(n_lines if d in GROWING_DIMS else sizes[d] for d in spec.dims)
        attrs: dict[str, Any] = {"description": spec.doc}
        coords = coordinates_attr(spec, group_specs)
        if coords:
            attrs["coordinates"] = coords
        if spec.per_line and spec.dtype.kind == "i":
            attrs["_FillValue"] = int(spec.fill_value)  # while rows past the committed ones exist
        group.create_array(spec.name, shape=shape, chunks=layout.chunks(spec), dtype=spec.dtype,
                           fill_value=spec.fill_value, compressors=_codecs(spec),
                           dimension_names=spec.dims, attributes=attrs)


def _trim(st: _GroupState) -> None:
    """Cut every per-line array of a closed group to its committed lines."""
    for array in st.arrays.values():
        if array.shape[0] != st.committed:
            array.resize((st.committed,) + tuple(array.shape[1:]))
    st.allocated = st.committed
    drop_fill_marks(st.group)


def drop_fill_marks(group: zarr.Group) -> None:
    """Remove the integer arrays' ``_FillValue`` attribute from a group trimmed to its committed
    lines: xarray masks the fill value with it (unwritten rows read as NaN), and a trimmed array
    has no unwritten rows, so its integers stay integers."""
    for name in member_names(group)[0]:
        array = group[name]
        if "_FillValue" in array.attrs:
            array.attrs.put({k: v for k, v in array.attrs.asdict().items() if k != "_FillValue"})


def _remove_partial_files(path: Location) -> None:
    """Delete the temporary files of writes a killed writer left (``*.partial``: a local store
    writes each key to one and renames it into place); the resuming writer is the only writer."""
    if path.is_local:
        for leftover in path.path.rglob("*.partial"):
            leftover.unlink(missing_ok=True)


def _clear_after(group: zarr.Group, start: int) -> None:
    """Make the rows ``[start, ...)`` of every per-line array of ``group`` read as the fill value
    again (after a rollback): chunks wholly past ``start`` are deleted, the chunk holding row
    ``start`` gets the fill value written over its later rows."""
    for name in member_names(group)[0]:
        array = group[name]
        dims = tuple(array.metadata.dimension_names or ())  # type: ignore[union-attr]
        n = int(array.shape[0]) if dims and dims[0] in GROWING_DIMS else 0
        if n <= start:
            continue
        chunk_end = min(n, -(-start // array.chunks[0]) * array.chunks[0])
        if chunk_end > start:
            array[start:chunk_end] = array.metadata.fill_value  # type: ignore[union-attr]
        array.resize((start,) + tuple(array.shape[1:]))
        array.resize((n,) + tuple(array.shape[1:]))


def consolidate(path: Location) -> None:
    """Write the metadata of every array and sub-group into the root ``zarr.json``, so that a
    reader (a remote one above all) opens the store in one request; only for stores that no
    longer change (zarr calls consolidated metadata an extension of format 3, hence the warning
    it gives, silenced here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(path.zarr_store())
