"""``losslines verify STORE``: check a store against format v1 and the measurement's invariants.

Two kinds of checks, both read blockwise (bounded memory, no torch):

* **Format**: every array the layout implies exists with the dimension names and dtype of
  :mod:`losslines.store.schema`, no array is unknown, per-line arrays hold at least
  ``committed_lines`` lines, the grid is strictly increasing with 0 on it.
* **Invariants** of docs/design.md ("The measurement") on the committed lines: ``update_step = lr · direction_norm``;
  the full-batch mean equals the mean of the stored per-sample losses (within the rounding of
  their dtype); the losses at s = 0 are finite; ``batch_ids`` are valid; for the paper's own
  plain-SGD direction (no momentum, no weight decay, batch measured in train-mode BatchNorm)
  ``slope0_batch = −direction_norm``.

A finding is a one-line :class:`Finding`; ``verify_store`` returns them all (empty = valid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslines.records import sgd_slope_mismatch
from losslines.store.reader import LineStore, open_store
from losslines.store.schema import line_specs, static_specs, step_specs

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
        arr, spec = store[name], expected[name]
        if arr.dims != spec.dims:
            out.append(Finding("format", prefix + name, f"dims {arr.dims}, expected {spec.dims}"))
        if arr.dtype != spec.dtype:
            out.append(Finding("format", prefix + name, f"dtype {arr.dtype}, expected {spec.dtype}"))
    if store.committed_lines > store.allocated_lines:
        out.append(Finding("format", prefix + "committed_lines",
                           f"{store.committed_lines} exceeds the {store.allocated_lines} allocated lines"))
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

    def first_bad(mask: np.ndarray, start: int) -> int:
        return start + int(np.flatnonzero(mask)[0])

    for start in range(0, store.committed_lines, block):
        stop = min(start + block, store.committed_lines)
        lr, norm, upd = (store[n][start:stop].astype(np.float64) for n in ("lr", "direction_norm", "update_step"))
        known = np.isfinite(lr)
        bad = known & ~np.isclose(upd, lr * norm, rtol=UPDATE_RTOL, atol=0)
        if bad.any():
            i = first_bad(bad, start)
            out.append(Finding("update_step", f"line {i}",
                               f"update_step {upd[i - start]:.7g} != lr·direction_norm {lr[i - start] * norm[i - start]:.7g}"))
        for split in store.layout.measured_splits:
            loss = store[f"loss_{split}"][start:stop]
            if zero is not None and not np.all(np.isfinite(loss[:, zero])):
                i = first_bad(~np.isfinite(loss[:, zero]), start)
                out.append(Finding("loss", f"loss_{split} line {i}", "not finite at s = 0"))
            name = f"sample_loss_{split}"
            if store.has(name):
                samples = store[name][start:stop].astype(np.float64)
                measured = np.isfinite(samples).any(axis=-1)  # padded batch slots and unmeasured points are NaN
                mean = np.full(loss.shape, np.nan)
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
        if plain_sgd and store.has("slope0_batch"):
            slope = store["slope0_batch"][start:stop].astype(np.float64)
            bad = sgd_slope_mismatch(slope, norm)
            if bad.any():
                i = first_bad(bad, start)
                out.append(Finding("sgd-slope", f"line {i}",
                                   f"slope0_batch {slope[i - start]:.6g} != -direction_norm {-norm[i - start]:.6g}"))
    return out


def verify_store(path: str | Path, *, lines_per_block: int = 256) -> list[Finding]:
    """All findings on the store at ``path`` (an empty list: the store is valid).

    Raises:
        FileNotFoundError / ValueError: not a store, or a format this version cannot read.
    """
    store = open_store(path)
    layout = store.layout
    version = store.format
    findings = _check_format(store, "", line_specs(layout, version=version) + static_specs(layout))
    findings += _check_grid(store.position) + _check_lines(store, lines_per_block)
    sub = store.directions
    if sub is not None:
        findings += _check_format(sub, "directions/", line_specs(layout, directions=True, version=version))
    steps = store.steps
    if steps is not None:
        findings += _check_format(steps, "steps/", step_specs(layout)) + _check_steps(steps, _plain_sgd(store))
    return findings


def _check_steps(steps: LineStore, plain_sgd: bool) -> list[Finding]:
    """The per-step entries: consecutive steps, ``update_step = lr · direction_norm`` and, for
    plain SGD, the batch slope at 0 equal to −‖g‖."""
    n = steps.committed_lines
    if n == 0:
        return []
    out = []
    step = steps["step"][...]
    if np.any(np.diff(step) <= 0):
        out.append(Finding("steps", "steps/step", "not strictly increasing"))
    lr, norm, upd = (steps[name][...].astype(np.float64) for name in ("lr", "direction_norm", "update_step"))
    bad = np.isfinite(lr) & ~np.isclose(upd, lr * norm, rtol=UPDATE_RTOL, atol=0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        out.append(Finding("update_step", f"steps/ entry {i}", f"update_step {upd[i]:.6g} != lr * direction_norm"))
    if plain_sgd and steps.has("slope0_batch"):
        bad = sgd_slope_mismatch(steps["slope0_batch"][...].astype(np.float64), norm)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            out.append(Finding("sgd-slope", f"steps/ entry {i}", "slope0_batch != -direction_norm"))
    return out
