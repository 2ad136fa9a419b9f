"""Import the original research code's per-step pickles into a store (``losslines import-pickles``).

The paper's sampler (``SGDLineSampler.measure_exact_loss`` in the original repository) wrote one
file per training step, ``line_data_{step}.pickle``, holding the 8-tuple::

    (train_losses [N, K], val_losses [N_val, K], positions [K], batch_losses [B, K],
     update_step, direction_norm, extrapolation_flag, step)

in this order (the order the sampler pickles and its own analysis code unpacks): per-sample
losses as float64 arrays (torch tensors and ``[K, n]`` are accepted too), positions float64,
``update_step = λ·‖v‖`` a Python float, ``direction_norm = ‖v‖`` a 0-d float32 tensor that was on
a CUDA device when pickled (v is the gradient, or the momentum buffer in the momentum runs: the
file is the same for both), the flag, and the step. Unpickling such a tensor with plain
``pickle`` on a machine without CUDA fails (torch restores storages at their saved location), so
this module unpickles with a restricted :class:`pickle.Unpickler` that (a) only admits the
classes this format needs (numpy arrays, torch tensors, builtins) and (b) reroutes torch's
storage loader to ``torch.load(..., map_location="cpu", weights_only=True)``. Torch is imported
lazily.

**The original's grids.** With interval ``si`` and resolution ``h`` (0.5 and 0.006 for the
paper's ResNet-20 runs) every file's positions are ring 0, ``arange(-si, 0, h)`` joined with
``arange(0, si, h)`` (two half-lattices: the neighbours of 0 are -0.002 and +0.006), plus the
*update point* s = update_step sorted in wherever it lies (beyond ``si`` too), and, on lines
whose minimum lay on the edge, rings r = 1..4, ``arange(-si(r+1), -si·r, h)`` joined with
``arange(si·r, si(r+1), h)``, without the update point. No two lines share a grid.

**Representation.** The store's grid is the sorted union of every file's positions *except the
update points*, compared with exact float64 equality (the sampler computes the half-lattices and
rings identically in every file, so they merge exactly); a line is NaN where its file has no
measurement (rings it did not measure). Each line's update-point losses go, as means over
samples (float64, rounded to float32 like every mean), to ``loss_at_update_{train,val,batch}``,
which format 2 defines as exactly this: the loss at s = update_step, measured with the line, not
part of ``loss_X``. The per-sample values at the update point are the one thing not stored
(``sample_loss_X`` has only the grid's points). The alternative, the union *with* the update
points, is rejected: every update point is a grid point that every other line lacks, so all
lines get NaN holes inside their measured interval (an update point of 0.005 sits between 0 and
0.006, among the points the slope-at-0 stencil and the three-point parabolas use), and a run of
5,000-10,000 lines would add as many points to a 168-point grid, every ``[line, point]`` array
and every per-line ``sample_loss_X`` chunk growing 30-60 times, almost all NaN.

Details: the update point is the position equal to ``update_step`` (compared in the positions'
own dtype). If it equals another measured position too (update_step 0.5 = lr 0.1 · ‖g‖ 5.0 on a
line enlarged by ring 1, which starts at 0.5), the file holds two indistinguishable columns
there: the first is the grid point, the last the update point. A file without its update point
(not written by the sampler) imports with every position on the grid and ``loss_at_update_X``
NaN. Refused, with the file and the positions named: non-finite positions, a position repeated
within a file (other than that one coincidence), and two positions of different files that
differ only in the last digits (within ``NEAR_RTOL``: one step size computed two ways; as two
grid points they would split every line).

Mapping into the store format: per-sample arrays are transposed to ``[K, N]`` (``sample_loss_train``,
``sample_loss_val``, ``sample_loss_batch``; float32 by default), the means over samples become
``loss_{train,val,batch}`` (accumulated in float64), ``update_step`` and ``direction_norm`` are
copied, ``lr`` is the given learning rate (NaN: unknown), the step comes from the tuple.
Nothing else was measured by the original (no accuracies, no exact slopes, no batch ids: those
arrays stay NaN / -1; the analysis estimates slopes from the grid and says so).
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from losslines.store.schema import SPLITS
from losslines.store.writer import StoreWriter

PATTERN = re.compile(r"^line_data_(-?\d+)\.pickle$")
NEAR_RTOL = 1e-6  # distinct positions of different files closer than this (relative) are refused

_ALLOWED = {
    ("builtins", n) for n in ("float", "int", "bool", "complex", "tuple", "list", "dict", "set", "frozenset",
                              "slice", "range", "bytearray", "bytes")
} | {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # pickle protocol 5
    ("_codecs", "encode"),  # pickle protocol 2 encodes bytes through it
    ("numpy.dtypes", "Float64DType"), ("numpy.dtypes", "Float32DType"), ("numpy.dtypes", "Int64DType"),
    ("numpy.dtypes", "BoolDType"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"), ("torch", "device"), ("torch", "Size"),
}


class _LineDataUnpickler(pickle.Unpickler):
    """Unpickler for ``line_data_*.pickle``: allow-listed classes, CUDA storages mapped to CPU."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_on_cpu
        if module == "__builtin__":  # protocol 0-2 pickles name Python 2's module
            module = "builtins"
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: not part of the original line_data format"
            )
        return super().find_class(module, name)


