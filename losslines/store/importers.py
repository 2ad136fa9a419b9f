"""Import the original research code's per-step pickles into a store (``losslines import-pickles``).

The paper's code wrote one file per measured step, ``line_data_{step}.pickle``, holding an
8-tuple::

    (train_losses [N, K], val_losses [N_val, K], positions [K], batch_losses [B, K],
     update_step, direction_norm, extrapolation_flag, step)

with per-sample losses (float64 arrays or torch tensors) and the direction norm as a torch
tensor that was on a CUDA device when pickled. Unpickling such a tensor with plain ``pickle``
on a machine without CUDA fails (torch restores storages at their saved location), so this
module unpickles with a restricted :class:`pickle.Unpickler` that (a) only admits the classes
this format needs (numpy arrays, torch tensors, builtins) and (b) reroutes torch's storage
loader to ``torch.load(..., map_location="cpu", weights_only=True)``. Torch is imported lazily.

Mapping into the store format: per-sample arrays are transposed to ``[K, N]`` (``sample_loss_train``,
``sample_loss_val``, ``sample_loss_batch``; float32 by default), the means over samples become
``loss_{train,val,batch}`` (accumulated in float64), ``update_step`` and ``direction_norm`` are
copied, ``lr`` is the given learning rate (NaN: unknown), the step comes from the tuple.
Nothing else was measured by the original (no accuracies, no exact slopes, no batch ids: those
arrays stay NaN / -1; the analysis estimates slopes from the grid and says so).

**Grid decision.** losslines needs one grid. If every file has the same positions they are the
grid. Otherwise (the original enlarged the interval on some steps) all positions must lie on
one lattice ``s_0 + h * i`` of the first file's spacing h; the grid is the union of lattice
points and each line's unmeasured points are NaN (exactly what losslines' own enlargement
rings look like). Positions off that lattice are an error: nothing is interpolated.
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
LATTICE_TOL = 1e-3  # in units of the spacing: float32 positions are ~1e-5 spacings off

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


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _scalar(value: Any, what: str, path: Path) -> float:
    arr = _array(value)
    if arr.size != 1:
        raise ValueError(f"{path}: {what} must be a scalar, got shape {arr.shape}")
    return float(arr.reshape(()))


@dataclass(frozen=True)
class _Line:
    """One pickle, converted: per-sample ``[K_file, n]`` arrays per split and scalars."""

    step: int
    positions: np.ndarray
    samples: dict[str, np.ndarray]
    update_step: float
    direction_norm: float
    extrapolated: bool
    transposed: bool


def _per_sample(value: Any, k: int, split: str, path: Path) -> tuple[np.ndarray, bool]:
    """``[n, K]`` (the original layout) -> ``[K, n]``; ``[K, n]`` is accepted when unambiguous."""
    arr = _array(value)
    if arr.size == 0:
        return np.empty((k, 0)), False
    if arr.ndim != 2 or k not in arr.shape:
        raise ValueError(f"{path}: {split} losses have shape {arr.shape}; expected [samples, {k} positions]")
    if arr.shape[1] == k:
        return arr.T, False
    return arr, True  # [K, n] with n != K


def _read(path: Path, step_from_name: int) -> _Line:
    train, val, positions, batch, update_step, direction_norm, flag, step = load_line_pickle(path)
    pos = _array(positions).reshape(-1)
    k = pos.size
    samples, transposed = {}, False
    for split, value in (("train", train), ("val", val), ("batch", batch)):
        samples[split], t = _per_sample(value, k, split, path)
        transposed |= t
    step = int(_scalar(step, "step", path))
    if step != step_from_name:
        raise ValueError(f"{path}: the file name says step {step_from_name} but the tuple says {step}")
    return _Line(step, pos, samples, _scalar(update_step, "update_step", path),
                 _scalar(direction_norm, "direction_norm", path), bool(_scalar(flag, "extrapolation flag", path)),
                 transposed)


def common_grid(position_sets: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One ascending grid for all lines, and each line's indices into it (see the module docstring).

    Files with identical positions share them (sorted); otherwise every file's positions must lie
    on one lattice ``s_0 + h·i`` of the first file's spacing, to within ``LATTICE_TOL`` spacings
    (which absorbs float32 positions), and the grid is the union of the lattice points used.

    Raises:
        ValueError: non-finite or repeated positions, or positions off the lattice.
    """
    for n, p in enumerate(position_sets):
        if not np.all(np.isfinite(p)):
            raise ValueError(f"positions of file #{n} contain NaN or inf")
        if np.unique(p).size != p.size:
            raise ValueError(f"positions of file #{n} repeat a step size")
    first = position_sets[0]
    if all(p.shape == first.shape and np.array_equal(p, first) for p in position_sets):
        order = np.argsort(first, kind="stable")
        where = np.empty(first.size, dtype=np.int64)
        where[order] = np.arange(first.size)
        return first[order].astype(np.float64), [where] * len(position_sets)
    if first.size < 2:
        raise ValueError("the first file has fewer than two positions; cannot infer the grid spacing")
    ordered = np.sort(first.astype(np.float64))
    rough = float(np.median(np.diff(ordered)))
    h = (ordered[-1] - ordered[0]) / round((ordered[-1] - ordered[0]) / rough)  # averages rounding out
    lattice = []
    for n, p in enumerate(position_sets):
        i = (p.astype(np.float64) - ordered[0]) / h
        if np.any(np.abs(i - np.round(i)) > LATTICE_TOL):
            raise ValueError(
                f"positions of file #{n} are not on the lattice {ordered[0]:g} + {h:g}·i of the first file; "
                "losslines needs one grid and does not interpolate: import such files into separate stores"
            )
        lattice.append(np.round(i).astype(np.int64))
    union = np.unique(np.concatenate(lattice))
    grid = ordered[0] + h * union
    return grid, [np.searchsorted(union, i) for i in lattice]


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

    Files are read twice, one at a time (positions and sizes first, then the values), so memory
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
        ValueError: malformed pickles, inconsistent sample counts, positions off one lattice.
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
    grid, where = common_grid(positions)
    layout = StoreLayout(n_points=grid.size, n_train=sizes["train"], n_val=sizes["val"], batch_size=sizes["batch"],
                         sample_losses=tuple(s for s in SPLITS if sizes[s] > 0), sample_dtype=sample_dtype)  # type: ignore[arg-type]
    ids = {s: np.arange(sizes[s], dtype=np.int64) for s in ("train", "val") if sizes[s] > 0}
    attrs = {"config": {"name": f"imported from {src.name}", "optimizer": {"lr": lr}},
             "semantics": {"source": "original pickles (line_data_{step}.pickle)",
                           "sample_ids": "positions in the original arrays (dataset ids were not stored)"}}
    extrapolated, transposed = [], False
    with StoreWriter.create(out_path, layout, positions=grid, sample_ids=ids, attrs=attrs, overwrite=overwrite,
                            capacity=len(files)) as writer:
        for n, (step, path) in enumerate(files):
            line = _read(path, step)
            rec: dict[str, Any] = {"step": line.step, "lr": np.nan if lr is None else lr,
                                   "update_step": line.update_step, "direction_norm": line.direction_norm}
            for split, values in line.samples.items():
                if values.shape[1] == 0:
                    continue
                full = np.full((grid.size, values.shape[1]), np.nan)
                full[where[n]] = values
                rec[f"loss_{split}"] = full.mean(axis=1)
                rec[f"sample_loss_{split}"] = full
            writer.append(rec)
            if line.extrapolated:
                extrapolated.append(line.step)
            transposed |= line.transposed
            if progress is not None:
                progress(n + 1, len(files))
        writer.update_attrs({"import": {"files": len(files), "extrapolated_steps": extrapolated,
                                        "per_sample_layout_in_files": "[K, n]" if transposed else "[n, K]",
                                        "grid": "identical in every file" if len(set(map(len, where))) == 1
                                        and all(np.array_equal(w, where[0]) for w in where) else
                                        "union lattice, unmeasured points NaN"}})
    return Path(out_path)


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
