"""Recordings: what a line needs, written during training and measured later, line-parallel.

``measure.mode = "record"`` makes ``losslines run`` record, at every scheduled step, the step's
θ_t, its update direction u, the buffers at θ_t, the direction batch and the step's numbers
(:class:`Recorder`, in the place of the ``LineSampler``), and measure nothing.
``losslines measure RECORDING --out STORE`` (``runner.measure``; under ``torchrun`` with any
number of processes, each taking whole lines) measures those lines afterwards: the lines equal
the ones the same config measures inline, bit for bit, because a line is a function of exactly
what is recorded (measuring draws no randomness and changes nothing of the training run).

A recording is a zarr v3 group (a local path or any fsspec URL) with the attributes
``losslines_recording`` (= 1), ``config`` (the run's resolved config) and the run attributes of a
store, ``manifest`` (how the packed arrays unpack), ``status`` and ``committed_lines``, and these
arrays along the dimension ``line`` (rows at or past ``committed_lines`` are not part of it):

===================================== ============== ====================================================
``step``, ``epoch``                   i64, i32       training step and epoch
``lr``, ``direction_norm``,           f64            λ, ‖u‖/λ and ‖u‖ of the step, exactly as the
``update_step``                                      inline run measures them
``trained_bn``                        i8             1: the batch was trained in train mode (BatchNorm
                                                     statistics over the batch), 0: eval mode
``theta``, ``direction``              [line, P]      θ_t and u, the trainable parameters flattened in
                                      model dtype    ``named_parameters()`` order (bfloat16 as u16 bits)
``state``                             [line, S] u8   the buffers and frozen parameters at θ_t, packed
``batch_<k>``                         [line, B, ...] leaf ``k`` of the direction batch ``(inputs,
                                                     targets)``, padded to the batch size B
``batch_rows``, ``batch_ids``         i32, [line, B] rows of the batch, and their dataset ids (-1: pad)
===================================== ============== ====================================================

The ``batch_<k>`` arrays are created with the first line (their row shapes are those of the
first batch). Every array is compressed with Blosc-zstd; a line costs about two parameter sets
on disk, written once, against the hundreds of forwards over the measurement set that measuring
it takes. ``theta`` and ``direction`` are chunked one line by up to 4 Mi elements.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import zarr
from torch import Tensor, nn
from torch.utils import _pytree as pytree
from zarr.codecs import BloscCodec

from losslines.engine.directions import SourceResolver
from losslines.engine.schedule import Schedule
from losslines.store.location import Location, location

RECORDING_ATTR = "losslines_recording"
RECORDING_VERSION = 1
_CHUNK = 1 << 22  # elements per chunk of the parameter arrays
_CODEC = dict(cname="zstd", clevel=3, shuffle="shuffle")


@dataclass(frozen=True)
class RecordedLine:
    """Everything one line needs, as recorded.

    Attributes:
        step, epoch, lr, direction_norm, update_step: the step's numbers (``engine.Direction``).
        trained_bn: ``"batch"`` (the batch was trained in train mode) or ``"running"``.
        theta, direction: θ_t and u per trainable parameter name.
        buffers, frozen: the buffers and the frozen parameters at θ_t, by name.
        batch: the direction batch ``(inputs, targets)`` (tensors, or tuples / dicts of them).
        batch_ids: ``[rows]`` dataset ids of the batch.
    """

    step: int
    epoch: int
    lr: float
    direction_norm: float
    update_step: float
    trained_bn: str
    theta: dict[str, Tensor]
    direction: dict[str, Tensor]
    buffers: dict[str, Tensor]
    frozen: dict[str, Tensor]
    batch: tuple[Any, Any]
    batch_ids: np.ndarray


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _to_numpy(t: Tensor) -> np.ndarray:
    """A CPU numpy view of ``t``; bfloat16 (which numpy lacks) as its uint16 bits."""
    t = t.detach().cpu().contiguous()
    return (t.view(torch.uint16) if t.dtype == torch.bfloat16 else t).numpy()


def _from_numpy(a: np.ndarray, dtype: str) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return _to_numpy(torch.zeros(0, dtype=dtype)).dtype


def _bytes_manifest(named: Mapping[str, Tensor]) -> list[dict]:
    out, offset = [], 0
    for name, t in named.items():
        size = t.numel() * t.element_size()
        out.append({"name": name, "dtype": _dtype_name(t.dtype), "shape": list(t.shape), "offset": offset,
                    "nbytes": size})
        offset += size
    return out


def _pack(named: Mapping[str, Tensor], manifest: list[dict]) -> np.ndarray:
    parts = [named[e["name"]].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy() for e in manifest]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)


def _unpack(data: np.ndarray, manifest: list[dict]) -> dict[str, Tensor]:
    raw = torch.from_numpy(np.ascontiguousarray(data))
    return {e["name"]: raw[e["offset"]:e["offset"] + e["nbytes"]].clone().view(getattr(torch, e["dtype"]))
            .reshape(e["shape"]) for e in manifest}


def _state_of(buffers: Mapping[str, Tensor], frozen: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {**{f"buffer:{n}": b for n, b in buffers.items()}, **{f"param:{n}": p for n, p in frozen.items()}}


def model_state(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(buffers, frozen parameters)`` of ``model``, detached copies."""
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    return buffers, frozen


