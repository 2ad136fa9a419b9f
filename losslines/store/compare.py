"""Compare two stores: every array bit for bit, every attribute but times and versions.

``diff_stores(a, b)`` lists the differences (an empty list: the stores hold the same
measurement). Arrays are compared over their allocated extent (committed or not), NaN equal to
NaN, in blocks, so stores of any size compare in bounded memory. Used to show that a refactor,
a resume or another machine reproduces a run exactly::

    python -m losslines.store.compare A.zarr B.zarr       # exit 1 and the differences if any
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

import numpy as np
import zarr

from losslines.store.group import member_names, open_group_checked
from losslines.store.schema import decode_attrs

# Attributes that record when and with what a store was written, not what it holds.
# times, versions and this machine's timings: not part of the measurement
VOLATILE_ATTRS = ("created", "finished", "versions", "runtime", "writer_stall", "strategy_report.seconds_per_point",
                  "strategy_report.compile_seconds")
_ROWS_PER_BLOCK = 64


def _attr_differences(a: Any, b: Any, where: str, ignore: Iterable[str]) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in ignore or f"{where}{key}" in ignore:
                continue
            if key not in a or key not in b:
                out.append(f"attribute {where}{key}: only in {'b' if key not in a else 'a'}")
            else:
                out += _attr_differences(a[key], b[key], f"{where}{key}.", [k for k in ignore if "." in k])
        return out
    return [] if a == b else [f"attribute {where.rstrip('.')}: {a!r} != {b!r}"]


def _array_differences(x: zarr.Array, y: zarr.Array, name: str) -> list[str]:
    if x.shape != y.shape or x.dtype != y.dtype:
        return [f"array {name}: {x.dtype} {x.shape} != {y.dtype} {y.shape}"]
    if x.metadata.dimension_names != y.metadata.dimension_names:
        return [f"array {name}: dimensions {x.metadata.dimension_names} != {y.metadata.dimension_names}"]
    if x.ndim == 0 or x.shape[0] == 0:
        same = np.array_equal(x[...], y[...], equal_nan=np.issubdtype(x.dtype, np.floating))
        return [] if same else [f"array {name}: values differ"]
    for start in range(0, x.shape[0], _ROWS_PER_BLOCK):
        stop = min(start + _ROWS_PER_BLOCK, x.shape[0])
        u, v = np.asarray(x[start:stop]), np.asarray(y[start:stop])
        same = u.view(np.uint8).tobytes() == v.view(np.uint8).tobytes() if u.dtype.kind == "f" else np.array_equal(u, v)
        if not same:
            differ = ~((u == v) | (np.isnan(u) & np.isnan(v))) if u.dtype.kind == "f" else u != v
            first = np.argwhere(differ)
            at = tuple(int(i) + (start if k == 0 else 0) for k, i in enumerate(first[0])) if first.size else "(bits)"
            return [f"array {name}: {int(differ.sum()) if first.size else 0} values differ, first at {at}"
                    + (f" ({u[tuple(first[0])]!r} != {v[tuple(first[0])]!r})" if first.size else
                       " (same values, different bits: NaN payloads or signed zeros)")]
    return []


def _group_differences(a: zarr.Group, b: zarr.Group, prefix: str, ignore: Iterable[str]) -> list[str]:
    out = _attr_differences(decode_attrs(a.attrs.asdict()), decode_attrs(b.attrs.asdict()), prefix, ignore)
    arrays_a, groups_a = member_names(a)
    arrays_b, groups_b = member_names(b)
    for name in sorted(set(arrays_a) ^ set(arrays_b)):
        out.append(f"array {prefix}{name}: only in {'a' if name in arrays_a else 'b'}")
    for name in sorted(set(arrays_a) & set(arrays_b)):
        out += _array_differences(a[name], b[name], prefix + name)  # type: ignore[arg-type]
    for name in sorted(set(groups_a) ^ set(groups_b)):
        out.append(f"group {prefix}{name}: only in {'a' if name in groups_a else 'b'}")
    for name in sorted(set(groups_a) & set(groups_b)):
        out += _group_differences(a[name], b[name], f"{prefix}{name}/", ignore)  # type: ignore[arg-type]
    return out


def diff_stores(a: str | os.PathLike[str], b: str | os.PathLike[str], *,
                ignore_attrs: Iterable[str] = VOLATILE_ATTRS) -> list[str]:
    """Differences between the stores at ``a`` and ``b`` (see the module docstring).

    Args:
        a, b: two losslines stores.
        ignore_attrs: attribute keys left out of the comparison (default: times and package
            versions): top-level names, or dotted paths into objects (``config.store.path``).

    Raises:
        FileNotFoundError / ValueError: either path is not a losslines store.
    """
    _, group_a, _ = open_group_checked(a)
    _, group_b, _ = open_group_checked(b)
    return _group_differences(group_a, group_b, "", tuple(ignore_attrs))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m losslines.store.compare STORE_A STORE_B", file=sys.stderr)
        return 2
    differences = diff_stores(*args)
    for line in differences:
        print(line)
    print(f"{'identical' if not differences else 'different'}: {args[0]} vs {args[1]} "
          f"({len(differences)} difference(s); ignoring attributes {', '.join(VOLATILE_ATTRS)})")
    return 1 if differences else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