def _storage_on_cpu(data: bytes) -> Any:
    import torch  # lazily: only pickles with torch tensors need it

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_line_pickle(path: str | os.PathLike[str]) -> tuple:
    """Load one ``line_data_{step}.pickle`` on any machine (CUDA tensors land on the CPU).

    Raises:
        ValueError: not an 8-tuple, or a class outside the format.
    """
    try:
        with open(path, "rb") as f:
            obj = _LineDataUnpickler(f).load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: {err}") from err
    if not isinstance(obj, (tuple, list)) or len(obj) != 8:
        raise ValueError(f"{path}: expected the original 8-tuple (train, val, positions, batch, update_step, "
                         f"direction_norm, extrapolation flag, step), got {type(obj).__name__} of length "
                         f"{len(obj) if hasattr(obj, '__len__') else '?'}")
    return tuple(obj)


def _array(value: Any, dtype: Any = np.float64) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _scalar(value: Any, what: str, path: Path) -> float:
    arr = _array(value)
    if arr.size != 1:
        raise ValueError(f"{path}: {what} must be a scalar, got shape {arr.shape}")
    return float(arr.reshape(()))


@dataclass(frozen=True)
class _Line:
    """One pickle, converted.

    Attributes:
        step: the training step (the tuple's, equal to the file name's).
        positions: ``[K_grid]`` float64 grid positions of the file (its update point removed), in
            file order; distance along the unit update direction.
        columns: ``[K_grid]`` int64 column of each of those positions in the file's arrays.
        update_column: the file's column of its update point s = update_step, None if absent.
        update_on_grid: the update step equals another of the file's positions too.
        samples: ``{split: [K_file, n]}`` float64 per-sample losses of every column (C order).
        update_step, direction_norm: the file's scalars (s; s per unit λ).
        extrapolated: the file's extrapolation flag.
        transposed: some per-sample array was stored ``[K, n]``.
    """

    step: int
    positions: np.ndarray
    columns: np.ndarray
    update_column: int | None
    update_on_grid: bool
    samples: dict[str, np.ndarray]
    update_step: float
    direction_norm: float
    extrapolated: bool
    transposed: bool


def split_update_point(positions: np.ndarray, update_step: float) -> tuple[np.ndarray, int | None]:
    """A file's grid columns and the column of its update point s = update_step.

    The update point is the position equal to ``update_step`` in the positions' own dtype (the
    original appends the float ``update_step`` to float64 positions, so it is found exactly). If
    several positions are (the update step coincides with a measured lattice point), the last is
    the update point and the others stay on the grid.

    Args:
        positions: ``[K]`` the file's positions (distance along the unit update direction).
        update_step: the file's λ·‖v‖ (same unit).

    Returns:
        ``(columns, update_column)``: ``[K - 1]`` (or ``[K]`` when absent) ascending int64
        column indices of the grid positions, and the update point's column or None.
    """
    positions = np.asarray(positions).reshape(-1)
    floating = np.issubdtype(positions.dtype, np.floating)
    target = positions.dtype.type(update_step) if floating else update_step
    hits = np.flatnonzero(positions == target)
    columns = np.arange(positions.size, dtype=np.int64)
    if hits.size == 0:
        return columns, None
    return np.delete(columns, hits[-1]), int(hits[-1])


def _per_sample(value: Any, k: int, split: str, path: Path) -> tuple[np.ndarray, bool]:
    """``[n, K]`` (the original layout) -> C-ordered ``[K, n]``; ``[K, n]`` is accepted when unambiguous."""
    arr = _array(value)
    if arr.size == 0:
        return np.empty((k, 0)), False
    if arr.ndim != 2 or k not in arr.shape:
        raise ValueError(f"{path}: {split} losses have shape {arr.shape}; expected [samples, {k} positions]")
    if arr.shape[1] == k:
        return np.ascontiguousarray(arr.T), False
    return np.ascontiguousarray(arr), True  # [K, n] with n != K