class RecordingWriter:
    """Writes a recording (see the module docstring), one line at a time, synchronously; a line
    is committed (``committed_lines`` advances) after all of its arrays are written.

    It has what a training loop needs of a store writer: ``append``, ``flush``, ``close``,
    ``update_attrs``, the committed counters and a ``with`` block; ``writer`` is itself, so it is
    its own sink.
    """

    pending_lines = 0  # nothing is queued: a line is written when it is appended
    committed_direction_lines = 0
    committed_steps = 0

    def __init__(self, where: Location, root: zarr.Group) -> None:
        self._path, self._root = where, root
        self._manifest = dict(root.attrs["manifest"])
        self._next = int(root.attrs["committed_lines"])
        self._closed = False

    @classmethod
    def create(cls, where: str | os.PathLike[str] | Location, *, model: nn.Module, batch_size: int,
               attrs: Mapping[str, Any], capacity: int) -> "RecordingWriter":
        """A new recording for ``model`` (its trainable parameters, buffers and frozen parameters
        fix the layout) with direction batches of up to ``batch_size`` rows.

        Raises:
            FileExistsError: something is there already.
            ValueError: trainable parameters of several dtypes.
        """
        loc = location(where)
        if loc.exists():
            raise FileExistsError(f"recording {loc} already exists; pass --resume to continue it or --out for a new path")
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        dtypes = {p.dtype for p in trainable.values()}
        if len(dtypes) != 1:
            raise ValueError(f"measure.mode = 'record' needs the trainable parameters in one dtype, got "
                             f"{sorted(map(_dtype_name, dtypes))}")
        dtype = dtypes.pop()
        buffers, frozen = model_state(model)
        manifest = {"parameters": [{"name": n, "shape": list(p.shape)} for n, p in trainable.items()],
                    "dtype": _dtype_name(dtype), "state": _bytes_manifest(_state_of(buffers, frozen)),
                    "batch_size": int(batch_size), "batch": None}
        root = zarr.open_group(store=loc.zarr_store(), mode="w-")
        lines = max(1, capacity)
        n_params = sum(p.numel() for p in trainable.values())
        _array(root, "step", (lines,), "int64", -1)
        _array(root, "epoch", (lines,), "int32", -1)
        for name in ("lr", "direction_norm", "update_step"):
            _array(root, name, (lines,), "float64", float("nan"))
        _array(root, "trained_bn", (lines,), "int8", -1)
        for name in ("theta", "direction"):
            _array(root, name, (lines, n_params), _numpy_dtype(dtype), 0)
        _array(root, "state", (lines, sum(e["nbytes"] for e in manifest["state"])), "uint8", 0)
        _array(root, "batch_rows", (lines,), "int32", -1)
        _array(root, "batch_ids", (lines, batch_size), "int64", -1)
        root.update_attributes({**dict(attrs), "manifest": manifest, "status": "running", "committed_lines": 0,
                                "created": _now(), RECORDING_ATTR: RECORDING_VERSION})
        return cls(loc, root)

    @classmethod
    def resume(cls, where: str | os.PathLike[str] | Location, *, at_line: int) -> "RecordingWriter":
        """Reopen a stopped recording, rolled back to ``at_line`` lines (a checkpoint's).

        Raises:
            FileNotFoundError / ValueError: no recording there; ``at_line`` past its committed lines.
        """
        loc, root = open_recording_group(where, mode="r+")
        committed = int(root.attrs["committed_lines"])
        if not 0 <= at_line <= committed:
            raise ValueError(f"the checkpoint is at line {at_line} but {loc} committed {committed}: "
                             "the recording does not belong to this checkpoint")
        root.update_attributes({"committed_lines": int(at_line), "status": "running", "status_reason": None})
        return cls(loc, root)

    @property
    def path(self) -> Location:
        return self._path

    @property
    def writer(self) -> "RecordingWriter":
        return self

    @property
    def committed_lines(self) -> int:
        return self._next

    def append(self, line: RecordedLine) -> int:
        """Write one line and commit it; returns its index.

        Raises:
            ValueError: a parameter, buffer or batch that does not match the recording's layout.
        """
        i, g, m = self._next, self._root, self._manifest
        leaves = pytree.tree_leaves(line.batch)
        if m["batch"] is None:
            self._create_batch_arrays(line.batch, leaves)
            m = self._manifest
        rows = int(leaves[0].shape[0]) if leaves else 0
        self._check_batch(leaves, rows, line.step)
        if g["step"].shape[0] <= i:
            for name in g.array_keys():
                g[name].resize((2 * i + 1,) + tuple(g[name].shape[1:]))
        for name, values in (("theta", line.theta), ("direction", line.direction)):
            g[name][i] = _to_numpy(torch.cat([values[e["name"]].detach().reshape(-1).cpu() for e in m["parameters"]]))
        g["state"][i] = _pack(_state_of(line.buffers, line.frozen), m["state"])
        for k, leaf in enumerate(leaves):
            padded = np.zeros((m["batch_size"],) + tuple(leaf.shape[1:]), dtype=g[f"batch_{k}"].dtype)
            padded[:rows] = _to_numpy(leaf)
            g[f"batch_{k}"][i] = padded
        ids = np.full(m["batch_size"], -1, dtype=np.int64)
        ids[:rows] = np.asarray(line.batch_ids, dtype=np.int64)[:rows]
        g["batch_ids"][i], g["batch_rows"][i] = ids, rows
        g["step"][i], g["epoch"][i] = line.step, line.epoch
        g["lr"][i], g["direction_norm"][i], g["update_step"][i] = line.lr, line.direction_norm, line.update_step
        g["trained_bn"][i] = 1 if line.trained_bn == "batch" else 0
        self._next = i + 1
        g.update_attributes({"committed_lines": self._next})  # last: the line is now part of the recording
        return i

    def _create_batch_arrays(self, batch, leaves: list[Tensor]) -> None:
        g, m = self._root, dict(self._manifest)
        lines = g["step"].shape[0]
        m["batch"] = [{"dtype": _dtype_name(t.dtype), "row_shape": list(t.shape[1:])} for t in leaves]
        m["batch_spec"] = pytree.treespec_dumps(pytree.tree_structure(batch))
        for k, leaf in enumerate(leaves):
            _array(g, f"batch_{k}", (lines, m["batch_size"], *leaf.shape[1:]), _numpy_dtype(leaf.dtype), 0)
        g.update_attributes({"manifest": m})
        self._manifest = m

    def _check_batch(self, leaves: list[Tensor], rows: int, step: int) -> None:
        m = self._manifest
        got = [{"dtype": _dtype_name(t.dtype), "row_shape": list(t.shape[1:])} for t in leaves]
        if got != m["batch"] or any(int(t.shape[0]) != rows for t in leaves) or rows > m["batch_size"]:
            raise ValueError(f"step {step}: the direction batch has rows {[tuple(t.shape) for t in leaves]} of dtypes "
                             f"{[g['dtype'] for g in got]}; the recording holds batches of up to {m['batch_size']} "
                             f"rows shaped like {m['batch']} (record mode needs one shape per sample)")

    def append_directions(self, record) -> int:
        raise ValueError("a recording keeps the scheduled lines only; the all-directions mode needs "
                         "measure.mode = 'inline'")

    def flush(self) -> None:
        """Nothing is queued: every append is written and committed when it returns."""

    def update_attrs(self, attrs: Mapping[str, Any]) -> None:
        self._root.update_attributes(dict(attrs))

    def close(self, status: str = "complete", reason: str | None = None) -> None:
        """Set the recording's status (``"complete"`` or ``"failed"`` with a reason); a second call
        does nothing."""
        if self._closed:
            return
        self._closed = True
        self._root.update_attributes({"status": status, "status_reason": reason, "finished": _now()})

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close("complete")
        else:
            self.close("failed", reason=f"{type(exc).__name__}: {exc}")


