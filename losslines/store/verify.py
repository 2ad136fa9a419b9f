"""``losslines verify STORE``: check a store against its format and the measurement's invariants.

Three kinds of checks, all read blockwise (bounded memory, no torch):

* **Format**: the format number is one this losslines reads, the required attributes exist with
  their types (``json_attrs`` decodes), every array the layout implies exists with the
  dimension names and dtype of :mod:`losslines.store.schema`, no array is unknown, per-line
  arrays hold at least ``committed_lines`` lines (exactly that many in a complete format 2
  store), the grid is strictly increasing with 0 on it, sample ids are valid.
* **Integrity**: every stored chunk that holds committed data decodes; in format 2 this checks
  each chunk's CRC-32C, so a changed or truncated chunk is named (array and chunk index). A
  deleted chunk reads as the fill value; the checks below find it where data must exist
  (the losses at s = 0 of every committed line and sample, the steps, the sample ids).
* **Invariants** of docs/design.md ("The measurement") on the committed lines: ``update_step = lr · direction_norm``;
  the full-batch mean equals the mean of the stored per-sample losses (within the rounding of
  their dtype); the losses at s = 0 are finite; ``batch_ids`` are valid; for the paper's own
  plain-SGD direction (no momentum, no weight decay, batch measured in train-mode BatchNorm)
  ``slope0_batch = −direction_norm``.

A finding is a one-line :class:`Finding`; ``verify_store`` returns them all (empty = valid).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from losslines.records import SGD_CHECK_MAX_LOSS, sgd_slope_mismatch
from losslines.store.group import member_names, open_group_checked
from losslines.store.reader import LineStore, open_store
from losslines.store.schema import (COMMITTED_ATTR, DIRECTIONS_GROUP, FORMAT_ATTR, GROWING_DIMS, JSON_ATTRS_KEY,
                                    READABLE_FORMATS, STATUS_ATTR, STATUSES, STEPS_GROUP, json_keys, line_specs,
                                    static_specs, step_specs)

# Relative tolerances of the checks (the store keeps float32 means and f16/f32 samples).
UPDATE_RTOL = 1e-5
SAMPLE_MEAN_TOL = {"float16": 2e-3, "float32": 1e-5}


@dataclass(frozen=True)
class Finding:
    """One problem: which check, where, and what was seen."""

    check: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


def _check_format(store: LineStore, prefix: str, specs: list) -> list[Finding]:
    version = store.format
    expected = {s.name: s for s in specs}
    out = []
    for name in sorted(set(expected) - set(store.names)):
        out.append(Finding("format", prefix + name, "array is missing"))
    for name in sorted(set(store.names) - set(expected)):
        out.append(Finding("format", prefix + name, f"array is not part of format {version}"))
    for name in sorted(set(expected) & set(store.names)):
        arr, spec = store.stored_array(name), expected[name]
        dims = tuple(arr.metadata.dimension_names or ())
        if dims != spec.dims:
            out.append(Finding("format", prefix + name, f"dims {dims}, expected {spec.dims}"))
        if np.dtype(arr.dtype) != spec.dtype:
            out.append(Finding("format", prefix + name, f"dtype {arr.dtype}, expected {spec.dtype}"))
    for name in sorted(set(expected) & set(store.names)):
        if not expected[name].per_line:
            continue
        length = int(store.stored_array(name).shape[0])  # the allocation, not cut to the committed lines
        if length < store.committed_lines:
            out.append(Finding("shape", prefix + name, f"holds {length} lines but {store.committed_lines} are committed"))
        elif version >= 2 and store.status == "complete" and length != store.committed_lines:
            out.append(Finding("shape", prefix + name,
                               f"holds {length} lines; a complete store holds exactly its {store.committed_lines}"))
    return out


def _check_grid(position: np.ndarray) -> list[Finding]:
    if position.size == 0 or not np.all(np.isfinite(position)):
        return [Finding("grid", "position", "empty or not finite")]
    out = []
    if np.any(np.diff(position) <= 0):
        out.append(Finding("grid", "position", "not strictly increasing"))
    if not np.any(position == 0.0):
        out.append(Finding("grid", "position", "0 is not a grid point"))
    return out


def _plain_sgd(store: LineStore) -> bool:
    cfg, sem = store.config, store.attrs.get("semantics", {})
    train = cfg.get("train", {}) if isinstance(cfg, dict) else {}
    checked = not str(sem.get("sgd_slope_check", "on")).startswith("off")  # off: training used dropout
    return (checked and sem.get("direction") == "sgd" and sem.get("bn") in ("batch", "running")
            and train.get("momentum", 1) == 0 and train.get("weight_decay", 1) == 0)


def _check_lines(store: LineStore, block: int) -> list[Finding]:
    out: list[Finding] = []
    zero = int(np.flatnonzero(store.position == 0.0)[0]) if np.any(store.position == 0.0) else None
    sample_tol = SAMPLE_MEAN_TOL.get(store.layout.sample_dtype, 1e-5)
    plain_sgd = _plain_sgd(store)
    # lines the run flagged as non-finite (train.on_nonfinite; records.nonfinite_line): a diverged
    # run's values, stored as measured, break no invariant; an unflagged NaN is still a finding
    diverged = np.asarray(store.attrs.get("nonfinite_steps") or [], dtype=np.int64)

    bounds = _interpolation_bounds(store)

    def first_bad(mask: np.ndarray, start: int) -> int:
        return start + int(np.flatnonzero(mask)[0])

    for start in range(0, store.committed_lines, block):
        stop = min(start + block, store.committed_lines)
        steps = store["step"][start:stop]
        if np.any(steps < 0):
            out.append(Finding("missing", f"step line {first_bad(steps < 0, start)}", "no training step (unwritten)"))
        flagged = np.isin(steps, diverged)
        lr, norm, upd = (store[n][start:stop].astype(np.float64) for n in ("lr", "direction_norm", "update_step"))
        known = np.isfinite(lr) & ~flagged
        with np.errstate(over="ignore", invalid="ignore"):
            bad = known & ~np.isclose(upd, lr * norm, rtol=UPDATE_RTOL, atol=0)
        if bad.any():
            i = first_bad(bad, start)
            out.append(Finding("update_step", f"line {i}",
                               f"update_step {upd[i - start]:.7g} != lr·direction_norm {lr[i - start] * norm[i - start]:.7g}"))
        for split in store.layout.measured_splits:
            loss = store[f"loss_{split}"][start:stop]
            if zero is not None and np.any(~np.isfinite(loss[:, zero]) & ~flagged):
                i = first_bad(~np.isfinite(loss[:, zero]) & ~flagged, start)
                out.append(Finding("loss", f"loss_{split} line {i}", "not finite at s = 0 (and not listed in "
                                                                     "nonfinite_steps)"))
            name = f"sample_loss_{split}"
            if store.has(name):
                samples = store[name][start:stop].astype(np.float64)
                if zero is not None and split != "batch":  # every sample is measured at s = 0
                    # NaN: unwritten (±inf is a loss beyond the sample dtype, e.g. float16's 65504)
                    missing = np.isnan(samples[:, zero, :]) & np.isfinite(loss[:, zero])[:, None]
                    if missing.any():
                        i, k = np.argwhere(missing)[0]
                        out.append(Finding("missing", f"{name} line {start + i} sample {k}",
                                           f"not finite at s = 0 although loss_{split} is"))
                measured = np.isfinite(samples).any(axis=-1)  # padded batch slots and unmeasured points are NaN
                mean = np.full(loss.shape, np.nan)
                with np.errstate(over="ignore", invalid="ignore"):  # a diverged line's ±inf: no gap to judge
                    mean[measured] = np.nanmean(samples[measured], axis=-1)
                    gap = np.abs(mean - loss)
                bad = np.isfinite(gap) & (gap > sample_tol * np.maximum(1.0, np.abs(loss)))
                if bad.any():
                    i, j = np.argwhere(bad)[0]
                    out.append(Finding("per-sample", f"{name} line {start + i} point {j}",
                                       f"mean of samples differs from loss_{split} by {gap[i, j]:.3g}"))
        if store.has("batch_ids"):
            ids = store["batch_ids"][start:stop]
            if np.any(ids < -1):
                out.append(Finding("batch_ids", f"lines {start}..{stop - 1}", "ids below -1"))
        if store.has("interpolated"):
            out += _check_interpolation(store, start, stop, flagged, bounds)
        if plain_sgd and store.has("slope0_batch"):
            slope = store["slope0_batch"][start:stop].astype(np.float64)
            bad = sgd_slope_mismatch(slope, norm)
            if zero is not None and store.has("loss_batch"):  # not judged on diverged lines (records.py)
                bad &= np.abs(store["loss_batch"][start:stop][:, zero].astype(np.float64)) <= SGD_CHECK_MAX_LOSS
            if bad.any():
                i = first_bad(bad, start)
                out.append(Finding("sgd-slope", f"line {i}",
                                   f"slope0_batch {slope[i - start]:.6g} != -direction_norm {-norm[i - start]:.6g}"))
    return out


def _interpolation_bounds(store: LineStore) -> tuple[float, float]:
    """The reduced evaluation's bounds (mean losses, per-sample) from the stored config; inf if absent."""
    cfg = store.config if isinstance(store.config, dict) else {}
    measure = cfg.get("measure", {}) if isinstance(cfg.get("measure"), dict) else {}
    return (float(measure.get("max_interpolation_error", np.inf)),
            float(measure.get("max_sample_interpolation_error", np.inf)))


