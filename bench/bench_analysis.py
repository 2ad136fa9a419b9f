"""Throughput and peak memory of ``losslines analyze`` on generated stores.

    python bench/bench_analysis.py                   # 10,000 lines x 167 points, with and without per-sample losses
    python bench/bench_analysis.py --lines 2000 --keep /tmp/bench   # smaller, keep stores and reports

A store is generated with the real :class:`~losslines.store.StoreWriter`: lines whose full-batch
loss is a slightly skewed parabola that drifts over training (minimum around s = 0.05-0.2,
curvature decaying, noise at the 1e-4 level, a few kinked lines), per-sample losses (f16)
scattered around it (their mean is the full-batch line), a direction batch whose own slope is -‖g‖. The analysis then runs in a
fresh subprocess (``analyze_store`` with figures), and its wall time (imports included), the
computation and figure times, and its peak RSS (``ru_maxrss`` of that process) are reported
as lines/s and MiB. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from losslines.store import StoreLayout, StoreWriter

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from losslines.analysis.analyze import analyze_store
from losslines.analysis.results import AnalysisOptions
rep = analyze_store(sys.argv[1], sys.argv[2], options=AnalysisOptions(formats=tuple(sys.argv[3].split(","))))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "timing": rep.summary["timing_s"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "lines": rep.summary["analysed_lines"], "skipped": rep.summary["skipped"]}))
"""


def generate_store(path: Path, n_lines: int, *, n_points: int = 167, n_train: int = 512, batch: int = 128,
                   per_sample: bool = True, seed: int = 0) -> float:
    """Write a synthetic store; return the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    half = n_points // 2
    grid = np.round(np.arange(-half, half + 1) * 0.006, 12)
    s = grid[:, None]
    layout = StoreLayout(n_points=n_points, n_train=n_train, n_val=0, batch_size=batch,
                         sample_losses=("train", "batch") if per_sample else (), sample_dtype="float16",
                         line_chunk=256, sample_block=4096)
    ids = np.arange(n_train)
    writer = StoreWriter.create(path, layout, positions=grid, sample_ids={"train": ids},
                                attrs={"config": {"name": "bench"}}, overwrite=True, capacity=n_lines)
    lr = 0.1
    for t in range(n_lines):
        progress = t / max(n_lines - 1, 1)
        curv = 8.0 * np.exp(-3 * progress) + 1.0
        vertex = 0.06 + 0.1 * progress + 0.01 * rng.standard_normal()
        base = 2.3 - 2.0 * progress
        skew = 0.5 * rng.standard_normal()
        full = curv * (grid - vertex) ** 2 + skew * (grid - vertex) ** 3 + base - curv * vertex**2
        if t % 997 == 5:
            full = full + 0.5 * np.abs(grid - vertex)  # a kinked line now and then
        g = 2 * curv * vertex * (3.0 + rng.random())  # batch slope steeper than L'(0)
        batch_line = full - (g - 2 * curv * vertex) * grid + 0.05 * rng.standard_normal() * grid**2
        rec = {"step": t, "epoch": t // 40, "lr": lr, "direction_norm": g, "update_step": np.float32(lr * np.float32(g)),
               "loss_train": full + 1e-4 * rng.standard_normal(n_points), "loss_batch": batch_line,
               "slope0_batch": -g, "batch_ids": rng.choice(ids, batch, replace=False)}
        if per_sample:
            spread_t = rng.gamma(2.0, 0.5, n_train)
            spread_t /= spread_t.mean()
            tilt_t = rng.normal(0.0, 1.0, n_train)
            tilt_t -= tilt_t.mean()
            rec["sample_loss_train"] = full[:, None] * spread_t + tilt_t * s  # mean over samples = full
            spread_b = rng.gamma(2.0, 0.5, batch)
            tilt_b = rng.normal(0.0, 1.0, batch)
            tilt_b -= tilt_b.mean()
            rec["sample_loss_batch"] = batch_line[:, None] * spread_b / spread_b.mean() + tilt_b * s
        writer.append(rec)
    writer.close()
    return time.perf_counter() - t0


def run_analysis(store: Path, out: Path, formats: str = "png,pdf") -> dict:
    """Analyse ``store`` in a fresh subprocess; return its seconds, peak RSS and line count."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(store), str(out), formats],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"analysis subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=167)
    ap.add_argument("--n-train", type=int, default=512, help="per-sample training losses stored per line")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep stores and reports in")
    ap.add_argument("--formats", default="png,pdf")
    args = ap.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="losslines-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for per_sample in (False, True):
            name = "with_per_sample" if per_sample else "without_per_sample"
            store = root / f"{name}.zarr"
            gen = generate_store(store, args.lines, n_points=args.points, n_train=args.n_train, batch=args.batch,
                                 per_sample=per_sample)
            logical = args.lines * args.points * (args.n_train + args.batch) * 2 if per_sample else 0
            run = run_analysis(store, root / f"{name}.analysis", args.formats)
            results[name] = {"lines": run["lines"], "points": args.points,
                             "per_sample_logical_gib": round(logical / 2**30, 3),
                             "generate_s": round(gen, 1), "analyze_s": round(run["seconds"], 1),
                             "lines_per_s": round(run["lines"] / run["seconds"], 1),
                             "compute_s": run["timing"]["compute_s"], "figures_s": run["timing"]["figures_s"],
                             "compute_lines_per_s": round(run["lines"] / run["timing"]["compute_s"], 1),
                             "peak_rss_mib": round(run["peak_rss_mib"], 1)}
            print(json.dumps({name: results[name]}), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