def _array(root: zarr.Group, name: str, shape: tuple[int, ...], dtype, fill) -> None:
    if len(shape) == 1:
        chunks = (256,)
    else:
        row = math.prod(shape[1:])
        chunks = (1, *shape[1:]) if row <= _CHUNK else (1, _CHUNK, *shape[2:])
    root.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                      compressors=BloscCodec(**_CODEC),
                      dimension_names=("line",) + tuple(f"{name}_{i}" for i in range(len(shape) - 1)))


def open_recording_group(where: str | os.PathLike[str] | Location, mode: str = "r") -> tuple[Location, zarr.Group]:
    """Open a recording's group.

    Raises:
        FileNotFoundError: nothing there. ValueError: not a losslines recording, or a newer format.
    """
    loc = location(where)
    if not loc.exists():
        raise FileNotFoundError(f"no losslines recording at {loc}: the path does not exist")
    if not loc.is_zarr_group():
        raise ValueError(f"{loc} is not a losslines recording (no zarr.json)")
    root = zarr.open_group(store=loc.zarr_store(read_only=mode == "r"), mode=mode)
    version = root.attrs.get(RECORDING_ATTR)
    if version is None:
        hint = (": it is a line store; measure lines from a recording, made by a run with measure.mode = 'record'"
                if "losslines_format" in root.attrs else "")
        raise ValueError(f"{loc} is not a losslines recording{hint}")
    if int(version) != RECORDING_VERSION:
        raise ValueError(f"{loc} is recording format {version}; this losslines reads format {RECORDING_VERSION}")
    return loc, root


