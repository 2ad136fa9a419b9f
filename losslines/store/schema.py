"""Store format 2: the names, dimensions, dtypes and chunking of every array.

This module is the store's side of the contract with the engine: the engine emits
``losslines.records.LineRecord`` s, and this module maps them to arrays (:func:`record_arrays`,
:func:`directions_arrays`) and derives the layout from the sampler's ``LineShape``
(:meth:`StoreLayout.from_shape`). docs/store-format.md is the normative prose form of the
format. A store is a zarr v3 group:

============================== =============================== ========= ==========================
array                          dims                            dtype     meaning
============================== =============================== ========= ==========================
``position``                   (point,)                        f64       step sizes s along û
``step`` / ``epoch``           (line,)                         i64 / i32 training step / epoch
``lr``                         (line,)                         f32       learning rate λ at the step
``direction_norm``             (line,)                         f32       ‖u‖/λ (= ‖g‖ for plain SGD)
``update_step``                (line,)                         f32       ‖u‖, the s the optimizer took
``loss_{train,val,batch}``     (line, point)                   f32       mean loss (nats), f64 sums
``acc_{train,val}``            (line, point)                   f32       accuracy in [0, 1]
``loss_at_update_{split}``     (line,)                         f32       mean loss at s = update_step
``slope0_{split}``             (line,)                         f32       exact dL/ds at s = 0 (jvp)
``sample_loss_train``          (line, point, sample_train)     f16/f32   per-sample losses
``sample_loss_val``            (line, point, sample_val)       f16/f32   per-sample losses
``sample_loss_batch``          (line, point, batch_slot)       f16/f32   per-sample losses
``sample_slope0_{split}``      (line, sample_{split})          f32       per-sample dℓ/ds at s = 0
``batch_ids``                  (line, batch_slot)              i64       dataset ids of the batch
``interpolated``               (line,)                         i8        1 reconstructed, 0 dense
``interpolation_error_{split}`` (line,)                        f32       rel. error at check points
``sample_interpolation_error_{split}`` (line,)                 f32       the same, per-sample losses
``sample_ids_train``           (sample_train,)                 i64       stable ids, measured set
``sample_ids_val``             (sample_val,)                   i64       stable ids, held-out set
============================== =============================== ========= ==========================

The sample dimension carries the split in its name (``sample_train``, ``sample_val``,
``batch_slot``) so that xarray, which needs one size per dimension name, can open every array
of a store in one Dataset. NaN marks a point that was not measured (unused enlargement rings).

The "all directions" mode writes the same per-line arrays under the sub-group ``directions/``
with the growing dimension ``direction_line`` and a ``direction`` dimension after it
(``loss_train`` is ``(direction_line, direction, point)``); ``position`` and the sample ids
live at the root only. ``step``, ``epoch``, ``position`` and ``sample_ids_*`` are coordinates
(each array's ``coordinates`` attribute names those along its dimensions).

Group attributes: ``losslines_format`` (= 2), ``status`` (``running``/``complete``/``failed``),
``committed_lines`` (lines ``[0, committed_lines)`` are complete; nothing past it exists),
``config`` (the resolved run config), ``semantics`` (measurement settings), ``grid``,
``versions`` and ``created``; the writer also keeps ``finished`` (time of the last status
change) and ``status_reason`` (why a run failed or was interrupted). Values that are not a
string or a number are stored as JSON text and listed in ``json_attrs`` (:func:`encode_attrs`).
The ``directions/`` group has its own ``committed_lines``. Format 1 (still read) differs as
docs/store-format.md §15 says; ``line_specs(version=1)`` gives its arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np

from losslines.records import SPLITS, DirectionsRecord, LineRecord, LineShape, StepRecord

FORMAT_VERSION = 2  # what this losslines writes
READABLE_FORMATS = (1, 2)  # what it reads (format 1 converts with ``losslines upgrade``)
FORMAT_ATTR = "losslines_format"
COMMITTED_ATTR = "committed_lines"
STATUS_ATTR = "status"
STATUSES = ("running", "complete", "failed")
DIRECTIONS_GROUP = "directions"
STEPS_GROUP = "steps"
# the dimension that grows as a run goes on (first of its arrays): root lines, ``directions/``
# lines (format 2; format 1 called them ``line`` too), ``steps/`` entries
GROWING_DIMS = ("line", "direction_line", "step")
JSON_ATTRS_KEY = "json_attrs"  # format 2: names of the root attributes stored as JSON text
# variables that are coordinates (xarray's ``coordinates`` attribute, CF conventions), format 2
COORDINATES = ("step", "epoch", "position", "sample_ids_train", "sample_ids_val")

ACCURACY_SPLITS = ("train", "val")
SAMPLE_DIM = {"train": "sample_train", "val": "sample_val", "batch": "batch_slot"}

SampleDtype = Literal["float16", "float32"]


@dataclass(frozen=True)
class ArraySpec:
    """One array of the format.

    Attributes:
        name: array name inside the group.
        dims: dimension names, outermost first; ``"line"`` (if present) is the growing one.
        dtype: numpy dtype of the stored values.
        fill_value: value of never-written entries (NaN for floats: "not measured").
        doc: meaning and unit, stored as the array's ``description`` attribute.
    """

    name: str
    dims: tuple[str, ...]
    dtype: np.dtype
    fill_value: float | int
    doc: str

    @property
    def per_line(self) -> bool:
        """Does the array grow along its first dimension (``line``, or ``step`` in ``steps/``)?"""
        return bool(self.dims) and self.dims[0] in GROWING_DIMS

    @property
    def per_sample(self) -> bool:
        """Does the array hold one value per sample of a line (``sample_loss_*``, ``sample_slope0_*``)?

        These are written as each line arrives (their chunks hold one line), and a process of a
        sharded measurement writes only its samples' columns of them.
        """
        return self.name.startswith(PER_SAMPLE_PREFIXES)


PER_SAMPLE_PREFIXES = ("sample_loss_", "sample_slope0_")


def coordinates_attr(spec: ArraySpec, group_specs: list[ArraySpec]) -> str | None:
    """The ``coordinates`` attribute of ``spec`` (format 2): the coordinate variables of its group
    that lie along its dimensions, space-separated, or None (xarray then makes them coordinates)."""
    names = [c.name for c in group_specs
             if c.name in COORDINATES and c.name != spec.name and set(c.dims) <= set(spec.dims)]
    return " ".join(names) or None


@dataclass(frozen=True)
class StoreLayout:
    """Sizes that fix every array's shape, except the number of lines.

    Attributes:
        n_points: number of grid positions K (the widest grid, enlargement rings included).
        n_train: number of measured training samples N (0: no training measurement).
        n_val: number of held-out samples (0: no held-out split).
        batch_size: number of slots B of the direction batch (0: the batch is not measured).
        sample_losses: splits whose per-sample losses are stored, a subset of ``SPLITS``.
        sample_dtype: dtype of the per-sample losses.
        n_directions: lines per position in the ``directions/`` group (0: no such group).
        line_chunk: lines per chunk of the small per-line arrays.
        sample_block: samples per chunk of the per-sample arrays (chunks ``(1, K, block)``).
        per_step: the store has the ``steps/`` group of the per-step mode.
        step_chunk: steps per chunk of the ``steps/`` arrays.
        interpolation: lines may be reconstructed from Chebyshev nodes (``measure.nodes =
            "chebyshev"``): the store has ``interpolated`` and the ``*interpolation_error_*`` arrays.
    """

    n_points: int
    n_train: int
    n_val: int = 0
    batch_size: int = 0
    sample_losses: tuple[str, ...] = ()
    sample_dtype: SampleDtype = "float16"
    n_directions: int = 0
    line_chunk: int = 64
    sample_block: int = 4096
    per_step: bool = False
    step_chunk: int = 1024
    interpolation: bool = False

    def __post_init__(self) -> None:
        if self.n_points < 1:
            raise ValueError(f"StoreLayout.n_points must be >= 1, got {self.n_points}")
        for name in ("n_train", "n_val", "batch_size", "n_directions"):
            if getattr(self, name) < 0:
                raise ValueError(f"StoreLayout.{name} must be >= 0, got {getattr(self, name)}")
        if self.line_chunk < 1 or self.sample_block < 1 or self.step_chunk < 1:
            raise ValueError("StoreLayout.line_chunk, sample_block and step_chunk must be >= 1")
        unknown = set(self.sample_losses) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown sample_losses split(s) {sorted(unknown)}; valid: {SPLITS}")
        if self.sample_dtype not in ("float16", "float32"):
            raise ValueError(f"sample_dtype must be 'float16' or 'float32', got {self.sample_dtype!r}")
        for split in self.sample_losses:
            if self.split_size(split) == 0:
                raise ValueError(f"sample_losses includes {split!r} but that split has no samples")

    @classmethod
    def from_shape(cls, shape: LineShape, *, sample_dtype: SampleDtype = "float16", n_directions: int = 0,
                   line_chunk: int = 64, sample_block: int = 4096, step_chunk: int = 1024) -> "StoreLayout":
        """The layout of a store that keeps a sampler's records (the one place it is derived).

        Args:
            shape: the sampler's ``LineShape`` (grid size, samples per split, per-sample splits).
            sample_dtype, line_chunk, sample_block, step_chunk: how per-sample losses, lines and
                steps are stored.
            n_directions: lines per position in the ``directions/`` group (0: none).
        """
        return cls(n_points=shape.n_points, n_train=shape.size("train"), n_val=shape.size("val"),
                   batch_size=shape.size("batch"), sample_losses=shape.sample_losses, sample_dtype=sample_dtype,
                   n_directions=n_directions, line_chunk=line_chunk, sample_block=sample_block,
                   per_step=shape.per_step, step_chunk=step_chunk, interpolation=shape.interpolation)

    def split_size(self, split: str) -> int:
        """Number of samples of ``split`` ("train", "val" or "batch")."""
        return {"train": self.n_train, "val": self.n_val, "batch": self.batch_size}[split]

    @property
    def measured_splits(self) -> tuple[str, ...]:
        """Splits with at least one sample, in ``SPLITS`` order."""
        return tuple(s for s in SPLITS if self.split_size(s) > 0)

    def dim_sizes(self) -> dict[str, int]:
        """Sizes of all fixed dimensions (every dimension but ``line``)."""
        sizes = {"point": self.n_points, "direction": self.n_directions}
        sizes.update({SAMPLE_DIM[s]: self.split_size(s) for s in SPLITS})
        return sizes

    def chunks(self, spec: ArraySpec) -> tuple[int, ...]:
        """Chunk shape of ``spec``: whole lines of per-sample arrays, blocks of samples."""
        sizes = self.dim_sizes()
        if spec.per_sample:  # one line (and direction) per chunk, blocks of samples
            lead = tuple(1 for d in spec.dims if d in ("line", "direction_line", "direction"))
            middle = (self.n_points,) if "point" in spec.dims else ()
            return lead + middle + (max(1, min(self.sample_block, sizes[spec.dims[-1]])),)
        out = []
        for d in spec.dims:
            if d in ("line", "direction_line"):
                out.append(self.line_chunk)
            elif d == "step":
                out.append(self.step_chunk)
            else:
                out.append(max(1, sizes[d]))
        return tuple(out)


def _f32(name: str, dims: tuple[str, ...], doc: str) -> ArraySpec:
    return ArraySpec(name, dims, np.dtype("float32"), float("nan"), doc)


def line_specs(layout: StoreLayout, *, directions: bool = False, version: int = FORMAT_VERSION) -> list[ArraySpec]:
    """Specs of the per-line arrays of a layout (root group, or ``directions/`` when asked).

    Arrays of splits without samples are left out (a run without a held-out split has no
    ``loss_val``); per-sample arrays exist only for ``layout.sample_losses``. ``version`` 1
    names the line dimension of ``directions/`` ``line`` and has no ``sample_slope0_*``.
    """
    line = "direction_line" if directions and version >= 2 else "line"
    lead: tuple[str, ...] = (line, "direction") if directions else (line,)
    splits = layout.measured_splits
    specs = [
        ArraySpec("step", (line,), np.dtype("int64"), -1, "training step of the line"),
        ArraySpec("epoch", (line,), np.dtype("int32"), -1, "training epoch of the line"),
        _f32("lr", (line,), "learning rate λ at the step"),
        _f32("direction_norm", lead, "‖u‖/λ: the gradient (or momentum buffer) norm"),
        _f32("update_step", lead, "‖u‖: distance along û that the optimizer moved"),
    ]
    for split in splits:
        specs.append(_f32(f"loss_{split}", lead + ("point",), f"mean {split} loss in nats"))
    for split in ACCURACY_SPLITS:
        if split in splits:
            specs.append(_f32(f"acc_{split}", lead + ("point",), f"{split} accuracy in [0, 1]"))
    for split in splits:
        specs.append(_f32(f"loss_at_update_{split}", lead, f"mean {split} loss at s = update_step"))
    for split in splits:
        specs.append(_f32(f"slope0_{split}", lead, f"exact d(loss_{split})/ds at s = 0, nats per unit s"))
    dtype = np.dtype(layout.sample_dtype)
    for split in layout.sample_losses:
        specs.append(
            ArraySpec(
                f"sample_loss_{split}",
                lead + ("point", SAMPLE_DIM[split]),
                dtype,
                float("nan"),
                f"per-sample {split} loss in nats",
            )
        )
    if version >= 2:
        for split in layout.sample_losses:
            specs.append(_f32(f"sample_slope0_{split}", lead + (SAMPLE_DIM[split],),
                              f"exact d(per-sample {split} loss)/ds at s = 0 (jvp), nats per unit s"))
    if layout.batch_size > 0:
        specs.append(
            ArraySpec("batch_ids", lead + ("batch_slot",), np.dtype("int64"), -1,
                      "dataset ids of the direction-defining batch")
        )
    if layout.interpolation and version >= 2:
        specs.append(ArraySpec("interpolated", lead, np.dtype("int8"), -1,
                               "1: values reconstructed from Chebyshev nodes; 0: measured densely (error above bound)"))
        for split in splits:
            specs.append(_f32(f"interpolation_error_{split}", lead,
                              f"max relative error of the interpolated mean {split} loss at the check points"))
        for split in layout.sample_losses:
            specs.append(_f32(f"sample_interpolation_error_{split}", lead,
                              f"max relative error of the interpolated per-sample {split} losses at the check points"))
    return specs


def step_specs(layout: StoreLayout) -> list[ArraySpec]:
    """Specs of the ``steps/`` group (the per-step mode): one entry per training step."""
    lead = ("step",)
    specs = [
        ArraySpec("step", lead, np.dtype("int64"), -1, "training step"),
        ArraySpec("epoch", lead, np.dtype("int32"), -1, "training epoch of the step"),
        _f32("lr", lead, "learning rate λ at the step"),
        _f32("direction_norm", lead, "‖u‖/λ: the gradient (or momentum buffer) norm"),
        _f32("update_step", lead, "‖u‖: distance along û that the optimizer moved"),
    ]
    for split in layout.measured_splits:
        specs.append(_f32(f"loss0_{split}", lead, f"mean {split} loss at s = 0 (θ_t)"))
    for split in ACCURACY_SPLITS:
        if split in layout.measured_splits:
            specs.append(_f32(f"acc0_{split}", lead, f"{split} accuracy at s = 0"))
    for split in layout.measured_splits:
        specs.append(_f32(f"slope0_{split}", lead, f"exact d(loss_{split})/ds at s = 0, loss per unit s"))
    for split in layout.measured_splits:
        specs.append(_f32(f"loss_at_update_{split}", lead, f"mean {split} loss at s = update_step"))
    return specs


def static_specs(layout: StoreLayout) -> list[ArraySpec]:
    """Specs of the arrays written once at creation: the grid and the sample ids."""
    specs = [ArraySpec("position", ("point",), np.dtype("float64"), float("nan"),
                       "step size s: distance along the unit update direction")]
    for split in ("train", "val"):
        if layout.split_size(split) > 0:
            specs.append(ArraySpec(f"sample_ids_{split}", (SAMPLE_DIM[split],), np.dtype("int64"), -1,
                                   f"stable dataset ids of the measured {split} samples"))
    return specs


def encode_attrs(attrs: Mapping[str, Any], json_keys: set[str]) -> dict[str, Any]:
    """Root attributes as format 2 stores them: netCDF-safe (string, int or float each).

    Values that are not a string, an int or a float (objects, lists, booleans, None) are stored
    as JSON text, and their names are added to ``json_keys`` (updated in place), which is stored
    space-separated under ``json_attrs`` so that :func:`decode_attrs` restores them.
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[key] = value
            json_keys.discard(key)
        else:
            out[key] = json.dumps(value, allow_nan=False, sort_keys=True)
            json_keys.add(key)
    out[JSON_ATTRS_KEY] = " ".join(sorted(json_keys))
    return out


