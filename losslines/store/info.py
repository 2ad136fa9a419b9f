"""A human summary of a store: what ``losslines info STORE`` prints."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from losslines.store.reader import LineStore, open_store
from losslines.store.schema import SPLITS

_CONFIG_FIELDS = ("name", "model", "data", "optimizer")
_TRAIN_FIELDS = ("optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "steps", "batch_size")
_MEASURE_FIELDS = ("direction", "schedule", "every", "bn", "bn_group", "loss", "strategy")


def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _grid(position: np.ndarray) -> dict[str, Any]:
    steps = np.diff(np.sort(position))
    steps = steps[steps > 0]
    return {
        "points": int(position.size),
        "spacing": float(steps.min()) if steps.size else None,
        "min": float(position.min()),
        "max": float(position.max()),
    }


def _config_summary(config: dict[str, Any]) -> dict[str, str]:
    """``name``/``model``/``data``/``optimizer`` of a config; a section shows its ``name``."""
    out = {}
    for key in _CONFIG_FIELDS:
        if key not in config:
            continue
        value = config[key]
        if isinstance(value, dict):
            label = value.get("name")
            rest = {k: v for k, v in value.items() if k != "name"}
            text = json.dumps(rest, sort_keys=True, default=str)
            value = f"{label} {text}" if label is not None and rest else (label if label is not None else text)
        out[key] = str(value)
    for key, fields in (("train", _TRAIN_FIELDS), ("measure", _MEASURE_FIELDS)):
        section = config.get(key)
        if isinstance(section, dict):
            out[key] = ", ".join(f"{f} {section[f]}" for f in fields if f in section)
    return out


def _lines_summary(store: LineStore) -> dict[str, Any]:
    steps = store["step"].read()
    return {
        "committed": store.committed_lines,
        "allocated": store.allocated_lines,
        "steps": [int(steps.min()), int(steps.max())] if steps.size else None,
    }


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Summary of a store as a JSON-serialisable dict (see :func:`describe` for the text form)."""
    store = open_store(path)
    layout = store.layout
    out: dict[str, Any] = {
        "path": str(store.path),
        "format": store.format,
        "status": store.status,
        "status_reason": store.attrs.get("status_reason"),
        "created": store.attrs.get("created"),
        "finished": store.attrs.get("finished"),
        "lines": _lines_summary(store),
        "grid": _grid(store.position),
        "samples": {split: layout.split_size(split) for split in SPLITS},
        "sample_losses": {f"sample_loss_{s}": layout.sample_dtype for s in layout.sample_losses},
        "config": _config_summary(store.config),
        "bytes_stored": store.nbytes_stored(),
    }
    report = store.attrs.get("strategy_report")
    if isinstance(report, dict) and "chosen" in report:
        timings = report.get("seconds_per_point") or {}
        out["config"]["strategy"] = f"{report['chosen']} (requested {report.get('requested')}" + (
            "; " + ", ".join(f"{k} {v * 1e3:.3g} ms/point" for k, v in timings.items()) if timings else "") + ")"
    sub = store.directions
    if sub is not None:
        out["directions"] = {"per_line": layout.n_directions, **_lines_summary(sub)}
    steps = store.steps
    if steps is not None:
        out["per_step"] = {"committed": steps.committed_lines}
    return out


def describe(path: str | os.PathLike[str]) -> str:
    """A multi-line human summary of the store at ``path``."""
    s = summarize(path)
    lines = s["lines"]
    grid = s["grid"]
    rows = [
        f"store      {s['path']}",
        f"format     losslines v{s['format']}, status {s['status']}"
        + (f" ({s['status_reason']})" if s["status_reason"] else ""),
        f"lines      {lines['committed']} committed" + _allocated(lines),
        "steps      " + (f"{lines['steps'][0]} .. {lines['steps'][1]}" if lines["steps"] else "none yet"),
        f"grid       {grid['points']} points, spacing {grid['spacing']:.6g}, s in [{grid['min']:.6g}, {grid['max']:.6g}]"
        if grid["spacing"] is not None else f"grid       {grid['points']} point at s = {grid['min']:.6g}",
        "samples    " + (", ".join(f"{k} {v}" for k, v in s["samples"].items() if v > 0) or "none"),
        "per-sample " + (", ".join(f"{k} ({v})" for k, v in s["sample_losses"].items()) or "none stored"),
    ]
    if "directions" in s:
        d = s["directions"]
        rows.append(f"directions {d['per_line']} per line, {d['committed']} committed" + _allocated(d))
    if "per_step" in s:
        rows.append(f"per step   {s['per_step']['committed']} steps committed (loss, slope at 0, loss at the step)")
    for key, value in s["config"].items():
        rows.append(f"{key:<10} {value}")
    rows.append(f"size       {human_bytes(s['bytes_stored'])} on disk")
    rows.append(f"created    {s['created']}" + (f", finished {s['finished']}" if s["finished"] else ""))
    return "\n".join(rows)


def _allocated(lines: dict) -> str:
    """" / N allocated" where a store (running, or failed) holds rows past its committed lines."""
    return f" / {lines['allocated']} allocated" if lines["allocated"] != lines["committed"] else ""