class RecordingReader:
    """The committed lines of a recording.

    Attributes:
        path: where it is. attrs: its attributes. config: the recorded run's config (a dict).
        committed_lines: the lines it holds (``len``).
    """

    def __init__(self, where: str | os.PathLike[str] | Location) -> None:
        self.path, self._root = open_recording_group(where)
        self.attrs = dict(self._root.attrs.asdict())
        self.config: dict = self.attrs["config"]
        self._manifest = self.attrs["manifest"]
        self.committed_lines = int(self.attrs["committed_lines"])

    def __len__(self) -> int:
        return self.committed_lines

    def steps(self) -> np.ndarray:
        """The training steps of the committed lines."""
        return np.asarray(self._root["step"][:self.committed_lines])

    def line(self, i: int, device: torch.device | str = "cpu") -> RecordedLine:
        """Line ``i``, its tensors on ``device``.

        Raises:
            IndexError: ``i`` is not a committed line.
        """
        if not 0 <= i < self.committed_lines:
            raise IndexError(f"line {i} is not among the {self.committed_lines} committed lines of {self.path}")
        g, m = self._root, self._manifest

        def params(name: str) -> dict[str, Tensor]:
            flat = _from_numpy(g[name][i], m["dtype"])
            out, offset = {}, 0
            for e in m["parameters"]:
                size = math.prod(e["shape"])
                out[e["name"]] = flat[offset:offset + size].reshape(e["shape"]).to(device)
                offset += size
            return out

        state = {k: v.to(device) for k, v in _unpack(g["state"][i], m["state"]).items()}
        rows = int(g["batch_rows"][i])
        leaves = [_from_numpy(g[f"batch_{k}"][i, :rows], e["dtype"]).to(device) for k, e in enumerate(m["batch"] or [])]
        batch = pytree.tree_unflatten(leaves, pytree.treespec_loads(m["batch_spec"])) if m["batch"] else (None, None)
        return RecordedLine(
            step=int(g["step"][i]), epoch=int(g["epoch"][i]), lr=float(g["lr"][i]),
            direction_norm=float(g["direction_norm"][i]), update_step=float(g["update_step"][i]),
            trained_bn="batch" if int(g["trained_bn"][i]) == 1 else "running", theta=params("theta"),
            direction=params("direction"),
            buffers={k.removeprefix("buffer:"): v for k, v in state.items() if k.startswith("buffer:")},
            frozen={k.removeprefix("param:"): v for k, v in state.items() if k.startswith("param:")},
            batch=tuple(batch), batch_ids=np.asarray(g["batch_ids"][i, :rows]))


