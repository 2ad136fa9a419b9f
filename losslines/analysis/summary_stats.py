"""Numbers for metrics.json and report.md: JSON-safe scalars, distribution summaries, their text.

Every metric's summary is built from these so that metrics.json holds only JSON types (NaN and
infinities become ``null``) and report.md prints a missing number as ``n/a``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_number(x: Any) -> Any:
    """JSON-safe scalar: NaN/inf -> None, numpy -> python (bools stay bools)."""
    if isinstance(x, (np.integer, int)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    x = float(x)
    return x if math.isfinite(x) else None


def distribution(values: np.ndarray) -> dict[str, Any]:
    """``{n, mean, std, median, q25, q75}`` of the finite values (None for each without any)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "median": None, "q25": None, "q75": None}
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return {"n": int(v.size), "mean": json_number(v.mean()), "std": json_number(v.std()),
            "median": json_number(med), "q25": json_number(q25), "q75": json_number(q75)}


def fmt(x: Any, spec: str = ".4g") -> str:
    """A summary number as report.md text: ``n/a`` for None."""
    return "n/a" if x is None else format(x, spec)