def json_keys(raw: Mapping[str, Any]) -> set[str]:
    """The names a group's ``json_attrs`` lists (its attributes stored as JSON text)."""
    return set(str(raw.get(JSON_ATTRS_KEY, "") or "").split())


def decode_attrs(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of a stored group as plain values (format 2's JSON text decoded; format 1
    stored them as JSON values already)."""
    out = dict(raw)
    out.pop(JSON_ATTRS_KEY, None)
    for key in json_keys(raw):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def spec_by_name(specs: list[ArraySpec]) -> Mapping[str, ArraySpec]:
    return {s.name: s for s in specs}


@dataclass(frozen=True)
class SampleSlice:
    """Per-sample values of the samples ``[offset, offset + n)`` of a split: what one process of a
    measurement sharded over processes holds (its values' last dimension is ``n``)."""

    offset: int
    values: np.ndarray


def record_arrays(record: LineRecord, layout: StoreLayout) -> dict[str, Any]:
    """The per-line arrays of one ``LineRecord`` (without the ``line`` dimension), by name.

    Values keep their precision here (float64 means); the writer casts to each array's dtype.
    Splits the layout does not store are left out; a split the layout expects but the record
    lacks is left out too (the writer stores NaN: not measured).
    """
    values: dict[str, Any] = {"step": record.step, "epoch": record.epoch, "lr": record.lr,
                              "direction_norm": record.direction_norm, "update_step": record.update_step}
    measured = layout.measured_splits
    for split, line in record.splits.items():
        if split not in measured:
            continue
        values[f"loss_{split}"] = line.loss
        if split in ACCURACY_SPLITS:
            values[f"acc_{split}"] = line.accuracy
        values[f"loss_at_update_{split}"] = line.loss_at_update
        values[f"slope0_{split}"] = line.slope0
        if split in layout.sample_losses:
            if line.sample_loss is None:
                raise ValueError(f"the layout stores per-sample {split} losses but the record of step "
                                 f"{record.step} carries none")
            whole = line.sample_offset == 0 and np.shape(line.sample_loss)[-1] == layout.split_size(split)
            values[f"sample_loss_{split}"] = line.sample_loss if whole else SampleSlice(line.sample_offset,
                                                                                          line.sample_loss)
            if line.sample_slope0 is not None:
                values[f"sample_slope0_{split}"] = (line.sample_slope0 if whole
                                                    else SampleSlice(line.sample_offset, line.sample_slope0))
    if layout.batch_size > 0 and record.batch_ids is not None:
        values["batch_ids"] = record.batch_ids
    if layout.interpolation:
        if record.interpolated is not None:  # None: measured at s = 0 only (a non-finite update)
            values["interpolated"] = int(record.interpolated)
        for split, line in record.splits.items():
            if split in measured:
                values[f"interpolation_error_{split}"] = line.interpolation_error
                if split in layout.sample_losses:
                    values[f"sample_interpolation_error_{split}"] = line.sample_interpolation_error
    return values


def directions_arrays(record: DirectionsRecord, layout: StoreLayout) -> dict[str, Any]:
    """The arrays of one ``directions/`` line: per-direction arrays gain a leading ``[M]`` axis;
    ``step``, ``epoch`` and ``lr`` are per position and stay scalar."""
    if not record.lines:
        raise ValueError(f"the directions record of step {record.step} holds no lines")
    per_line = [record_arrays(line, layout) for line in record.lines]
    out: dict[str, Any] = {"step": record.step, "epoch": record.epoch, "lr": record.lr}
    for name in per_line[0]:
        if name in out:
            continue
        first = per_line[0][name]
        if isinstance(first, SampleSlice):  # a shard: every direction holds the same samples
            out[name] = SampleSlice(first.offset, np.stack([np.asarray(v[name].values) for v in per_line]))
        else:
            out[name] = np.stack([np.asarray(values[name]) for values in per_line])
    return out


def step_arrays(record: StepRecord, layout: StoreLayout) -> dict[str, Any]:
    """The arrays of one ``steps/`` entry (without the ``step`` dimension), by name."""
    values: dict[str, Any] = {"step": record.step, "epoch": record.epoch, "lr": record.lr,
                              "direction_norm": record.direction_norm, "update_step": record.update_step}
    for split, v in record.splits.items():
        if split not in layout.measured_splits:
            continue
        values[f"loss0_{split}"] = v.loss0
        if split in ACCURACY_SPLITS:
            values[f"acc0_{split}"] = v.accuracy0
        values[f"slope0_{split}"] = v.slope0
        values[f"loss_at_update_{split}"] = v.loss_at_update
    return values