class Recorder:
    """The training loop's measurement hook in ``measure.mode = "record"``: the interface of a
    ``LineSampler`` (``should_measure``, ``measure``, ``strategy_report``), but a scheduled step
    is recorded into ``writer`` instead of measured.

    Args:
        model: the trained model.
        schedule: which steps are recorded.
        writer: the recording.
    """

    strategy_report = None  # nothing is measured, so no strategy is chosen

    def __init__(self, model: nn.Module, schedule: Schedule, writer: RecordingWriter):
        self.model, self.schedule, self.writer = model, schedule, writer
        self._source = SourceResolver(model)

    def should_measure(self, step: int) -> bool:
        return self.schedule.should_measure(step)

    @contextmanager
    def measure(self, step: int, source, *, batch: tuple[Any, Any] | None = None, batch_ids=None,
                epoch: int = 0) -> Iterator[None]:
        """Around one training step: on a scheduled step, snapshot θ_t and the buffers, run the
        step, take its direction from ``source`` and append the line to the recording."""
        if not self.schedule.should_measure(step):
            yield
            return
        if batch is None:
            raise ValueError(f"step {step} is recorded, but no batch= was given")
        src = self._source(source)
        trained_bn = "batch" if self.model.training else "running"
        theta_t = src.begin()
        buffers, frozen = model_state(self.model)
        try:
            yield
        except BaseException:
            src.abort()
            raise
        d = src.end()
        ids = np.asarray(batch_ids.cpu() if isinstance(batch_ids, Tensor) else batch_ids, dtype=np.int64) \
            if batch_ids is not None else np.full(int(pytree.tree_leaves(batch)[0].shape[0]), -1, dtype=np.int64)
        self.writer.append(RecordedLine(
            step=int(step), epoch=int(epoch), lr=float(d.lr), direction_norm=float(d.direction_norm),
            update_step=float(d.update_step), trained_bn=trained_bn, theta=theta_t, direction=d.vector,
            buffers=buffers, frozen=frozen, batch=tuple(batch), batch_ids=ids))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
