"""The analysis's only door to a store: a thin adapter over :mod:`losslines.store.reader`.

Everything the analysis reads goes through :class:`LineSource`, which snapshots the committed
lines at open (a store still being written is read up to its commit mark and no further),
selects the analysed line range and hands out blocks of rows, never a whole per-sample array.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from losslines.store.reader import LineStore, open_store


@dataclass(frozen=True)
class LineRange:
    """The analysed lines: committed line indices ``range(start, stop, step)``."""

    start: int
    stop: int
    step: int = 1

    @property
    def indices(self) -> np.ndarray:
        return np.arange(self.start, self.stop, self.step)

    def __len__(self) -> int:
        return len(range(self.start, self.stop, self.step))


def parse_lines(spec: str | slice | None, n_committed: int) -> LineRange:
    """Resolve a line selection against the committed lines.

    Args:
        spec: None (all), a ``slice``, or text ``"START:STOP[:STEP]"`` / ``"N"`` (the first N
            lines) in Python slice syntax; negative values count from the last committed line.
        n_committed: committed lines of the store.

    Raises:
        ValueError: malformed text, a non-positive step, or an empty selection.
    """
    if spec is None:
        sl = slice(None)
    elif isinstance(spec, slice):
        sl = spec
    else:
        parts = str(spec).strip().split(":")
        try:
            nums = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise ValueError(f"--lines {spec!r} is not START:STOP[:STEP] with integers") from None
        if len(nums) == 1:
            sl = slice(None, nums[0])
        elif len(nums) in (2, 3):
            sl = slice(*nums)
        else:
            raise ValueError(f"--lines {spec!r} is not START:STOP[:STEP]")
    if sl.step is not None and sl.step < 1:
        raise ValueError(f"the line step must be >= 1, got {sl.step}")
    start, stop, step = sl.indices(n_committed)
    rng = LineRange(start, max(start, stop), step)
    if len(rng) == 0:
        raise ValueError(
            f"the line selection {spec!r} selects no line: the store has {n_committed} committed line(s)"
        )
    return rng


@dataclass(frozen=True)
class BlockSpan:
    """One block of analysed lines: store rows ``start:stop`` (every ``lines.step``-th), the
    first of which is analysed line number ``offset``."""

    offset: int
    start: int
    stop: int


def block_spans(lines: LineRange, rows_per_block: int) -> list[BlockSpan]:
    """The blocks of at most ``rows_per_block`` selected rows that cover ``lines``, in order."""
    if rows_per_block < 1:
        raise ValueError(f"rows_per_block must be >= 1, got {rows_per_block}")
    span = rows_per_block * lines.step
    return [BlockSpan(len(range(lines.start, b0, lines.step)), b0, min(lines.stop, b0 + span))
            for b0 in range(lines.start, lines.stop, span)]


class LineSource:
    """Read-only, block-wise view of one store's (or its ``directions/`` group's) lines."""

    def __init__(self, store: LineStore) -> None:
        self._store = store

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LineSource:
        """Open a store (raises FileNotFoundError / ValueError as :func:`open_store`)."""
        return cls(open_store(path))

    @property
    def path(self) -> str:
        return str(self._store.path)

    @property
    def status(self) -> str:
        return self._store.status

    @property
    def committed_lines(self) -> int:
        return self._store.committed_lines

    @property
    def config(self) -> dict:
        return self._store.config

    @property
    def attrs(self) -> dict:
        """The store's root attributes, decoded (``LineStore.attrs``)."""
        return self._store.attrs

    @property
    def position(self) -> np.ndarray:
        """``[K]`` float64 grid."""
        return np.asarray(self._store.position, dtype=np.float64)

    def has(self, name: str) -> bool:
        return self._store.has(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._store[name].shape)

    def sample_ids(self, split: str) -> np.ndarray:
        return self._store.sample_ids(split)

    def directions(self) -> LineSource | None:
        sub = self._store.directions
        return LineSource(sub) if sub is not None and sub.committed_lines > 0 else None

    def steps(self) -> LineSource | None:
        """The per-step mode's ``steps/`` group (its entries are steps), or None."""
        sub = self._store.steps
        return LineSource(sub) if sub is not None and sub.committed_lines > 0 else None

    def read(self, name: str, lines: LineRange) -> np.ndarray:
        """All selected rows of a small per-line array (``[L, ...]``)."""
        parts = [rows for _, rows in self.blocks(name, lines, rows_per_block=4096)]
        if parts:
            return np.concatenate(parts)
        return np.empty((0,) + self.shape(name)[1:], dtype=self._store[name].dtype)

    def read_point(self, name: str, lines: LineRange, point: int) -> np.ndarray:
        """Grid point ``point`` of every selected row of a ``[L, K]`` per-line array (``[L]``;
        e.g. the losses at s = 0), read block by block."""
        parts = [rows[:, point] for _, rows in self.blocks(name, lines, rows_per_block=4096)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=self._store[name].dtype)

    def blocks(self, name: str, lines: LineRange, *, rows_per_block: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, rows)``: selected rows ``offset ... offset + len(rows) - 1`` of ``name``.

        ``offset`` counts analysed lines (0 = ``lines.start``); at most ``rows_per_block``
        selected rows are in memory at once.
        """
        for span in block_spans(lines, rows_per_block):
            yield span.offset, self.read_span(name, lines, span)

    def read_span(self, name: str, lines: LineRange, span: "BlockSpan") -> np.ndarray:
        """The selected rows of ``name`` in ``span`` (one of :func:`block_spans`)."""
        return self._store[name][span.start:span.stop:lines.step]

    def bytes_per_line(self, name: str) -> int:
        """Uncompressed bytes of one line of ``name``."""
        shape = self.shape(name)
        return int(np.prod(shape[1:], dtype=np.int64)) * self._store[name].dtype.itemsize