def _check_interpolation(store: LineStore, start: int, stop: int, flagged: np.ndarray,
                         bounds: tuple[float, float]) -> list[Finding]:
    """Reduced evaluation (store-format §4): ``interpolated`` is 0 or 1 (−1 only on flagged non-finite
    lines), and no line kept as interpolated has an error above the run's bounds."""
    out = []
    flag = store["interpolated"][start:stop]
    bad = ~np.isin(flag, (0, 1)) & ~flagged
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        out.append(Finding("interpolation", f"interpolated line {start + i}", f"{int(flag[i])} is neither 0 nor 1"))
    kept = flag == 1
    for split in store.layout.measured_splits:
        for name, bound in ((f"interpolation_error_{split}", bounds[0]),
                            (f"sample_interpolation_error_{split}", bounds[1])):
            if not store.has(name):
                continue
            err = store[name][start:stop].astype(np.float64)
            over = kept & ~(err <= np.float32(bound))
            if over.any():
                i = int(np.flatnonzero(over)[0])
                out.append(Finding("interpolation", f"{name} line {start + i}",
                                   f"{err[i]:.3g} above the bound {bound:g} on a line kept as interpolated"))
    return out


def verify_store(path: str | Path, *, lines_per_block: int = 256) -> list[Finding]:
    """All findings on the store at ``path`` (an empty list: the store is valid).

    Raises:
        FileNotFoundError / ValueError: nothing there, or not a losslines store at all.
    """
    loc, group, fmt = open_group_checked(path)
    if fmt not in READABLE_FORMATS:
        return [Finding("format", FORMAT_ATTR, f"losslines_format={fmt}; this losslines reads {list(READABLE_FORMATS)}")]
    stale = _check_consolidated(loc, group)  # independent of the rest: always reported
    findings = _check_attrs(group, fmt)
    if findings:  # without trustworthy attributes the rest cannot be judged
        return stale + findings
    try:
        store = open_store(path)
        store.layout
    except (ValueError, KeyError) as err:
        return stale + [Finding("format", str(path), str(err))]
    findings = _check_chunks(group, store)
    if findings:  # the data checks would read the undecodable chunks
        return stale + findings
    return stale + _verify_open(store, lines_per_block)