def _read(path: Path, step_from_name: int) -> _Line:
    train, val, positions, batch, update_step, direction_norm, flag, step = load_line_pickle(path)
    raw = _array(positions, dtype=None).reshape(-1)
    upd = _scalar(update_step, "update_step", path)
    columns, update_column = split_update_point(raw, upd)
    k = raw.size
    samples, transposed = {}, False
    for split, value in (("train", train), ("val", val), ("batch", batch)):
        samples[split], t = _per_sample(value, k, split, path)
        transposed |= t
    step = int(_scalar(step, "step", path))
    if step != step_from_name:
        raise ValueError(f"{path}: the file name says step {step_from_name} but the tuple says {step}")
    on_grid = update_column is not None and bool(np.any(raw[columns] == raw[update_column]))
    return _Line(step, raw.astype(np.float64)[columns], columns, update_column, on_grid, samples, upd,
                 _scalar(direction_norm, "direction_norm", path), bool(_scalar(flag, "extrapolation flag", path)),
                 transposed)


def common_grid(position_sets: list[np.ndarray],
                names: list[str] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The store's grid, the sorted union of the files' grid positions, and each file's indices into it.

    Positions merge only when equal as float64: the original computes its half-lattices and
    rings the same way in every file, so equal step sizes are equal bit for bit.

    Args:
        position_sets: per file, ``[K_f]`` grid positions (update points removed), any order.
        names: per file, how an error names it (default ``file #n``).

    Returns:
        ``(grid, where)``: ``grid [K]`` float64 strictly ascending and, per file, ``where_f
        [K_f]`` int64 with ``grid[where_f] == positions_f``.

    Raises:
        ValueError: non-finite positions, a position repeated within a file, or positions of
            two files that differ by at most ``NEAR_RTOL`` (relative) without being equal.
    """
    names = names if names is not None else [f"file #{n}" for n in range(len(position_sets))]
    sets = [np.asarray(p, dtype=np.float64).reshape(-1) for p in position_sets]
    for name, p in zip(names, sets):
        if not np.all(np.isfinite(p)):
            raise ValueError(f"positions of {name} contain NaN or inf: {p[~np.isfinite(p)][:3].tolist()}")
        values, counts = np.unique(p, return_counts=True)
        if np.any(counts > 1):
            raise ValueError(f"positions of {name} repeat the step size(s) {values[counts > 1][:5].tolist()}")
    grid = np.unique(np.concatenate(sets)) if sets else np.empty(0)
    where = [np.searchsorted(grid, p).astype(np.int64) for p in sets]
    _refuse_near_equal(grid, where, names)
    return grid, where


def _refuse_near_equal(grid: np.ndarray, where: list[np.ndarray], names: list[str]) -> None:
    """Neighbouring grid points within ``NEAR_RTOL`` that different files hold: one step size
    computed two ways (e.g. float32 and float64), which as two points would split every line."""
    near = np.flatnonzero(np.diff(grid) <= NEAR_RTOL * np.maximum(np.abs(grid[:-1]), np.abs(grid[1:])))
    if near.size == 0:
        return
    member = np.zeros((len(where), grid.size), dtype=bool)
    for n, w in enumerate(where):
        member[n, w] = True
    for j in near:
        a, b = member[:, j], member[:, j + 1]
        if np.array_equal(a, b):
            continue  # the same files measured both: two distinct measurements, kept
        fa = int(np.flatnonzero(a & ~b)[0]) if np.any(a & ~b) else int(np.flatnonzero(a)[0])
        fb = int(np.flatnonzero(b & ~a)[0]) if np.any(b & ~a) else int(np.flatnonzero(b)[0])
        raise ValueError(
            f"{names[fa]} has position {grid[j]!r} and {names[fb]} has {grid[j + 1]!r}, {grid[j + 1] - grid[j]:.1e} "
            "apart: one step size computed two ways? Positions merge only when exactly equal, and as two grid "
            "points each line would be NaN at one of them; import such files into separate stores"
        )


def import_pickles(
    src_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    lr: float | None = None,
    sample_dtype: str = "float32",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Convert a folder of ``line_data_{step}.pickle`` files into a store.

    The grid is the union of the files' positions without their update points; each line's
    update-point losses become ``loss_at_update_X`` (see the module docstring for why). Files
    are read twice, one at a time (positions and sizes first, then the values), so memory
    stays at one file.

    Args:
        src_dir: folder of the pickles.
        out_path: the new store.
        lr: the run's learning rate λ (stored per line; None: NaN, unknown).
        sample_dtype: ``"float32"`` (default) or ``"float16"`` for the per-sample arrays.
        overwrite: replace an existing store at ``out_path``.
        progress: called as ``progress(done, total)`` after each file.

    Returns:
        ``out_path`` as a Path.

    Raises:
        FileNotFoundError: ``src_dir`` missing or without line_data pickles.
        ValueError: malformed pickles, inconsistent sample counts, positions that one grid
            cannot hold (non-finite, repeated within a file, near-equal across files).
        FileExistsError: ``out_path`` exists and ``overwrite`` is false.
    """
    from losslines.store.schema import StoreLayout

    src = Path(src_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder of line_data_{{step}}.pickle files")
    files = sorted(((int(m.group(1)), src / f) for f in os.listdir(src) if (m := PATTERN.match(f))))
    if not files:
        raise FileNotFoundError(f"{src} holds no line_data_{{step}}.pickle file")
    repeated = sorted({step for step, _ in files if sum(s == step for s, _ in files) > 1})
    if repeated:
        raise ValueError(f"{src} holds several files for step(s) {repeated[:5]} (e.g. line_data_5 and "
                         "line_data_05); keep one file per step")
    if lr is not None and not (lr > 0):
        raise ValueError(f"--lr must be > 0, got {lr}")
    positions, sizes = [], None
    for step, path in files:
        line = _read(path, step)
        these = {s: a.shape[1] for s, a in line.samples.items()}
        if sizes is None:
            sizes = these
        elif these != sizes:
            raise ValueError(f"{path}: sample counts {these} differ from the first file's {sizes}")
        positions.append(line.positions)
    assert sizes is not None
    grid, where = common_grid(positions, [path.name for _, path in files])
    layout = StoreLayout(n_points=grid.size, n_train=sizes["train"], n_val=sizes["val"], batch_size=sizes["batch"],
                         sample_losses=tuple(s for s in SPLITS if sizes[s] > 0), sample_dtype=sample_dtype)  # type: ignore[arg-type]
    ids = {s: np.arange(sizes[s], dtype=np.int64) for s in ("train", "val") if sizes[s] > 0}
    attrs = {"config": {"name": f"imported from {src.name}", "optimizer": {"lr": lr}},
             "semantics": {"source": "original pickles (line_data_{step}.pickle)",
                           "sample_ids": "positions in the original arrays (dataset ids were not stored)"}}
    extrapolated, transposed, no_update, update_twice = [], False, [], []
    with StoreWriter.create(out_path, layout, positions=grid, sample_ids=ids, attrs=attrs, overwrite=overwrite,
                            capacity=len(files)) as writer:
        for n, (step, path) in enumerate(files):
            line = _read(path, step)
            writer.append(_record(line, grid.size, where[n], lr))
            if line.extrapolated:
                extrapolated.append(line.step)
            if line.update_column is None:
                no_update.append(line.step)
            elif line.update_on_grid:
                update_twice.append(line.step)
            transposed |= line.transposed
            if progress is not None:
                progress(n + 1, len(files))
        writer.update_attrs({"import": {
            "files": len(files), "extrapolated_steps": extrapolated,
            "per_sample_layout_in_files": "[K, n]" if transposed else "[n, K]",
            "grid": "union of the files' positions without their update points (exactly equal positions merged); "
                    "a line is NaN where its file has no measurement",
            "grid_points": int(grid.size),
            "update_point": "loss_at_update_X: the mean over samples at s = update_step; its per-sample values "
                            "are not stored",
            "steps_without_update_point": no_update,
            "steps_with_update_point_on_own_grid": update_twice}})
    return Path(out_path)


def _record(line: _Line, n_points: int, where: np.ndarray, lr: float | None) -> dict[str, Any]:
    """The store arrays of one imported line (means over samples in float64; the writer rounds)."""
    rec: dict[str, Any] = {"step": line.step, "lr": np.nan if lr is None else lr,
                           "update_step": line.update_step, "direction_norm": line.direction_norm}
    for split, values in line.samples.items():
        if values.shape[1] == 0:
            continue
        full = np.full((n_points, values.shape[1]), np.nan)
        full[where] = values[line.columns]
        rec[f"loss_{split}"] = full.mean(axis=1)
        rec[f"sample_loss_{split}"] = full
        if line.update_column is not None:
            rec[f"loss_at_update_{split}"] = values[line.update_column].mean()
    return rec


def add_import_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``losslines import-pickles DIR --out STORE``."""
    parser.add_argument("dir", help="folder of the original line_data_{step}.pickle files")
    parser.add_argument("--out", required=True, help="path of the new store")
    parser.add_argument("--lr", type=float, default=None, help="the run's learning rate (default: unknown, NaN)")
    parser.add_argument("--sample-dtype", choices=("float32", "float16"), default="float32",
                        help="dtype of the per-sample arrays")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    return parser


def run_import(args: argparse.Namespace) -> Path:
    """Run ``losslines import-pickles`` from parsed arguments (errors: ValueError / File*Error)."""
    out = import_pickles(args.dir, args.out, lr=args.lr, sample_dtype=args.sample_dtype, overwrite=args.overwrite)
    print(f"wrote {out}")
    return out
