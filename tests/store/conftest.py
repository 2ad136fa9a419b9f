"""Shared helpers of the store tests: random line records and an in-memory oracle store."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from losslines.store.schema import StoreLayout, line_specs, static_specs


def random_line(layout: StoreLayout, rng: np.random.Generator, *, step: int, directions: bool = False,
                p_present: float = 0.7) -> dict[str, np.ndarray]:
    """A record with ``step`` and a random subset of the other per-line arrays, random values."""
    sizes = layout.dim_sizes()
    record: dict[str, np.ndarray] = {"step": np.int64(step)}
    for spec in line_specs(layout, directions=directions):
        if spec.name == "step" or rng.random() > p_present:
            continue
        shape = tuple(sizes[d] for d in spec.dims[1:])
        if np.issubdtype(spec.dtype, np.integer):
            record[spec.name] = rng.integers(0, 10_000, size=shape)
        else:
            record[spec.name] = rng.normal(size=shape) * 3.0  # float64: the writer casts
    return record


class Oracle:
    """What a store must contain after a sequence of appends: numpy arrays, fill-initialised."""

    def __init__(self, layout: StoreLayout, *, directions: bool = False) -> None:
        self.layout = layout
        self.sizes = layout.dim_sizes()
        self.specs = {s.name: s for s in line_specs(layout, directions=directions)}
        self.lines: list[dict[str, np.ndarray]] = []

    def append(self, record: dict[str, np.ndarray]) -> None:
        line = {}
        for name, spec in self.specs.items():
            shape = tuple(self.sizes[d] for d in spec.dims[1:])
            if name in record:
                line[name] = np.asarray(record[name]).astype(spec.dtype)
            else:
                line[name] = np.full(shape, spec.fill_value, dtype=spec.dtype)
        self.lines.append(line)

    def array(self, name: str, n_lines: int | None = None) -> np.ndarray:
        spec = self.specs[name]
        lines = self.lines[: n_lines if n_lines is not None else len(self.lines)]
        shape = (len(lines),) + tuple(self.sizes[d] for d in spec.dims[1:])
        if not lines:
            return np.empty(shape, dtype=spec.dtype)
        return np.stack([ln[name] for ln in lines])


def make_inputs(layout: StoreLayout, seed: int = 0) -> dict:
    """``positions`` and ``sample_ids`` for ``StoreWriter.create``."""
    rng = np.random.default_rng(seed)
    k = layout.n_points
    ids = {s: rng.permutation(10 * layout.split_size(s) + 1)[: layout.split_size(s)]
           for s in ("train", "val") if layout.split_size(s) > 0}
    return {"positions": np.linspace(-0.5, 0.5, k) if k > 1 else np.zeros(1), "sample_ids": ids}


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    return SimpleNamespace(random_line=random_line, Oracle=Oracle, make_inputs=make_inputs,
                           line_specs=line_specs, static_specs=static_specs)


@pytest.fixture
def small_layout() -> StoreLayout:
    return StoreLayout(n_points=5, n_train=6, n_val=3, batch_size=2, sample_losses=("train", "val", "batch"),
                       sample_dtype="float32", n_directions=2, line_chunk=4, sample_block=4)
