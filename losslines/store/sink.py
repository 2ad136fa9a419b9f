"""``StoreSink``: a sampler's records into a store that is created (or reopened) when the
sampler opens it.

A ``LineSampler`` given ``sink=StoreSink.create(path, ...)`` validates its own settings first
and then calls ``sink.open(sampler.shape)``: only then is the store created, with the layout
derived from the sampler's ``LineShape`` (``StoreLayout.from_shape``) and the grid as
``position``. A setting the sampler refuses therefore leaves nothing on disk, and the layout of
the store is by construction that of the records. ``StoreSink.resume(path, ...)`` reopens a
stopped store instead, after checking that the sampler's shape is the store's.

After ``open``, :attr:`StoreSink.writer` is the :class:`~losslines.store.writer.StoreWriter`
(flush, close, attributes, committed lines).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from losslines.records import DirectionsRecord, LineRecord, LineShape, StepRecord
from losslines.store.group import infer_layout, open_group_checked
from losslines.store.location import Location, location
from losslines.store.schema import SampleDtype, StoreLayout
from losslines.store.writer import StoreWriter


class StoreSink:
    """A ``losslines.records.LineSink`` backed by a store (see the module docstring).

    Build it with :meth:`create` or :meth:`resume`; the sampler calls :meth:`open` and then
    :meth:`append` per line.
    """

    def __init__(self, path: str | os.PathLike[str] | Location, *, create: dict[str, Any] | None,
                 resume: dict[str, Any] | None, max_queued_lines: int,
                 storage_options: Mapping[str, Any] | None = None, commit_every: int = 1) -> None:
        self.path = location(path, storage_options)
        self._create, self._resume = create, resume
        self._max_queued_lines = max_queued_lines
        self._commit_every = commit_every
        self._writer: StoreWriter | None = None

    @classmethod
    def create(cls, path: str | os.PathLike[str] | Location, *, sample_ids: Mapping[str, np.ndarray],
               attrs: Mapping[str, Any], sample_dtype: SampleDtype = "float16", n_directions: int = 0,
               line_chunk: int = 64, sample_block: int = 4096, capacity: int | None = None,
               overwrite: bool = False, max_queued_lines: int = 16,
               storage_options: Mapping[str, Any] | None = None,
               directions_capacity: int | None = None, commit_every: int = 1) -> "StoreSink":
        """A sink that creates a new store at ``path`` when opened.

        Args:
            path: the new store.
            sample_ids: ``{"train": [N], "val": [N_val]}`` stable dataset ids of the measured sets.
            attrs: JSON-serialisable root attributes (config, semantics, versions, ...).
            sample_dtype, line_chunk, sample_block, n_directions: see ``StoreLayout``.
            capacity, directions_capacity: lines to preallocate (root, ``directions/``);
                overwrite, max_queued_lines, commit_every: see ``StoreWriter.create``.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false (checked here, before any
                measurement is set up).
        """
        where = location(path, storage_options)
        if not overwrite and where.exists():
            raise FileExistsError(f"store {where} already exists; resume it or choose another path")
        return cls(where, create=dict(sample_ids=sample_ids, attrs=attrs, sample_dtype=sample_dtype,
                                      n_directions=n_directions, line_chunk=line_chunk, sample_block=sample_block,
                                      capacity=capacity, overwrite=overwrite,
                                      directions_capacity=directions_capacity),
                   resume=None, max_queued_lines=max_queued_lines, commit_every=commit_every)

    @classmethod
    def resume(cls, path: str | os.PathLike[str] | Location, *, at_line: int | None = None,
               at_direction_line: int | None = None, at_step: int | None = None,
               max_queued_lines: int = 16, storage_options: Mapping[str, Any] | None = None,
               commit_every: int = 1) -> "StoreSink":
        """A sink that reopens the stopped store at ``path`` when opened (see
        ``StoreWriter.resume`` for ``at_line`` / ``at_direction_line`` / ``at_step``)."""
        return cls(path, create=None, resume=dict(at_line=at_line, at_direction_line=at_direction_line,
                                                  at_step=at_step), max_queued_lines=max_queued_lines,
                   storage_options=storage_options, commit_every=commit_every)

    @property
    def writer(self) -> StoreWriter:
        """The store's writer (after :meth:`open`).

        Raises:
            RuntimeError: the sink has not been opened yet.
        """
        if self._writer is None:
            raise RuntimeError(f"the store sink for {self.path} is not open yet (a sampler opens it)")
        return self._writer

    def open(self, shape: LineShape) -> None:
        """Create or reopen the store for records of ``shape``.

        Raises:
            RuntimeError: opened twice.
            ValueError: (resume) the store was written with another shape.
        """
        if self._writer is not None:
            raise RuntimeError(f"the store sink for {self.path} is already open")
        if self._create is not None:
            c = dict(self._create)
            layout = StoreLayout.from_shape(shape, sample_dtype=c.pop("sample_dtype"), n_directions=c.pop("n_directions"),
                                            line_chunk=c.pop("line_chunk"), sample_block=c.pop("sample_block"))
            self._writer = StoreWriter.create(self.path, layout, positions=shape.positions,
                                              max_queued_lines=self._max_queued_lines,
                                              commit_every=self._commit_every, **c)
            return
        self._check_resumable(shape)
        self._writer = StoreWriter.resume(self.path, max_queued_lines=self._max_queued_lines,
                                          commit_every=self._commit_every, **self._resume)

    def _check_resumable(self, shape: LineShape) -> None:
        """Refuse, before anything changes on disk, a store whose records have another shape."""
        path, group, _ = open_group_checked(self.path)
        stored = infer_layout(group)
        expected = StoreLayout.from_shape(shape, sample_dtype=stored.sample_dtype, n_directions=stored.n_directions,
                                          line_chunk=stored.line_chunk, sample_block=stored.sample_block,
                                          step_chunk=stored.step_chunk)
        if expected != stored or not np.array_equal(np.asarray(group["position"][:]), shape.positions):
            raise ValueError(f"{path} was written with another measurement shape (store {stored}, sampler "
                             f"{expected}); resume with the config it was created with, or start a new store")

    def append(self, record: LineRecord) -> int:
        """Queue one line (see ``StoreWriter.append``); returns its line index."""
        return self.writer.append(record)

    def append_step(self, record: StepRecord) -> int:
        """Queue one ``steps/`` entry (see ``StoreWriter.append_step``)."""
        return self.writer.append_step(record)

    def append_directions(self, record: DirectionsRecord) -> int:
        """Queue one ``directions/`` line (see ``StoreWriter.append_directions``)."""
        return self.writer.append_directions(record)
