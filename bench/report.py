"""One table of ratios from the engine benchmark's saved JSON files.

    python bench/report.py bench_engine.json                       # test_interleaved_ratios' file
    python bench/report.py bench.json --markdown                   # pytest --benchmark-json=bench.json
    python bench/report.py "$OUT"/gpu_check.json bench_engine.json  # several files: one table

Reads any mix of the three files the benchmarks write: ``bench_engine.json`` (``pytest bench/``,
the interleaved rounds: ``batches.<B>.seconds`` and ``.mfu``), pytest-benchmark's
``--benchmark-json`` output (``benchmarks[].params.{batch,method}``, the fastest round of each,
``extra_info.mfu``) and ``gpu_check.json`` (``bench/gpu_bench.py``: ``methods.<m>.seconds``,
``mfu``). Each workload in them becomes one block of rows, one row per method:

* ``x baseline``, ``x fwd bound``, ``x loop``: the method's throughput (sample-point
  evaluations per second) over that of the original-style baseline, of the bare forwards and of
  the ``loop`` strategy, from seconds measured in the same run (>1: the method is faster);
* ``MFU``: achieved FLOP/s (forward FLOPs counted with ``FlopCounterMode``) over the matmul
  peak measured in the same run (``flops.py``), where the file has it.

Only the standard library is used: the report runs anywhere the JSON files are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

__all__ = ["Workload", "Row", "load", "rows", "format_table", "main"]

REFERENCES = {"x baseline": "baseline", "x fwd bound": "forward_bound", "x loop": "loop"}
ORDER = ["loop", "vmap", "vmap+triton", "compiled", "baseline", "forward_bound"]


class Workload(NamedTuple):
    """One workload's timings from one file.

    Attributes:
        source: the file's name.
        setting: what was timed, e.g. ``"batch 128"`` or ``"resnet20 N=4000 K=167 batch 128 cuda"``.
        seconds: ``{method: seconds}`` of one measurement (the same work for every method).
        mfu: ``{method: model FLOPs utilisation}`` (a fraction), for the methods that have it.
    """

    source: str
    setting: str
    seconds: dict[str, float]
    mfu: dict[str, float]


class Row(NamedTuple):
    """One line of the table: a method's throughput ratios and MFU (None: not available)."""

    source: str
    setting: str
    method: str
    ratios: dict[str, float | None]
    mfu: float | None


def _mfu_of(entry) -> float | None:
    if isinstance(entry, dict):
        entry = entry.get("mfu")
    return float(entry) if isinstance(entry, (int, float)) else None


def _from_bench_engine(name: str, data: dict) -> list[Workload]:
    cfg = data.get("config", {})
    where = f" {cfg['device']}" if cfg.get("device", "cpu") != "cpu" else ""
    out = []
    for batch, fig in sorted(data["batches"].items(), key=lambda kv: int(kv[0])):
        mfu = {m: v for m, e in fig.get("mfu", {}).items() if (v := _mfu_of(e)) is not None}
        out.append(Workload(name, f"batch {batch}{where}", dict(fig["seconds"]), mfu))
    return out


def _from_pytest_benchmark(name: str, data: dict) -> list[Workload]:
    by_batch: dict[str, Workload] = {}
    for bench in data["benchmarks"]:
        params = bench.get("params") or {}
        method, batch = params.get("method"), params.get("batch", bench.get("extra_info", {}).get("batch"))
        if method is None:
            continue
        w = by_batch.setdefault(str(batch), Workload(name, f"batch {batch}", {}, {}))
        w.seconds[method] = float(bench["stats"]["min"])
        if (v := _mfu_of(bench.get("extra_info", {}))) is not None:
            w.mfu[method] = v
    return [by_batch[b] for b in sorted(by_batch, key=lambda b: (not b.isdigit(), int(b) if b.isdigit() else b))]


def _from_gpu_check(name: str, data: dict) -> list[Workload]:
    wl, machine = data.get("workload", {}), data.get("machine", {})
    setting = (f"{wl.get('model', '?')} N={wl.get('samples', '?')} K={wl.get('points', '?')} "
               f"batch {wl.get('batch', '?')} {machine.get('gpu') or machine.get('device', '')}".rstrip())
    if data.get("dry_run"):
        setting += " (dry run)"
    seconds = {m: float(e["seconds"]) for m, e in data.get("methods", {}).items()
               if isinstance(e, dict) and "seconds" in e}
    mfu = {m: v for m, e in (data.get("mfu") or {}).items() if (v := _mfu_of(e)) is not None}
    return [Workload(name, setting, seconds, mfu)]


def load(path: str | Path) -> list[Workload]:
    """The workloads in one saved JSON file (any of the three kinds in the module docstring).

    Raises:
        ValueError: a JSON file of none of these kinds (or a gpu_check.json without timings).
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "batches" in data:
        return _from_bench_engine(path.name, data)
    if isinstance(data, dict) and "benchmarks" in data:
        return _from_pytest_benchmark(path.name, data)
    if isinstance(data, dict) and "methods" in data:
        return _from_gpu_check(path.name, data)
    status = data.get("status") if isinstance(data, dict) else None
    hint = f" (status {status!r}: {data.get('message', '')})" if status else ""
    raise ValueError(f"{path}: not a benchmark JSON this report reads (bench_engine.json, pytest-benchmark's "
                     f"--benchmark-json, gpu_check.json){hint}")


def _method_key(method: str) -> tuple[int, str]:
    return (ORDER.index(method) if method in ORDER else len(ORDER), method)


def rows(workloads: list[Workload]) -> list[Row]:
    """One row per method of every workload: throughput over each reference (seconds[ref] / seconds[m])."""
    out = []
    for w in workloads:
        for method in sorted(w.seconds, key=_method_key):
            s = w.seconds[method]
            ratios = {col: (w.seconds[ref] / s if ref in w.seconds and s > 0 else None)
                      for col, ref in REFERENCES.items()}
            out.append(Row(w.source, w.setting, method, ratios, w.mfu.get(method)))
    return out


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _percent(v: float | None) -> str:
    if v is None:
        return "-"
    pct = 100 * v
    return f"{pct:.1f} %" if pct >= 1 else f"{pct:.2g} %"


def format_table(table: list[Row], *, markdown: bool = False) -> str:
    """The rows as one aligned text table (or a Markdown table); the source and setting are
    written once per block."""
    header = ["source", "workload", "method", *REFERENCES, "MFU"]
    cells, last = [], None
    for r in table:
        block = (r.source, r.setting)
        first = block != last
        last = block
        cells.append([r.source if first else "", r.setting if first else "", r.method,
                      *(_ratio(r.ratios[c]) for c in REFERENCES), _percent(r.mfu)])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 4) + "|"]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells)]
    numeric = set(range(3, len(header)))

    def line(values):
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(c).rstrip() for c in cells)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="bench_engine.json, --benchmark-json output or gpu_check.json")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    workloads = []
    for f in args.files:
        try:
            workloads += load(f)
        except (OSError, ValueError, KeyError) as err:
            print(f"report: {f}: {err}" if not isinstance(err, ValueError) else f"report: {err}", file=sys.stderr)
            return 2
    print(format_table(rows(workloads), markdown=args.markdown))
    print("x REF: sample-point evaluations per second over REF's, same run; MFU: forward FLOP/s over the "
          "run's matmul peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