def stored_state(path: str | Path) -> tuple[object, object]:
    """``(committed_lines, status)`` as stored, undecoded and unchecked (for a verdict line that
    must print even when the attributes are what is wrong)."""
    _, group, _ = open_group_checked(path)
    return group.attrs.get(COMMITTED_ATTR), group.attrs.get(STATUS_ATTR)


def _check_attrs(group: zarr.Group, fmt: int) -> list[Finding]:
    """The required attributes of the root and the sub-groups, with their types."""
    attrs = dict(group.attrs.asdict())
    out = []
    for key in sorted(json_keys(attrs)) if fmt >= 2 else ():
        try:
            attrs[key] = json.loads(attrs[key])
        except (KeyError, TypeError, ValueError) as err:
            out.append(Finding("attributes", key, f"listed in {JSON_ATTRS_KEY} but not JSON text ({err})"))
    if fmt >= 2 and not isinstance(attrs.get(JSON_ATTRS_KEY), str):
        out.append(Finding("attributes", JSON_ATTRS_KEY, "missing (format 2 requires it)"))
    if attrs.get(STATUS_ATTR) not in STATUSES:
        out.append(Finding("attributes", STATUS_ATTR, f"{attrs.get(STATUS_ATTR)!r} is not one of {list(STATUSES)}"))
    _, groups = member_names(group)
    for prefix, attrs_of in [("", attrs)] + [(f"{g}/", dict(group[g].attrs.asdict())) for g in groups
                                            if g in (DIRECTIONS_GROUP, STEPS_GROUP)]:
        value = attrs_of.get(COMMITTED_ATTR)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            out.append(Finding("attributes", prefix + COMMITTED_ATTR, f"{value!r} is not a count of lines"))
    if not isinstance(attrs.get("created"), str):
        out.append(Finding("attributes", "created", f"{attrs.get('created')!r} is not a time"))
    return out


def _check_consolidated(loc, group: zarr.Group) -> list[Finding]:
    """A store's consolidated metadata (complete format 2 stores) must equal the nodes' own."""
    root = json.loads((loc / "zarr.json").read_bytes())
    consolidated = (root.get("consolidated_metadata") or {}).get("metadata")
    if consolidated is None:
        return []
    actual = {}
    for prefix, grp in [("", group)] + [(f"{g}/", group[g]) for g in member_names(group)[1]]:
        arrays, groups = member_names(grp)
        actual.update({prefix + name: grp[name] for name in arrays + groups})
    out = []
    for key in sorted(set(consolidated) | set(actual)):
        if key not in actual or key not in consolidated:
            out.append(Finding("consolidated", key, "in the consolidated metadata only" if key in consolidated
                               else "missing from the consolidated metadata"))
        elif consolidated[key].get("shape") is not None and \
                tuple(consolidated[key]["shape"]) != tuple(actual[key].shape):  # type: ignore[union-attr]
            out.append(Finding("consolidated", key, f"shape {tuple(consolidated[key]['shape'])} in the consolidated "
                               f"metadata, {tuple(actual[key].shape)} in the array's own"))  # type: ignore[union-attr]
    return out


def _check_chunks(group: zarr.Group, store: LineStore) -> list[Finding]:
    """Decode every chunk that holds committed data (format 2: its CRC-32C), naming each bad one."""
    out: list[Finding] = []
    groups = [("", group, store.committed_lines)]
    for name, sub in ((DIRECTIONS_GROUP, store.directions), (STEPS_GROUP, store.steps)):
        if sub is not None:
            groups.append((name + "/", group[name], sub.committed_lines))
    for prefix, grp, committed in groups:
        arrays, _ = member_names(grp)
        for name in arrays:
            try:
                array = grp[name]
            except Exception as err:  # unreadable metadata
                out.append(Finding("format", prefix + name, f"array metadata unreadable ({err})"))
                continue
            dims = tuple(array.metadata.dimension_names or ())
            rows = committed if dims and dims[0] in GROWING_DIMS else None
            out += _bad_chunks(array, prefix + name, rows)
    return out


def _bad_chunks(array: zarr.Array, where: str, rows: int | None) -> list[Finding]:
    if array.ndim == 0:
        return []
    grid = [-(-n // c) for n, c in zip(array.shape, array.chunks)]
    if rows is not None:  # only the chunks holding committed lines
        grid[0] = min(grid[0], -(-rows // array.chunks[0]))
    out = []
    for index in itertools.product(*(range(n) for n in grid)):
        try:
            array.get_block_selection(index)
        except Exception as err:
            chunk = ".".join(map(str, index))
            out.append(Finding("checksum", f"{where} chunk {chunk}", f"cannot be decoded: {type(err).__name__}: {err}"))
    return out


def _verify_open(store: LineStore, lines_per_block: int) -> list[Finding]:
    layout = store.layout
    version = store.format
    findings = _check_format(store, "", line_specs(layout, version=version) + static_specs(layout))
    sub, steps = store.directions, store.steps
    if sub is not None:
        findings += _check_format(sub, "directions/", line_specs(layout, directions=True, version=version))
    if steps is not None:
        findings += _check_format(steps, "steps/", step_specs(layout))
    if any(f.check in ("format", "shape") for f in findings):
        return findings  # the data checks assume the arrays of the format
    findings += _check_grid(store.position) + _check_ids(store) + _check_lines(store, lines_per_block)
    if steps is not None:
        first = store.attrs.get("first_nonfinite") or {}
        findings += _check_steps(steps, _plain_sgd(store), diverged_at=first.get("step"))
    return findings


def _check_ids(store: LineStore) -> list[Finding]:
    out = []
    for split in ("train", "val"):
        ids = store.sample_ids(split)
        if ids.size and (np.any(ids < 0) or np.any(np.diff(ids) <= 0)):
            out.append(Finding("sample_ids", f"sample_ids_{split}", "negative (unwritten) or not strictly ascending"))
    return out


def _check_steps(steps: LineStore, plain_sgd: bool, diverged_at: int | None = None) -> list[Finding]:
    """The per-step entries: consecutive steps, ``update_step = lr · direction_norm`` and, for
    plain SGD, the batch slope at 0 equal to −‖g‖; entries from the step where a run went
    non-finite on (``first_nonfinite``, a run that kept going) are not judged."""
    n = steps.committed_lines
    if n == 0:
        return []
    out = []
    step = steps["step"][...]
    if np.any(np.diff(step) <= 0):
        out.append(Finding("steps", "steps/step", "not strictly increasing"))
    lr, norm, upd = (steps[name][...].astype(np.float64) for name in ("lr", "direction_norm", "update_step"))
    judged = step < diverged_at if diverged_at is not None else np.ones(step.shape, dtype=bool)
    bad = judged & np.isfinite(lr) & ~np.isclose(upd, lr * norm, rtol=UPDATE_RTOL, atol=0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        out.append(Finding("update_step", f"steps/ entry {i}", f"update_step {upd[i]:.6g} != lr * direction_norm"))
    if plain_sgd and steps.has("slope0_batch"):
        bad = sgd_slope_mismatch(steps["slope0_batch"][...].astype(np.float64), norm)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            out.append(Finding("sgd-slope", f"steps/ entry {i}", "slope0_batch != -direction_norm"))
    return out
